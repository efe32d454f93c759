"""One error shape: every exception the interceptor raises on purpose has one root (`errors.InterceptorError`, after
PyJWT's `jwt/exceptions.py`); every refusal is a `Refusal(reason, detail)`; settings and policy-set problems are
one `Problems`; and a container that cannot serve is decided once, at build, as a `BrokenInterceptor`."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import interceptor
from devtools.gateway import request_event, response_event, rpc
from devtools.issuer import Issuer
from interceptor.app import build
from interceptor.audit import Auditor
from interceptor.contract import MalformedEvent
from interceptor.errors import InterceptorError, Problems, Refusal
from interceptor.pipeline import BrokenInterceptor, Interceptor
from interceptor.policy import PolicySetInvalid, Untypable
from interceptor.reasons import Reason

# The constructors: the two roots, and subclasses that add state (MalformedEvent: the id to echo and the key to
# answer under) or fix their reason (Untypable: policy_error).
CONSTRUCTORS = {InterceptorError, Refusal, Problems, MalformedEvent, Untypable}


def interceptor_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.iter_modules(interceptor.__path__):
        module = importlib.import_module(f"interceptor.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def test_every_exception_of_the_interceptor_has_one_root() -> None:
    found = interceptor_exceptions()
    assert {c.__name__ for c in found} >= {"InterceptorError", "Refusal", "Problems", "MalformedEvent"}
    assert [c.__name__ for c in found if not issubclass(c, InterceptorError)] == []


def test_no_exception_repeats_the_constructor() -> None:
    assert [c.__name__ for c in interceptor_exceptions() if "__init__" in vars(c) and c not in CONSTRUCTORS] == []


def test_a_refusal_carries_its_reason_and_detail() -> None:
    refusal = Refusal(Reason.TOKEN_EXPIRED, "token expired")
    assert (refusal.reason, refusal.detail, str(refusal)) == (Reason.TOKEN_EXPIRED, "token expired", "token expired")
    malformed = MalformedEvent(Reason.UNSUPPORTED_TARGET, "HTTP target event", rpc_id=7, target_kind="http")
    assert isinstance(malformed, Refusal)
    assert (malformed.reason, malformed.detail, malformed.rpc_id, malformed.target_kind) == (
        Reason.UNSUPPORTED_TARGET,
        "HTTP target event",
        7,
        "http",
    )
    untypable = Untypable("argument 'n' is not a number")
    assert (untypable.reason, untypable.detail) == (Reason.POLICY_ERROR, "argument 'n' is not a number")


def test_problems_name_each_one_and_the_answer_they_cause() -> None:
    settings = Problems(["TELEPORT_ISSUER is required", "TELEPORT_AUDIENCE is required"])
    assert settings.reason is Reason.MISCONFIGURED
    assert str(settings) == "TELEPORT_ISSUER is required; TELEPORT_AUDIENCE is required"
    policies = PolicySetInvalid(["p.cedar: policy0: unknown action"])
    assert isinstance(policies, Problems)
    assert (policies.reason, policies.problems) == (Reason.POLICY_SET_INVALID, ["p.cedar: policy0: unknown action"])


# ---------------------------------------------------------------------------------------------------------------
# the broken container, decided once


def bad_policies(tmp_path: Path) -> str:
    folder = tmp_path / "policies"
    folder.mkdir()
    schema = Path(interceptor.__file__).parent / "policies" / "schema.cedarschema"
    (folder / "schema.cedarschema").write_text(schema.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "p.cedar").write_text("permit (principal, action, resource) when { nope };", encoding="utf-8")
    return str(folder)


def test_build_makes_a_serving_or_a_broken_container(env: dict[str, str], tmp_path: Path) -> None:
    assert isinstance(build(env), Interceptor)
    misconfigured = build({**env, "ENFORCEMENT_MODE": "bogus"})
    assert isinstance(misconfigured, BrokenInterceptor)
    assert misconfigured.reason is Reason.MISCONFIGURED
    invalid = build({**env, "POLICY_DIR": bad_policies(tmp_path)})
    assert isinstance(invalid, BrokenInterceptor)
    assert invalid.reason is Reason.POLICY_SET_INVALID


def test_build_survives_anything_unforeseen(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any) -> None:
        raise RuntimeError("zz-unforeseen")

    monkeypatch.setattr("interceptor.wiring.KeyStore", explode)
    broken = build(env)
    assert isinstance(broken, BrokenInterceptor)
    assert broken.reason is Reason.MISCONFIGURED


@pytest.mark.parametrize("reason", ["misconfigured", "policy_set_invalid"])
def test_a_broken_container_refuses_both_phases_with_its_reason(
    reason: str, env: dict[str, str], issuer: Issuer, tmp_path: Path, audit_log: list[str]
) -> None:
    change = {"ENFORCEMENT_MODE": "bogus"} if reason == "misconfigured" else {"POLICY_DIR": bad_policies(tmp_path)}
    broken = build({**env, **change}, Auditor(audit_log.append))
    token = issuer.mint(user="alice", roles=["developer"])
    request = request_event(rpc("ping", rpc_id=4), token)
    answered = {"jsonrpc": "2.0", "id": 4, "result": {}}  # a serving container passes this one through
    for event in (request, response_event(request, answered)):
        response = broken.handle(event)["mcp"]["transformedGatewayResponse"]
        assert response["statusCode"] == 500
        assert response["body"]["id"] == 4
        assert f"reason: {reason}" in response["body"]["error"]["message"]
    records = [json.loads(line)["audit"] for line in audit_log]
    assert [(r["phase"], r["reason"], r["decision"], r["forwarded"]) for r in records] == [
        ("REQUEST", reason, "deny", False),
        ("RESPONSE", reason, "deny", False),
    ]
    assert records[0]["detail"] == "interceptor cannot serve (see init logs)"


def test_a_malformed_event_to_a_broken_container_is_still_malformed(env: dict[str, str]) -> None:
    out = build({**env, "ENFORCEMENT_MODE": "bogus"}).handle({"http": {}})
    assert out["http"]["transformedGatewayResponse"]["statusCode"] == 400


def test_the_pipeline_has_one_outcome_assignment() -> None:
    """The audit record's outcome is filled in at the handler's single exit, nowhere else."""
    source = (Path(interceptor.__file__).parent / "pipeline.py").read_text(encoding="utf-8")
    assert source.count("record.conclude(") == 1
    for field in ("decision", "forwarded", "reason", "detail"):
        assert f"record.{field} =" not in source and f"record.{field}," not in source, field
