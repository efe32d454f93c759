"""Per-human AWS sessions: the outgoing sts:AssumeRole request, the cache, failures, and the pipeline wiring.

moto accepts and silently drops Tags, TransitiveTagKeys and SourceIdentity, so the request itself is asserted
on a real boto3 STS client (botocore Stubber, or an event hook on the wire); moto only proves that the minted
credentials work.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from devtools.gateway import request_event, rpc, tool_call
from interceptor import aws_session
from interceptor.aws_session import AwsSession, SessionBroker
from interceptor.config import Settings
from interceptor.errors import Problems, Refusal
from interceptor.pipeline import Interceptor
from interceptor.sts_names import roles_value, session_name, tag_value
from interceptor.tokens import Identity

ROOT = Path(__file__).resolve().parents[1]
ROLE = "arn:aws:iam::123456789012:role/orders-session"
OTHER_ROLE = "arn:aws:iam::123456789012:role/other-session"
EXPIRATION = datetime(2030, 1, 1, tzinfo=UTC)
ACCESS_KEY = "ASIAALICEEXAMPLE0001"
SECRET = "SECRETaccessKEY/do+not+log+0123456789abcd"
TOKEN = "SESSIONtoken//do+not+log+FwoGZXIvYXdzEXAMPLE"
ISSUER = "https://teleport.example.com"
TAG_KEYS = ["teleport-user", "teleport-roles", "teleport-tool", "teleport-cluster"]


pytestmark = pytest.mark.usefixtures("aws_env")


def identity(user: str = "alice", roles: tuple[str, ...] = ("developer",), issuer: str = ISSUER) -> Identity:
    return Identity(user=user, roles=roles, traits={}, issuer=issuer, expires_at=0)


def credentials(expiration: datetime = EXPIRATION, key: str = ACCESS_KEY) -> dict[str, Any]:
    return {
        "Credentials": {
            "AccessKeyId": key,
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": expiration,
        },
        "AssumedRoleUser": {
            "AssumedRoleId": "AROAEXAMPLE:alice",
            "Arn": "arn:aws:sts::123456789012:assumed-role/orders-session/alice",
        },
        "SourceIdentity": "alice",
    }


def expected_request(
    name: str = "alice",
    user_tag: str = "alice",
    roles_tag: str = ":developer:",
    tool: str = "orders___get_order_tool",
    cluster: str = "teleport.example.com",
    role: str = ROLE,
    duration: int = 900,
) -> dict[str, Any]:
    return {
        "RoleArn": role,
        "RoleSessionName": name,
        "SourceIdentity": name,
        "DurationSeconds": duration,
        "Tags": [
            {"Key": "teleport-user", "Value": user_tag},
            {"Key": "teleport-roles", "Value": roles_tag},
            {"Key": "teleport-tool", "Value": tool},
            {"Key": "teleport-cluster", "Value": cluster},
        ],
        "TransitiveTagKeys": TAG_KEYS,
    }


@dataclass
class StubbedSts:
    """A real boto3 STS client under a Stubber; `calls` holds the parameters of every assume_role call."""

    client: Any
    stubber: Stubber
    calls: list[dict[str, Any]] = field(default_factory=list)

    def ok(self, expected: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.stubber.add_response("assume_role", credentials(**kwargs), expected)

    def fail(self, code: str, message: str = "refused", status: int = 403) -> None:
        self.stubber.add_client_error(
            "assume_role", service_error_code=code, service_message=message, http_status_code=status
        )


@pytest.fixture
def sts() -> Iterator[StubbedSts]:
    client = boto3.client("sts", region_name="us-east-1")
    stubbed = StubbedSts(client, Stubber(client))

    def record(params: dict[str, Any], **_: Any) -> None:
        stubbed.calls.append(json.loads(json.dumps(params)))

    client.meta.events.register("provide-client-params.sts.AssumeRole", record)
    with stubbed.stubber:
        yield stubbed
    stubbed.stubber.assert_no_pending_responses()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock((EXPIRATION - timedelta(hours=1)).timestamp())


def broker(sts: StubbedSts, clock: Clock, duration: int = 900, role: str = ROLE) -> SessionBroker:
    return SessionBroker(role, duration, ["orders___*"], client_factory=lambda: sts.client, clock=clock)


# ---------------------------------------------------------------------------------------------------------------
# The outgoing AssumeRole request
# ---------------------------------------------------------------------------------------------------------------


def test_assume_role_request_names_the_human(sts: StubbedSts, clock: Clock) -> None:
    sts.ok(expected_request())  # the Stubber fails the call unless the parameters are exactly these
    session = broker(sts, clock).session_for(identity(), "orders___get_order_tool")
    assert sts.calls == [expected_request()]
    assert session == AwsSession(
        role_arn=ROLE,
        session_name="alice",
        source_identity="alice",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
        session_token=TOKEN,
        expiration=EXPIRATION,
    )


def test_assume_role_request_maps_names_sts_refuses(sts: StubbedSts, clock: Clock) -> None:
    user, roles = "Alice Smith, Jr.", ("developer", "a:b")
    name = session_name(user)
    assert name != user
    expected = expected_request(name=name, user_tag=tag_value(user), roles_tag=roles_value(roles))
    sts.ok(expected)
    session = broker(sts, clock).session_for(identity(user, roles), "orders___get_order_tool")
    assert session.session_name == session.source_identity == name
    assert all("," not in tag["Value"] for tag in sts.calls[0]["Tags"])


def test_assume_role_request_uses_the_configured_duration_and_cluster(sts: StubbedSts, clock: Clock) -> None:
    expected = expected_request(duration=3600, cluster="tp.example.com:3080", tool="orders___update_order")
    sts.ok(expected)
    b = broker(sts, clock, duration=3600)
    b.session_for(identity(issuer="https://tp.example.com:3080"), "orders___update_order")
    assert sts.calls == [expected]


def test_assume_role_wire_request_carries_tags_and_source_identity(clock: Clock) -> None:
    """What actually leaves the process (form-encoded Query API), not just what boto3 was given."""
    sent: list[Any] = []
    body = (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
        f"<Credentials><AccessKeyId>{ACCESS_KEY}</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey>"
        f"<SessionToken>{TOKEN}</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration></Credentials>"
        "<SourceIdentity>alice</SourceIdentity></AssumeRoleResult>"
        "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></AssumeRoleResponse>"
    ).encode()

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    def before_send(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, Raw())

    client = boto3.client("sts", region_name="us-east-1")
    client.meta.events.register("before-send.sts.AssumeRole", before_send)
    b = SessionBroker(ROLE, 900, ["orders___*"], client_factory=lambda: client, clock=clock)
    session = b.session_for(identity(roles=("developer", "order-admin")), "orders___get_order_tool")

    assert len(sent) == 1
    raw = sent[0].body
    form = {k: v[0] for k, v in parse_qs(raw.decode() if isinstance(raw, bytes) else raw).items()}
    assert form == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": ROLE,
        "RoleSessionName": "alice",
        "SourceIdentity": "alice",
        "DurationSeconds": "900",
        "Tags.member.1.Key": "teleport-user",
        "Tags.member.1.Value": "alice",
        "Tags.member.2.Key": "teleport-roles",
        "Tags.member.2.Value": ":developer:order-admin:",
        "Tags.member.3.Key": "teleport-tool",
        "Tags.member.3.Value": "orders___get_order_tool",
        "Tags.member.4.Key": "teleport-cluster",
        "Tags.member.4.Value": "teleport.example.com",
        "TransitiveTagKeys.member.1": "teleport-user",
        "TransitiveTagKeys.member.2": "teleport-roles",
        "TransitiveTagKeys.member.3": "teleport-tool",
        "TransitiveTagKeys.member.4": "teleport-cluster",
    }
    assert session.secret_access_key == SECRET
    assert session.expiration == EXPIRATION


# ---------------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------------


def test_repeated_calls_reuse_one_session(sts: StubbedSts, clock: Clock) -> None:
    sts.ok()
    b = broker(sts, clock)
    first = b.session_for(identity(), "orders___get_order_tool")
    for _ in range(5):
        clock.now += 60
        assert b.session_for(identity(), "orders___get_order_tool") is first
    assert len(sts.calls) == 1


def test_session_is_renewed_within_the_refresh_margin(sts: StubbedSts, clock: Clock) -> None:
    assert aws_session.REFRESH_MARGIN_S == 300
    sts.ok(expiration=EXPIRATION)
    sts.ok(expiration=EXPIRATION + timedelta(hours=1), key="ASIAALICEEXAMPLE0002")
    b = broker(sts, clock)
    b.session_for(identity(), "orders___get_order_tool")
    clock.now = EXPIRATION.timestamp() - 301
    assert b.session_for(identity(), "orders___get_order_tool").access_key_id == ACCESS_KEY
    assert len(sts.calls) == 1
    clock.now = EXPIRATION.timestamp() - 300
    renewed = b.session_for(identity(), "orders___get_order_tool")
    assert renewed.access_key_id == "ASIAALICEEXAMPLE0002"
    assert len(sts.calls) == 2
    # and the renewed session is cached in turn
    assert b.session_for(identity(), "orders___get_order_tool") is renewed
    assert len(sts.calls) == 2


def test_expired_session_is_never_handed_out(sts: StubbedSts, clock: Clock) -> None:
    sts.ok(expiration=EXPIRATION)
    sts.ok(expiration=EXPIRATION + timedelta(hours=2), key="ASIAALICEEXAMPLE0002")
    b = broker(sts, clock)
    b.session_for(identity(), "orders___get_order_tool")
    clock.now = EXPIRATION.timestamp() + 10
    assert b.session_for(identity(), "orders___get_order_tool").access_key_id == "ASIAALICEEXAMPLE0002"


def test_changed_roles_get_a_new_session(sts: StubbedSts, clock: Clock) -> None:
    sts.ok(expected_request(roles_tag=":developer:"))
    sts.ok(expected_request(roles_tag=":developer:order-admin:"), key="ASIAALICEEXAMPLE0002")
    b = broker(sts, clock)
    before = b.session_for(identity(roles=("developer",)), "orders___get_order_tool")
    after = b.session_for(identity(roles=("developer", "order-admin")), "orders___get_order_tool")
    assert before.access_key_id != after.access_key_id
    assert len(sts.calls) == 2
    # both stay cached
    assert b.session_for(identity(roles=("developer",)), "orders___get_order_tool") is before
    assert len(sts.calls) == 2


def test_another_tool_gets_a_new_session(sts: StubbedSts, clock: Clock) -> None:
    sts.ok(expected_request(tool="orders___get_order_tool"))
    sts.ok(expected_request(tool="orders___list_my_orders"), key="ASIAALICEEXAMPLE0002")
    b = broker(sts, clock)
    get = b.session_for(identity(), "orders___get_order_tool")
    listing = b.session_for(identity(), "orders___list_my_orders")
    assert get.access_key_id != listing.access_key_id
    assert b.session_for(identity(), "orders___get_order_tool") is get
    assert len(sts.calls) == 2


def test_another_user_never_gets_a_cached_session(sts: StubbedSts, clock: Clock) -> None:
    sts.ok(expected_request())
    sts.ok(expected_request(name="bob", user_tag="bob"), key="ASIABOBEXAMPLE000001")
    b = broker(sts, clock)
    alice = b.session_for(identity("alice"), "orders___get_order_tool")
    bob = b.session_for(identity("bob"), "orders___get_order_tool")
    assert (alice.session_name, bob.session_name) == ("alice", "bob")
    assert bob.access_key_id == "ASIABOBEXAMPLE000001"


def test_another_cluster_gets_a_new_session(sts: StubbedSts, clock: Clock) -> None:
    sts.ok(expected_request())
    sts.ok(expected_request(cluster="leaf.example.com"), key="ASIAALICEEXAMPLE0002")
    b = broker(sts, clock)
    b.session_for(identity(), "orders___get_order_tool")
    other = b.session_for(identity(issuer="https://leaf.example.com"), "orders___get_order_tool")
    assert other.access_key_id == "ASIAALICEEXAMPLE0002"


def test_cache_is_bounded_and_evicts_the_least_recently_used(
    sts: StubbedSts, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_session, "CACHE_SIZE", 2)
    for _ in range(4):
        sts.ok()
    b = broker(sts, clock)
    b.session_for(identity("alice"), "orders___x")
    b.session_for(identity("bob"), "orders___x")
    b.session_for(identity("alice"), "orders___x")  # cached, and now most recently used
    b.session_for(identity("carol"), "orders___x")  # evicts bob
    assert [c["RoleSessionName"] for c in sts.calls] == ["alice", "bob", "carol"]
    b.session_for(identity("alice"), "orders___x")
    b.session_for(identity("bob"), "orders___x")
    assert [c["RoleSessionName"] for c in sts.calls] == ["alice", "bob", "carol", "bob"]


# ---------------------------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("PackedPolicyTooLarge", 400),
        ("RegionDisabledException", 403),
        ("ExpiredTokenException", 400),
        ("ValidationError", 400),
    ],
)
def test_sts_refusal_becomes_session_unavailable_with_the_code(
    sts: StubbedSts, clock: Clock, code: str, status: int
) -> None:
    message = f"User: arn:aws:sts::123456789012:assumed-role/interceptor/x is not authorized {SECRET}"
    sts.fail(code, message, status)
    with pytest.raises(Refusal) as caught:
        broker(sts, clock).session_for(identity(), "orders___get_order_tool")
    assert caught.value.detail == f"sts:AssumeRole failed: {code}"
    assert str(caught.value) == caught.value.detail
    assert SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_failure_is_not_cached(sts: StubbedSts, clock: Clock) -> None:
    sts.fail("AccessDenied")
    sts.ok()
    b = broker(sts, clock)
    with pytest.raises(Refusal):
        b.session_for(identity(), "orders___get_order_tool")
    assert b.session_for(identity(), "orders___get_order_tool").access_key_id == ACCESS_KEY
    assert len(sts.calls) == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_sts_endpoint_becomes_session_unavailable(clock: Clock) -> None:
    client = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )
    b = SessionBroker(ROLE, 900, ["orders___*"], client_factory=lambda: client, clock=clock)
    with pytest.raises(Refusal) as caught:
        b.session_for(identity(), "orders___get_order_tool")
    assert caught.value.detail == "sts:AssumeRole failed: EndpointConnectionError"


def test_missing_credentials_become_session_unavailable(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = boto3.Session().client("sts", region_name="us-east-1")
    b = SessionBroker(ROLE, 900, ["orders___*"], client_factory=lambda: client, clock=clock)
    with pytest.raises(Refusal) as caught:
        b.session_for(identity(), "orders___get_order_tool")
    assert caught.value.detail == "sts:AssumeRole failed: NoCredentialsError"


def test_sts_client_creation_failure_becomes_session_unavailable(clock: Clock) -> None:
    def factory() -> Any:
        raise RuntimeError("could not create the STS client")

    b = SessionBroker(ROLE, 900, ["orders___*"], client_factory=factory, clock=clock)
    with pytest.raises(Refusal):
        b.session_for(identity(), "orders___get_order_tool")


# ---------------------------------------------------------------------------------------------------------------
# Lazy client, tool selection, what is handed out
# ---------------------------------------------------------------------------------------------------------------


def test_sts_client_is_created_lazily_and_once(sts: StubbedSts, clock: Clock) -> None:
    made: list[Any] = []

    def factory() -> Any:
        made.append(sts.client)
        return sts.client

    b = SessionBroker(ROLE, 900, ["orders___*"], client_factory=factory, clock=clock)
    assert b.wants("orders___get_order_tool")
    assert made == []
    sts.ok()
    sts.ok(key="ASIABOBEXAMPLE000001")
    b.session_for(identity("alice"), "orders___get_order_tool")
    b.session_for(identity("bob"), "orders___get_order_tool")
    b.session_for(identity("alice"), "orders___get_order_tool")
    assert len(made) == 1


@pytest.mark.parametrize(
    ("patterns", "tool", "wanted"),
    [
        (["orders___*"], "orders___get_order_tool", True),
        (["orders___*"], "db___run_query", False),
        (["orders___*"], "Orders___get_order_tool", False),  # case-sensitive, like the gateway
        (["orders___*"], "xorders___get_order_tool", False),
        (["orders___get_order_tool"], "orders___update_order", False),
        (["orders___get_order_tool", "db___*"], "db___run_query", True),
        (["*___update_?rder"], "orders___update_order", True),
        ([], "orders___get_order_tool", False),
    ],
)
def test_wants_matches_tool_globs(patterns: list[str], tool: str, wanted: bool) -> None:
    assert SessionBroker(ROLE, 900, patterns, client_factory=lambda: None).wants(tool) is wanted


def test_session_argument_and_audit_fields() -> None:
    session = AwsSession(ROLE, "alice", "alice", ACCESS_KEY, SECRET, TOKEN, EXPIRATION)
    assert session.argument == {
        "accessKeyId": ACCESS_KEY,
        "secretAccessKey": SECRET,
        "sessionToken": TOKEN,
        "expiration": "2030-01-01T00:00:00+00:00",
        "roleArn": ROLE,
        "sourceIdentity": "alice",
        "sessionName": "alice",
    }
    audit = session.audit_fields
    assert audit == {
        "aws_role_arn": ROLE,
        "aws_session_name": "alice",
        "aws_source_identity": "alice",
        "aws_session_expiration": "2030-01-01T00:00:00+00:00",
    }
    assert SECRET not in json.dumps(audit)
    assert TOKEN not in json.dumps(audit)


def _import_app(jwks: dict[str, Any], **extra_env: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "TELEPORT_ISSUER": ISSUER,
        "TELEPORT_AUDIENCE": "mcp+https://gateway.example.com/mcp",
        "TELEPORT_JWKS": json.dumps(jwks),
        **extra_env,
    }
    code = (
        "import json, sys, interceptor.app as app\n"
        "from interceptor.pipeline import BrokenInterceptor\n"
        "print('RESULT ' + json.dumps({'boto3': 'boto3' in sys.modules, 'sts_client': 'botocore.client' in sys.modules,"
        " 'sessions': getattr(app.INTERCEPTOR, '_sessions', None) is not None,"
        " 'broken': isinstance(app.INTERCEPTOR, BrokenInterceptor)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_importing_the_app_without_sessions_does_not_import_boto3(issuer: Any) -> None:
    result = _import_app(issuer.jwks())
    assert result == {"boto3": False, "sts_client": False, "sessions": False, "broken": False}


def test_importing_the_app_with_sessions_defers_boto3_to_the_first_call(issuer: Any) -> None:
    result = _import_app(issuer.jwks(), SESSION_ROLE_ARN=ROLE, SESSION_TOOLS="orders___*")
    assert result == {"boto3": False, "sts_client": False, "sessions": True, "broken": False}


# ---------------------------------------------------------------------------------------------------------------
# moto: the minted credentials work (moto drops tags and SourceIdentity, see the Stubber tests above)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.mark.usefixtures("moto")
def test_broker_against_moto_returns_usable_credentials() -> None:
    b = SessionBroker(ROLE, 900, ["orders___*"])  # the default client factory: boto3.client("sts")
    session = b.session_for(identity("alice@example.com"), "orders___get_order_tool")
    assert session.session_name == "alice@example.com"
    assert session.expiration.tzinfo is not None
    as_human = boto3.Session(
        aws_access_key_id=session.access_key_id,
        aws_secret_access_key=session.secret_access_key,
        aws_session_token=session.session_token,
        region_name="us-east-1",
    )
    arn = as_human.client("sts").get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/orders-session/alice@example.com"
    # cached: the same credentials on the next call
    assert b.session_for(identity("alice@example.com"), "orders___get_order_tool") is session


@pytest.mark.usefixtures("moto")
def test_broker_against_moto_maps_names_into_the_assumed_role_arn() -> None:
    b = SessionBroker(ROLE, 900, ["orders___*"])
    session = b.session_for(identity("Alice Smith"), "orders___get_order_tool")
    as_human = boto3.Session(
        aws_access_key_id=session.access_key_id,
        aws_secret_access_key=session.secret_access_key,
        aws_session_token=session.session_token,
        region_name="us-east-1",
    )
    arn = as_human.client("sts").get_caller_identity()["Arn"]
    assert arn.endswith("/orders-session/" + session_name("Alice Smith"))


# ---------------------------------------------------------------------------------------------------------------
# Pipeline: sessions stamped into allowed calls of the configured tools
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def session_interceptor(make_interceptor: Callable[..., Interceptor], sts: StubbedSts) -> Interceptor:
    interceptor = make_interceptor(SESSION_ROLE_ARN=ROLE, SESSION_TOOLS="orders___*")
    sessions = interceptor._sessions
    assert sessions is not None
    sessions._client_factory = lambda: sts.client
    return interceptor


def forwarded_arguments(out: dict[str, Any]) -> dict[str, Any]:
    return dict(out["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"])


def refusal(out: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = out["mcp"]["transformedGatewayResponse"]
    return response["statusCode"], response["body"]


def cluster(issuer: Any) -> str:
    return str(issuer.url.removeprefix("http://"))


def everything_logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Every captured log record, raw and as the JSON line Powertools writes, plus anything printed."""
    captured = capsys.readouterr()
    handlers = logging.getLogger("teleport-agentcore-interceptor").handlers
    assert handlers, "the Powertools service logger has a handler"
    formatter = handlers[0].formatter
    assert formatter is not None
    records = [json.dumps(r.__dict__, default=str) for r in caplog.records]
    lines = [formatter.format(r) for r in caplog.records]
    return "\n".join([captured.out, captured.err, caplog.text, *records, *lines])


