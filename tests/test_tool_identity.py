"""The helper tool authors use to read the stamped caller and the handed AWS session."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tool_identity import (
    RESERVED_PREFIX,
    ROLES_ARG,
    SESSION_ARG,
    USER_ARG,
    Caller,
    IdentityMissing,
    SessionMissing,
    tool_arguments,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SESSION = {
    "accessKeyId": "ASIAALICEEXAMPLE0001",
    "secretAccessKey": "secret-access-key",
    "sessionToken": "session-token",
    "expiration": (NOW + timedelta(minutes=15)).isoformat(),
    "roleArn": "arn:aws:iam::123456789012:role/orders-session",
    "sourceIdentity": "alice",
    "sessionName": "alice",
}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "BOTO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def stamped(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"order_id": "42", USER_ARG: "alice", ROLES_ARG: ["developer"], SESSION_ARG: SESSION}
    arguments.update(overrides)
    return {k: v for k, v in arguments.items() if v is not ...}


def test_reserved_names() -> None:
    assert (RESERVED_PREFIX, USER_ARG, ROLES_ARG, SESSION_ARG) == (
        "_teleport_",
        "_teleport_user",
        "_teleport_roles",
        "_teleport_aws_session",
    )


# ---------------------------------------------------------------------------------------------------------------
# Caller.from_arguments
# ---------------------------------------------------------------------------------------------------------------


def test_from_arguments_reads_the_stamped_identity() -> None:
    caller = Caller.from_arguments(stamped(**{ROLES_ARG: ["developer", "order-admin"]}))
    assert caller.user == "alice"
    assert caller.roles == ("developer", "order-admin")
    assert caller.aws_session == SESSION
    assert caller.has_role("order-admin")
    assert not caller.has_role("order")
    assert not caller.has_role("admin")


def test_from_arguments_without_session() -> None:
    caller = Caller.from_arguments(stamped(**{SESSION_ARG: ...}))
    assert caller.aws_session is None


def test_user_without_roles_is_a_caller() -> None:
    caller = Caller.from_arguments(stamped(**{ROLES_ARG: []}))
    assert caller.roles == ()
    assert not caller.has_role("developer")


@pytest.mark.parametrize("user", [..., None, "", 42, ["alice"], {"name": "alice"}])
def test_missing_or_malformed_user_is_refused(user: Any) -> None:
    with pytest.raises(IdentityMissing, match="_teleport_user"):
        Caller.from_arguments(stamped(**{USER_ARG: user}))


@pytest.mark.parametrize("roles", [..., None, "developer", ("developer",), ["developer", 1], [None], {"a": 1}])
def test_missing_or_malformed_roles_are_refused(roles: Any) -> None:
    with pytest.raises(IdentityMissing, match="_teleport_roles"):
        Caller.from_arguments(stamped(**{ROLES_ARG: roles}))


def test_refusal_says_how_to_fix_it() -> None:
    with pytest.raises(IdentityMissing) as caught:
        Caller.from_arguments({"order_id": "42"})
    assert "gateway" in str(caught.value)
    assert "interceptor" in str(caught.value)


@pytest.mark.parametrize("session", ["ASIA...", ["x"], 1, None])
def test_non_mapping_session_is_treated_as_absent(session: Any) -> None:
    caller = Caller.from_arguments(stamped(**{SESSION_ARG: session}))
    assert caller.aws_session is None
    with pytest.raises(SessionMissing, match="SESSION_TOOLS"):
        caller.boto3_session(now=NOW)


def test_from_arguments_does_not_mutate_the_event() -> None:
    event = stamped()
    snapshot = copy.deepcopy(event)
    Caller.from_arguments(event)
    assert event == snapshot


# ---------------------------------------------------------------------------------------------------------------
# Caller.boto3_session
# ---------------------------------------------------------------------------------------------------------------


def caller_with(session: Any) -> Caller:
    return Caller.from_arguments(stamped(**{SESSION_ARG: session}))


def test_boto3_session_uses_the_handed_credentials() -> None:
    session = caller_with(SESSION).boto3_session(region_name="eu-west-1", now=NOW)
    creds = session.get_credentials().get_frozen_credentials()
    assert creds.access_key == "ASIAALICEEXAMPLE0001"
    assert creds.secret_key == "secret-access-key"
    assert creds.token == "session-token"
    assert session.region_name == "eu-west-1"


def test_boto3_session_does_not_fall_back_to_the_functions_own_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFUNCTIONROLE0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "function-secret")
    with pytest.raises(SessionMissing):
        caller_with(...).boto3_session(now=NOW)
    session = caller_with(SESSION).boto3_session(now=NOW)
    assert session.get_credentials().get_frozen_credentials().access_key == "ASIAALICEEXAMPLE0001"


def test_missing_session_is_refused_clearly() -> None:
    with pytest.raises(SessionMissing) as caught:
        caller_with(...).boto3_session(now=NOW)
    assert "no AWS session" in str(caught.value)
    assert "SESSION_TOOLS" in str(caught.value)


@pytest.mark.parametrize("missing", ["accessKeyId", "secretAccessKey", "sessionToken", "expiration"])
def test_session_without_a_credential_field_is_refused(missing: str) -> None:
    session = {k: v for k, v in SESSION.items() if k != missing}
    with pytest.raises(SessionMissing, match="no AWS session"):
        caller_with(session).boto3_session(now=NOW)


@pytest.mark.parametrize("field", ["accessKeyId", "secretAccessKey", "sessionToken", "expiration"])
@pytest.mark.parametrize("value", [None, 1, ["x"], {"x": 1}])
def test_session_with_a_non_text_field_is_refused(field: str, value: Any) -> None:
    with pytest.raises(SessionMissing):
        caller_with({**SESSION, field: value}).boto3_session(now=NOW)


@pytest.mark.parametrize("expiration", ["", "tomorrow", "2030-13-01T00:00:00Z", "1700000000"])
def test_session_with_an_unreadable_expiration_is_refused(expiration: str) -> None:
    with pytest.raises(SessionMissing, match="expiration is not a timestamp"):
        caller_with({**SESSION, "expiration": expiration}).boto3_session(now=NOW)


@pytest.mark.parametrize(
    "expiration",
    [
        NOW.isoformat(),  # expires right now
        (NOW - timedelta(seconds=1)).isoformat(),
        "2020-01-01T00:00:00Z",
        (NOW - timedelta(minutes=1)).replace(tzinfo=None).isoformat(),  # naive: read as UTC
        "2030-01-01T13:59:00+02:00",  # 11:59 UTC
    ],
)
def test_expired_session_is_refused(expiration: str) -> None:
    with pytest.raises(SessionMissing, match="expired"):
        caller_with({**SESSION, "expiration": expiration}).boto3_session(now=NOW)


@pytest.mark.parametrize(
    "expiration",
    [
        (NOW + timedelta(seconds=1)).isoformat(),
        "2030-01-01T12:15:00Z",
        (NOW + timedelta(minutes=1)).replace(tzinfo=None).isoformat(),
        "2030-01-01T08:01:00-04:00",  # 12:01 UTC
    ],
)
def test_unexpired_session_is_accepted(expiration: str) -> None:
    session = caller_with({**SESSION, "expiration": expiration}).boto3_session(now=NOW)
    assert session.get_credentials().get_frozen_credentials().token == "session-token"


def test_expiry_is_checked_against_the_current_time_by_default() -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with pytest.raises(SessionMissing, match="expired"):
        caller_with({**SESSION, "expiration": past}).boto3_session()
    assert caller_with({**SESSION, "expiration": future}).boto3_session() is not None


def test_secrets_are_not_in_the_refusal_messages() -> None:
    for session in ({**SESSION, "expiration": "2020-01-01T00:00:00Z"}, {**SESSION, "expiration": "x"}):
        with pytest.raises(SessionMissing) as caught:
            caller_with(session).boto3_session(now=NOW)
        assert "secret-access-key" not in str(caught.value)
        assert "session-token" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# tool_arguments
# ---------------------------------------------------------------------------------------------------------------


def test_tool_arguments_strips_every_reserved_name() -> None:
    arguments = {
        "order_id": "42",
        "status": "shipped",
        USER_ARG: "alice",
        ROLES_ARG: ["developer"],
        SESSION_ARG: SESSION,
        "_teleport_future": 1,
        "_teleport_": 2,
    }
    snapshot = copy.deepcopy(arguments)
    assert tool_arguments(arguments) == {"order_id": "42", "status": "shipped"}
    assert arguments == snapshot


@pytest.mark.parametrize("name", ["teleport_user", "_teleport", "x_teleport_user", "__teleport_user"])
def test_tool_arguments_keeps_names_outside_the_prefix(name: str) -> None:
    assert tool_arguments({name: "v"}) == {name: "v"}


def test_tool_arguments_drops_reserved_names_in_any_letter_case() -> None:
    assert tool_arguments({"_Teleport_user": "root", "_TELEPORT_AWS_SESSION": {}, "q": 1}) == {"q": 1}


def test_tool_arguments_of_nothing() -> None:
    assert tool_arguments({}) == {}