def test_allowed_call_receives_a_session_in_the_humans_name(
    issuer: Any, session_interceptor: Interceptor, sts: StubbedSts, audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    sts.ok(expected_request(cluster=cluster(issuer)))
    token = issuer.mint(user="alice", roles=["developer"])
    out = session_interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token))
    args = forwarded_arguments(out)
    assert args == {
        "order_id": "42",
        "_teleport_user": "alice",
        "_teleport_roles": ["developer"],
        "_teleport_aws_session": {
            "accessKeyId": ACCESS_KEY,
            "secretAccessKey": SECRET,
            "sessionToken": TOKEN,
            "expiration": "2030-01-01T00:00:00+00:00",
            "roleArn": ROLE,
            "sourceIdentity": "alice",
            "sessionName": "alice",
        },
    }
    (record,) = audit_lines()
    assert record["decision"] == "allow"
    assert record["forwarded"] is True
    assert record["aws_role_arn"] == ROLE
    assert record["aws_session_name"] == "alice"
    assert record["aws_source_identity"] == "alice"
    assert record["aws_session_expiration"] == "2030-01-01T00:00:00+00:00"


def test_secrets_never_reach_any_log(
    issuer: Any,
    session_interceptor: Interceptor,
    sts: StubbedSts,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    sts.ok()
    sts.fail("AccessDenied", f"not authorized {SECRET}")
    alice = issuer.mint(user="alice", roles=["developer"])
    bob = issuer.mint(user="bob", roles=["developer"])
    ok = session_interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "1"}), alice))
    assert forwarded_arguments(ok)["_teleport_aws_session"]["secretAccessKey"] == SECRET
    session_interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "1"}), alice))
    refused = session_interceptor.handle(request_event(tool_call("orders___list_my_orders", {}), bob))
    assert refusal(refused)[0] == 200
    logged = everything_logged(caplog, capsys)
    assert "aws_session_name" in logged  # the audit lines were captured
    assert SECRET not in logged
    assert TOKEN not in logged
    assert "secretAccessKey" not in logged
    assert "sessionToken" not in logged


def test_tool_outside_session_tools_gets_no_session(
    issuer: Any, session_interceptor: Interceptor, sts: StubbedSts, audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    token = issuer.mint(user="dana", roles=["db-reader"], traits={"db_names": ["sales"]})
    out = session_interceptor.handle(
        request_event(tool_call("db___run_query", {"database": "sales", "query": "select 1"}), token)
    )
    assert forwarded_arguments(out) == {
        "database": "sales",
        "query": "select 1",
        "_teleport_user": "dana",
        "_teleport_roles": ["db-reader"],
    }
    assert sts.calls == []
    (record,) = audit_lines()
    assert not any(k.startswith("aws_") for k in record)


def test_denied_call_mints_no_session(
    issuer: Any, session_interceptor: Interceptor, sts: StubbedSts, audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    out = session_interceptor.handle(
        request_event(tool_call("orders___update_order", {"order_id": "42", "status": "shipped"}), token)
    )
    status, body = refusal(out)
    assert status == 200
    assert body["result"]["isError"] is True
    assert "policy_denied" in body["result"]["content"][0]["text"]
    assert sts.calls == []
    (record,) = audit_lines()
    assert record["reason"] == "policy_denied"
    assert "aws_session_name" not in record


def test_other_methods_mint_no_session(issuer: Any, session_interceptor: Interceptor, sts: StubbedSts) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    out = session_interceptor.handle(request_event(rpc("tools/list", {}), token))
    assert "transformedGatewayRequest" in out["mcp"]
    assert sts.calls == []


SPOOFED = {
    "accessKeyId": "AKIAATTACKER00000000",
    "secretAccessKey": "attacker",
    "sessionToken": "attacker",
    "expiration": "2099-01-01T00:00:00+00:00",
    "roleArn": "arn:aws:iam::999999999999:role/admin",
    "sourceIdentity": "root",
    "sessionName": "root",
}


def test_caller_sent_session_is_overwritten(
    issuer: Any, session_interceptor: Interceptor, sts: StubbedSts, audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    sts.ok()
    token = issuer.mint(user="alice", roles=["developer"])
    arguments = {"order_id": "42", "_teleport_aws_session": SPOOFED, "_teleport_user": "root"}
    out = session_interceptor.handle(request_event(tool_call("orders___get_order_tool", arguments), token))
    args = forwarded_arguments(out)
    assert args["_teleport_user"] == "alice"
    assert args["_teleport_aws_session"]["accessKeyId"] == ACCESS_KEY
    assert args["_teleport_aws_session"]["sourceIdentity"] == "alice"
    assert "attacker" not in json.dumps(args)
    (record,) = audit_lines()
    assert record["spoofed_arguments"] == ["_teleport_aws_session", "_teleport_user"]


def test_caller_sent_session_is_removed_for_tools_without_sessions(
    issuer: Any, session_interceptor: Interceptor, sts: StubbedSts
) -> None:
    token = issuer.mint(user="dana", roles=["db-reader"], traits={"db_names": ["sales"]})
    arguments = {"database": "sales", "query": "select 1", "_teleport_aws_session": SPOOFED}
    out = session_interceptor.handle(request_event(tool_call("db___run_query", arguments), token))
    assert "_teleport_aws_session" not in forwarded_arguments(out)
    assert sts.calls == []


def test_caller_sent_session_is_removed_when_sessions_are_off(issuer: Any, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    arguments = {"order_id": "42", "_teleport_aws_session": SPOOFED}
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", arguments), token))
    assert forwarded_arguments(out) == {"order_id": "42", "_teleport_user": "alice", "_teleport_roles": ["developer"]}


def test_sts_failure_refuses_only_the_tools_that_need_a_session(
    issuer: Any,
    session_interceptor: Interceptor,
    sts: StubbedSts,
    audit_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    sts.fail("AccessDenied", "not authorized to perform sts:TagSession")
    token = issuer.mint(user="alice", roles=["developer"])
    arguments = {"order_id": "42", "_teleport_aws_session": SPOOFED}
    out = session_interceptor.handle(request_event(tool_call("orders___get_order_tool", arguments, rpc_id=7), token))
    status, body = refusal(out)
    assert status == 200
    assert body["id"] == 7
    assert body["result"]["isError"] is True
    text = body["result"]["content"][0]["text"]
    assert "session_unavailable" in text
    assert "alice" in text
    assert "attacker" not in json.dumps(out)

    dana = issuer.mint(user="dana", roles=["db-reader"], traits={"db_names": ["sales"]})
    other = session_interceptor.handle(
        request_event(tool_call("db___run_query", {"database": "sales", "query": "select 1"}), dana)
    )
    assert forwarded_arguments(other)["_teleport_user"] == "dana"

    refused, allowed = audit_lines()
    assert refused["reason"] == "session_unavailable"
    assert refused["decision"] == "deny"
    assert refused["forwarded"] is False
    assert refused["detail"] == "sts:AssumeRole failed: AccessDenied"
    assert "aws_session_name" not in refused
    assert allowed["reason"] == "allowed"
    assert allowed["forwarded"] is True


def test_unreachable_sts_refuses_with_session_unavailable(
    issuer: Any, make_interceptor: Callable[..., Interceptor], audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    interceptor = make_interceptor(SESSION_ROLE_ARN=ROLE, SESSION_TOOLS="orders___get_order_tool")
    client = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )
    assert interceptor._sessions is not None
    interceptor._sessions._client_factory = lambda: client
    token = issuer.mint(user="alice", roles=["developer"])
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token))
    status, body = refusal(out)
    assert (status, body["result"]["isError"]) == (200, True)
    (record,) = audit_lines()
    assert (record["reason"], record["detail"]) == (
        "session_unavailable",
        "sts:AssumeRole failed: EndpointConnectionError",
    )


def test_pipeline_reuses_the_cached_session(issuer: Any, session_interceptor: Interceptor, sts: StubbedSts) -> None:
    sts.ok()
    token = issuer.mint(user="alice", roles=["developer"])
    sessions = [
        forwarded_arguments(
            session_interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": str(i)}), token))
        )["_teleport_aws_session"]
        for i in range(3)
    ]
    assert len(sts.calls) == 1
    assert sessions[0] == sessions[1] == sessions[2]


def test_bot_sessions_carry_the_bot_name(issuer: Any, session_interceptor: Interceptor, sts: StubbedSts) -> None:
    expected = expected_request(
        name="bot-reporter",
        user_tag="bot-reporter",
        roles_tag=":bot-reporter:",
        tool="orders___list_my_orders",
        cluster=cluster(issuer),
    )
    sts.ok(expected)
    token = issuer.mint(user="bot-reporter", roles=["bot-reporter"])
    out = session_interceptor.handle(request_event(tool_call("orders___list_my_orders", {}), token))
    assert forwarded_arguments(out)["_teleport_aws_session"]["sourceIdentity"] == "bot-reporter"


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------

BASE_ENV = {"TELEPORT_ISSUER": ISSUER, "TELEPORT_AUDIENCE": "mcp+https://gateway.example.com/mcp"}


def test_sessions_are_off_by_default() -> None:
    settings = Settings.from_env(BASE_ENV)
    assert settings.session_role_arn is None
    assert settings.session_duration_s == 900
    assert settings.session_tools == ()


def test_session_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            **BASE_ENV,
            "SESSION_ROLE_ARN": " arn:aws-us-gov:iam::123456789012:role/path/orders-session ",
            "SESSION_DURATION_SECONDS": "3600",
            "SESSION_TOOLS": " orders___* , db___run_query,,",
        }
    )
    assert settings.session_role_arn == "arn:aws-us-gov:iam::123456789012:role/path/orders-session"
    assert settings.session_duration_s == 3600
    assert settings.session_tools == ("orders___*", "db___run_query")


@pytest.mark.parametrize(
    "arn",
    [
        "orders-session",
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::12345678901:role/r",
        "arn:aws:sts::123456789012:assumed-role/r/s",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/r with space",
        "arn:aws:iam::123456789012:role/r*",
    ],
)
def test_bad_role_arn_is_refused(arn: str) -> None:
    with pytest.raises(Problems) as caught:
        Settings.from_env({**BASE_ENV, "SESSION_ROLE_ARN": arn, "SESSION_TOOLS": "orders___*"})
    assert any("SESSION_ROLE_ARN" in p for p in caught.value.problems)
    assert arn not in str(caught.value)


@pytest.mark.parametrize("arn", ["arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/orders", "arn:aws:iam::123456789012:role/rôle"])
def test_non_ascii_role_arn_is_refused(arn: str) -> None:
    with pytest.raises(Problems):
        Settings.from_env({**BASE_ENV, "SESSION_ROLE_ARN": arn, "SESSION_TOOLS": "orders___*"})


@pytest.mark.parametrize("duration", ["899", "3601", "0", "-900", "abc", "nan", "inf"])
def test_duration_out_of_range_is_refused(duration: str) -> None:
    with pytest.raises(Problems) as caught:
        Settings.from_env(
            {**BASE_ENV, "SESSION_ROLE_ARN": ROLE, "SESSION_TOOLS": "orders___*", "SESSION_DURATION_SECONDS": duration}
        )
    assert any("SESSION_DURATION_SECONDS" in p for p in caught.value.problems)


@pytest.mark.parametrize("duration", ["900", "1800", "3600"])
def test_duration_in_range_is_accepted(duration: str) -> None:
    settings = Settings.from_env(
        {**BASE_ENV, "SESSION_ROLE_ARN": ROLE, "SESSION_TOOLS": "orders___*", "SESSION_DURATION_SECONDS": duration}
    )
    assert settings.session_duration_s == int(duration)


def test_session_tools_without_role_is_refused() -> None:
    with pytest.raises(Problems) as caught:
        Settings.from_env({**BASE_ENV, "SESSION_TOOLS": "orders___*"})
    assert caught.value.problems == ["SESSION_TOOLS is set but SESSION_ROLE_ARN is not"]


@pytest.mark.parametrize("tools", ["", " ", ",", " , "])
def test_role_without_session_tools_is_refused(tools: str) -> None:
    with pytest.raises(Problems) as caught:
        Settings.from_env({**BASE_ENV, "SESSION_ROLE_ARN": ROLE, "SESSION_TOOLS": tools})
    assert any("SESSION_TOOLS is required" in p for p in caught.value.problems)


@pytest.mark.parametrize("tools", ["orders/*", "orders___* db___*", "orders___$x", "orders.tool"])
def test_bad_session_tool_patterns_are_refused(tools: str) -> None:
    with pytest.raises(Problems) as caught:
        Settings.from_env({**BASE_ENV, "SESSION_ROLE_ARN": ROLE, "SESSION_TOOLS": tools})
    assert any("SESSION_TOOLS patterns" in p for p in caught.value.problems)


def test_every_session_problem_is_reported_at_once() -> None:
    with pytest.raises(Problems) as caught:
        Settings.from_env({**BASE_ENV, "SESSION_ROLE_ARN": "bad", "SESSION_DURATION_SECONDS": "7200"})
    problems = " | ".join(caught.value.problems)
    assert "SESSION_ROLE_ARN" in problems
    assert "SESSION_DURATION_SECONDS" in problems
    assert "SESSION_TOOLS is required" in problems


@pytest.mark.parametrize(
    "overrides",
    [
        {"SESSION_ROLE_ARN": "not-an-arn", "SESSION_TOOLS": "orders___*"},
        {"SESSION_ROLE_ARN": ROLE, "SESSION_TOOLS": "orders___*", "SESSION_DURATION_SECONDS": "43200"},
        {"SESSION_TOOLS": "orders___*"},
    ],
)
def test_misconfigured_sessions_refuse_every_request(
    issuer: Any, make_interceptor: Callable[..., Interceptor], overrides: dict[str, str]
) -> None:
    interceptor = make_interceptor(**overrides)
    token = issuer.mint(user="alice", roles=["developer"])
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token))
    status, body = refusal(out)
    assert status == 500
    assert "misconfigured" in body["error"]["message"]


def test_log_only_forwards_denied_calls_without_aws_credentials(
    issuer: Any, make_interceptor: Callable[..., Interceptor], sts: StubbedSts
) -> None:
    interceptor = make_interceptor(SESSION_ROLE_ARN=ROLE, SESSION_TOOLS="orders___*", ENFORCEMENT_MODE="log_only")
    sessions = interceptor._sessions
    assert sessions is not None
    sessions._client_factory = lambda: sts.client
    token = issuer.mint(user="alice", roles=["developer"])  # developers may not update orders
    args = forwarded_arguments(
        interceptor.handle(
            request_event(
                tool_call(
                    "orders___update_order", {"order_id": "1", "status": "shipped", "_teleport_aws_session": SPOOFED}
                ),
                token,
            )
        )
    )
    assert "_teleport_aws_session" not in args
    assert sts.calls == []


def test_session_repr_never_shows_the_secrets() -> None:
    from datetime import UTC, datetime

    from interceptor.aws_session import AwsSession

    session = AwsSession(ROLE, "alice", "alice", "ASIAEXAMPLE", "s3cr3t-key", "t0ken", datetime.now(UTC))
    assert "s3cr3t-key" not in repr(session) and "t0ken" not in repr(session)
    assert "ASIAEXAMPLE" in repr(session)
