"""End-to-end behaviour of the interceptor: every response shape of the AgentCore Gateway contract, spoofed
identity arguments, log-only mode, malformed events, the audit trail and the Lambda entry point.

Tokens come from the real local issuer (`issuer` fixture, HTTP on 127.0.0.1)."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

import interceptor.app as app
from devtools.gateway import notification, request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer, new_key
from interceptor.pipeline import Interceptor
from tool_identity import IDENTITY_META_KEY

REPO = Path(__file__).resolve().parents[1]
GET = "orders___get_order_tool"
LIST = "orders___list_my_orders"
UPDATE = "orders___update_order"
QUERY = "db___run_query"
AUDIT_FIELDS = {
    "phase",
    "mode",
    "lambda_request_id",
    "mcp_session_id",
    "rpc_id",
    "method",
    "tool",
    "user",
    "roles",
    "bot",
    "decision",
    "forwarded",
    "reason",
    "policy_ids",
    "argument_names",
    "spoofed_arguments",
    "latency_us",
}

Audit = Callable[[], list[dict[str, Any]]]


# ---------------------------------------------------------------------------------------------------------------
# helpers


def forwarded(out: dict[str, Any]) -> dict[str, Any]:
    """The body a forward sends to the target; asserts the output is exactly a forward."""
    assert out["interceptorOutputVersion"] == "1.0"
    assert set(out) == {"interceptorOutputVersion", "mcp"}
    assert set(out["mcp"]) == {"transformedGatewayRequest"}, f"not a forward: {out}"
    request = out["mcp"]["transformedGatewayRequest"]
    assert "headers" not in request or "Authorization" not in request["headers"]
    body: dict[str, Any] = request["body"]
    return body


def short_circuit(out: dict[str, Any], kind: str = "mcp") -> tuple[int, dict[str, Any]]:
    """(statusCode, body) of a short-circuit answer; asserts the minimal documented shape."""
    assert out["interceptorOutputVersion"] == "1.0"
    assert set(out) == {"interceptorOutputVersion", kind}, f"not a short-circuit under {kind!r}: {out}"
    assert set(out[kind]) == {"transformedGatewayResponse"}
    response = out[kind]["transformedGatewayResponse"]
    assert set(response) == {"statusCode", "body"}
    assert type(response["statusCode"]) is int
    return response["statusCode"], response["body"]


def refusal(out: dict[str, Any], status: int, rpc_id: Any, kind: str = "mcp") -> str:
    """The message of a JSON-RPC error refusal with `status`, echoing `rpc_id` (explicitly, even null)."""
    code, body = short_circuit(out, kind)
    assert code == status, out
    assert set(body) == {"jsonrpc", "id", "error"}
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == rpc_id
    assert type(body["id"]) is type(rpc_id)
    assert set(body["error"]) == {"code", "message"}
    assert type(body["error"]["code"]) is int
    message: str = body["error"]["message"]
    assert isinstance(message, str)
    assert message
    assert "Traceback" not in message
    return message


def tool_denial(out: dict[str, Any], rpc_id: Any = 1) -> str:
    """The text of a policy denial: statusCode 200 with an isError tools/call result."""
    code, body = short_circuit(out)
    assert code == 200
    assert set(body) == {"jsonrpc", "id", "result"}
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == rpc_id
    assert set(body["result"]) == {"content", "isError"}
    assert body["result"]["isError"] is True
    [content] = body["result"]["content"]
    assert set(content) == {"type", "text"}
    assert content["type"] == "text"
    text: str = content["text"]
    return text


def with_args(body: dict[str, Any], **added: Any) -> dict[str, Any]:
    expected = copy.deepcopy(body)
    expected["params"]["arguments"] = {
        k: v for k, v in expected["params"].get("arguments", {}).items() if not k.startswith("_teleport_")
    }
    expected["params"]["arguments"].update(added)
    meta = {k: v for k, v in expected["params"].get("_meta", {}).items() if not k.lower().startswith("_teleport_")}
    meta[IDENTITY_META_KEY] = {"user": added["_teleport_user"], "roles": added["_teleport_roles"]}
    expected["params"]["_meta"] = meta
    return expected


def body_of(event: dict[str, Any]) -> Any:
    return event["mcp"]["gatewayRequest"]["body"]


def token_parts(token: str) -> list[str]:
    return [token, *token.split(".")]


def log_text(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Everything the code logged: messages, structured extras and any stdout/stderr output."""
    captured = capsys.readouterr()
    parts = [caplog.text, captured.out, captured.err]
    for record in caplog.records:
        parts.append(json.dumps(record.__dict__, default=str, ensure_ascii=False))
    return "\n".join(parts)


def mint_claims(issuer: Issuer, **claims: Any) -> str:
    """A correctly signed token with exactly the given claim changes (None values are kept as JSON null)."""
    return jwt.encode({**issuer.claims(user=claims.get("sub", "alice")), **claims}, issuer.signing_key, "RS256")


@pytest.fixture
def token(issuer: Issuer) -> str:
    return issuer.mint(user="alice", roles=["developer"])


@pytest.fixture
def open_policies(tmp_path: Path) -> Path:
    """The repository schema with one policy allowing everyone every tool."""
    folder = tmp_path / "open-policies"
    folder.mkdir()
    (folder / "schema.cedarschema").write_text(
        (REPO / "policies" / "schema.cedarschema").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (folder / "open.cedar").write_text('@id("open") permit (principal, action, resource);', encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# allowed tools/call


@pytest.mark.parametrize("rpc_id", [1, 0, "call-7", "", 2**40], ids=repr)
def test_allowed_call_forwards_original_body_plus_identity(
    issuer: Issuer, interceptor: Interceptor, rpc_id: Any
) -> None:
    token = issuer.mint(user="alice", roles=["developer", "auditor"])
    body = {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "tools/call",
        "params": {"name": GET, "arguments": {"order_id": "42"}, "_meta": {"progressToken": "p-9"}},
    }
    event = request_event(body, token, headers={"X-Custom": "kept"})
    snapshot = copy.deepcopy(event)

    out = interceptor.handle(event)

    sent = forwarded(out)
    assert sent == with_args(body, _teleport_user="alice", _teleport_roles=["developer", "auditor"])
    assert list(sent["params"]["arguments"])[:1] == ["order_id"]
    assert type(sent["params"]["arguments"]["_teleport_user"]) is str
    assert type(sent["params"]["arguments"]["_teleport_roles"]) is list
    assert event == snapshot, "the gateway's event was mutated"
    assert json.loads(json.dumps(out)) == out  # plain JSON all the way down
    for part in token_parts(token):
        assert part not in json.dumps(out)


def test_allowed_call_with_body_as_json_string(issuer: Issuer, interceptor: Interceptor, token: str) -> None:
    body = tool_call(GET, {"order_id": "42"}, rpc_id="s-1")
    event = request_event(body, token)
    event["mcp"]["gatewayRequest"]["body"] = json.dumps(body)
    sent = forwarded(interceptor.handle(event))
    assert sent == with_args(body, _teleport_user="alice", _teleport_roles=["developer"])


def test_allowed_call_without_arguments_gets_identity(interceptor: Interceptor, token: str) -> None:
    body = rpc("tools/call", {"name": LIST}, rpc_id=3)
    sent = forwarded(interceptor.handle(request_event(body, token)))
    assert sent == {
        **body,
        "params": {
            "name": LIST,
            "arguments": {"_teleport_user": "alice", "_teleport_roles": ["developer"]},
            "_meta": {IDENTITY_META_KEY: {"user": "alice", "roles": ["developer"]}},
        },
    }


def test_roles_are_deduplicated_in_order(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["auditor", "developer", "auditor"])
    sent = forwarded(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token)))
    assert sent["params"]["arguments"]["_teleport_roles"] == ["auditor", "developer"]


@pytest.mark.parametrize("roles", [None, []], ids=["null", "empty"])
def test_no_roles_stamp_an_empty_list(
    issuer: Issuer, make_interceptor: Callable[..., Interceptor], open_policies: Path, roles: list[str] | None
) -> None:
    interceptor = make_interceptor(POLICY_DIR=str(open_policies))
    token = mint_claims(issuer, sub="carol", username="carol", roles=roles, traits=None)
    sent = forwarded(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token)))
    assert sent["params"]["arguments"] == {"order_id": "1", "_teleport_user": "carol", "_teleport_roles": []}


@pytest.mark.parametrize("roles", [None, []], ids=["null", "empty"])
def test_no_roles_are_denied_by_the_example_policies(
    issuer: Issuer, interceptor: Interceptor, roles: list[str] | None
) -> None:
    token = mint_claims(issuer, sub="carol", username="carol", roles=roles)
    text = tool_denial(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token)))
    assert "policy_denied" in text


# ---------------------------------------------------------------------------------------------------------------
# other methods


OTHER_METHODS = [
    (
        "initialize",
        rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c"}}),
    ),
    ("ping", rpc("ping", rpc_id="ping-1")),
    ("tools/list", rpc("tools/list", {"cursor": "abc"}, rpc_id=5)),
    ("notifications/initialized", notification()),
    ("notifications/cancelled", {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}),
    ("unknown", rpc("resources/list", rpc_id=9)),
    ("logging", rpc("logging/setLevel", {"level": "info", "x": [1, {"b": None}]}, rpc_id="v")),
]


@pytest.mark.parametrize("body", [b for _, b in OTHER_METHODS], ids=[i for i, _ in OTHER_METHODS])
def test_other_methods_are_forwarded_unchanged_with_a_valid_token(
    interceptor: Interceptor, token: str, body: dict[str, Any], audit_lines: Audit
) -> None:
    event = request_event(copy.deepcopy(body), token)
    snapshot = copy.deepcopy(event)
    assert forwarded(interceptor.handle(event)) == body
    assert event == snapshot
    [record] = audit_lines()
    assert record["decision"] == "allow"
    assert record["forwarded"] is True
    assert record["user"] == "alice"
    assert record["method"] == body["method"]
    assert record["tool"] is None


@pytest.mark.parametrize("body", [b for _, b in OTHER_METHODS], ids=[i for i, _ in OTHER_METHODS])
def test_other_methods_are_refused_without_a_token(interceptor: Interceptor, body: dict[str, Any]) -> None:
    message = refusal(interceptor.handle(request_event(copy.deepcopy(body))), 401, body.get("id"))
    assert "token_missing" in message


@pytest.mark.parametrize("body", [b for _, b in OTHER_METHODS], ids=[i for i, _ in OTHER_METHODS])
def test_other_methods_are_refused_with_a_bad_token(
    issuer: Issuer, interceptor: Interceptor, body: dict[str, Any]
) -> None:
    forged = issuer.mint(key=new_key(), user="alice")
    message = refusal(interceptor.handle(request_event(copy.deepcopy(body), forged)), 401, body.get("id"))
    assert "signature_invalid" in message


# ---------------------------------------------------------------------------------------------------------------
# authentication failures


def _expired(issuer: Issuer) -> str:
    return issuer.mint(user="alice", ttl=-3600)


AUTH_FAILURES: list[tuple[str, Callable[[Issuer], dict[str, str] | None], str]] = [
    ("missing", lambda i: None, "token_missing"),
    ("not-bearer", lambda i: {"Authorization": "Basic " + i.mint()}, "token_missing"),
    ("garbage", lambda i: {"Authorization": "Bearer not.a.jwt-at-all"}, "token_malformed"),
    ("two-tokens", lambda i: {"Authorization": f"Bearer {i.mint()} {i.mint()}"}, "token_malformed"),
    ("expired", lambda i: {"Authorization": "Bearer " + _expired(i)}, "token_expired"),
    (
        "not-yet-valid",
        lambda i: {"Authorization": "Bearer " + i.mint(now=__import__("time").time() + 3600)},
        "token_not_yet_valid",
    ),
    (
        "wrong-audience",
        lambda i: {"Authorization": "Bearer " + i.mint(aud="mcp+https://other.example.com/mcp")},
        "audience_mismatch",
    ),
    (
        "wrong-issuer",
        lambda i: {"Authorization": "Bearer " + i.mint(iss="https://other.example.com")},
        "issuer_mismatch",
    ),
    ("foreign-key", lambda i: {"Authorization": "Bearer " + i.mint(key=new_key())}, "signature_invalid"),
    (
        "hs256",
        lambda i: {"Authorization": "Bearer " + jwt.encode(i.claims(), "k" * 32, "HS256")},
        "algorithm_not_allowed",
    ),
    (
        "username-differs",
        lambda i: {"Authorization": "Bearer " + i.mint(user="alice", username="root")},
        "claims_invalid",
    ),
]


@pytest.mark.parametrize("rpc_id", [17, "req-17"], ids=["int-id", "str-id"])
@pytest.mark.parametrize(("headers", "reason"), [c[1:] for c in AUTH_FAILURES], ids=[c[0] for c in AUTH_FAILURES])
def test_auth_failure_is_401_with_reason_and_no_token_text(
    issuer: Issuer,
    interceptor: Interceptor,
    rpc_id: Any,
    headers: Callable[[Issuer], dict[str, str] | None],
    reason: str,
    audit_lines: Audit,
) -> None:
    extra = headers(issuer)
    event = request_event(tool_call(GET, {"order_id": "42"}, rpc_id=rpc_id), headers=extra)
    out = interceptor.handle(event)
    message = refusal(out, 401, rpc_id)
    assert f"reason: {reason}" in message
    text = json.dumps(out)
    for value in (extra or {}).values():
        for part in value.split():
            if len(part) > 8:
                assert part not in text
        for part in value.replace(" ", ".").split("."):
            if len(part) > 8:
                assert part not in text
    [record] = audit_lines()
    assert record["reason"] == reason
    assert record["decision"] == "deny"
    assert record["forwarded"] is False
    assert record["user"] is None
    assert record["rpc_id"] == rpc_id


def test_notification_auth_failure_has_null_id(interceptor: Interceptor) -> None:
    out = interceptor.handle(request_event(notification()))
    _, body = short_circuit(out)
    assert "id" in body
    assert body["id"] is None
    assert "token_missing" in refusal(out, 401, None)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer {t}"},
        {"AUTHORIZATION": "bearer {t}"},
        {"Authorization": "BEARER {t}"},
        {"aUtHoRiZaTiOn": "Bearer   {t}  "},
    ],
    ids=repr,
)
def test_header_name_and_scheme_are_case_insensitive(
    interceptor: Interceptor, token: str, headers: dict[str, str]
) -> None:
    event = request_event(
        tool_call(GET, {"order_id": "42"}), headers={k: v.format(t=token) for k, v in headers.items()}
    )
    assert forwarded(interceptor.handle(event))["params"]["arguments"]["_teleport_user"] == "alice"


def test_two_authorization_headers_are_refused(interceptor: Interceptor, token: str) -> None:
    event = request_event(tool_call(GET, {"order_id": "42"}), token, headers={"authorization": f"Bearer {token}"})
    assert "token_malformed" in refusal(interceptor.handle(event), 401, 1)


@pytest.mark.parametrize(
    "body",
    [tool_call(GET, {"order_id": "42"}, rpc_id="h-1"), rpc("tools/list", rpc_id=4), notification()],
    ids=["tools/call", "tools/list", "notification"],
)
def test_no_headers_key_means_pass_request_headers_is_off(
    interceptor: Interceptor, token: str, body: dict[str, Any], audit_lines: Audit
) -> None:
    event = request_event(body, token, with_headers=False)
    assert "headers" not in event["mcp"]["gatewayRequest"]
    message = refusal(interceptor.handle(event), 500, body.get("id"))
    assert "passRequestHeaders" in message
    assert "headers_missing" in message
    [record] = audit_lines()
    assert record["reason"] == "headers_missing"
    assert record["forwarded"] is False


def test_idp_outage_on_a_cold_container_is_503(issuer: Issuer, make_interceptor: Callable[..., Interceptor]) -> None:
    interceptor = make_interceptor()
    token = issuer.mint(user="alice")
    issuer.down = True
    message = refusal(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}, rpc_id=5), token)), 503, 5)
    assert "identity provider unavailable" in message
    assert "idp_unavailable" in message


# ---------------------------------------------------------------------------------------------------------------
# policy denials


def test_policy_deny_is_a_tool_error_naming_user_tool_and_reason(
    interceptor: Interceptor, token: str, audit_lines: Audit
) -> None:
    event = request_event(tool_call(UPDATE, {"order_id": "42", "status": "shipped"}, rpc_id="u-1"), token)
    text = tool_denial(interceptor.handle(event), "u-1")
    assert "alice" in text
    assert UPDATE in text
    assert "policy_denied" in text
    assert "shipped" not in text
    [record] = audit_lines()
    assert record["decision"] == "deny"
    assert record["forwarded"] is False
    assert record["reason"] == "policy_denied"
    assert record["policy_ids"] == []


def test_forbid_deny_reports_the_forbidding_policy(
    issuer: Issuer, interceptor: Interceptor, audit_lines: Audit
) -> None:
    token = issuer.mint(user="bot-ci", roles=["order-admin"])
    text = tool_denial(
        interceptor.handle(request_event(tool_call(UPDATE, {"order_id": "1", "status": "shipped"}, 8), token)), 8
    )
    assert "bot-ci" in text
    assert UPDATE in text
    assert "policy_denied" in text
    assert "no-destructive-tools-for-bots" in text
    [record] = audit_lines()
    assert record["bot"] is True
    assert record["policy_ids"] == ["no-destructive-tools-for-bots"]


def test_db_query_allowed_only_on_own_databases(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="dana", roles=["db-reader"], traits={"db_names": ["sales"], "logins": ["dana"]})
    ok = forwarded(interceptor.handle(request_event(tool_call(QUERY, {"database": "sales", "query": "q"}), token)))
    assert ok["params"]["arguments"]["_teleport_user"] == "dana"
    text = tool_denial(interceptor.handle(request_event(tool_call(QUERY, {"database": "hr", "query": "q"}), token)))
    assert "policy_denied" in text


@pytest.mark.parametrize("tool", ["orders___delete_order", "orders", "db", "other___tool"])
def test_unknown_tool_is_denied_with_tool_unknown(
    issuer: Issuer, interceptor: Interceptor, tool: str, audit_lines: Audit
) -> None:
    token = issuer.mint(user="olga", roles=["order-admin", "developer", "db-reader"])
    text = tool_denial(interceptor.handle(request_event(tool_call(tool, {"order_id": "1"}, rpc_id=4), token)), 4)
    assert "tool_unknown" in text
    assert tool in text
    assert "olga" in text
    [record] = audit_lines()
    assert record["reason"] == "tool_unknown"
    assert record["forwarded"] is False


@pytest.mark.parametrize(
    "arguments",
    [{"order_id": 42}, {}, {"order_id": "42", "unexpected": "x"}, {"order_id": None}],
    ids=repr,
)
def test_arguments_not_matching_schema_are_denied(
    issuer: Issuer, interceptor: Interceptor, arguments: dict[str, Any], audit_lines: Audit
) -> None:
    token = issuer.mint(user="olga", roles=["order-admin", "developer"])
    text = tool_denial(interceptor.handle(request_event(tool_call(GET, arguments), token)))
    assert "policy_error" in text
    assert "olga" in text
    [record] = audit_lines()
    assert record["reason"] == "policy_error"
    assert record["decision"] == "deny"
    assert record["forwarded"] is False


def test_principal_with_quotes_newlines_and_unicode(issuer: Issuer, interceptor: Interceptor) -> None:
    name = 'zoë "the" \n admin\' 🚀'
    token = issuer.mint(user=name, roles=["developer"])
    sent = forwarded(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token)))
    assert sent["params"]["arguments"]["_teleport_user"] == name
    text = tool_denial(
        interceptor.handle(request_event(tool_call(UPDATE, {"order_id": "1", "status": "shipped"}), token))
    )
    assert name in text


# ---------------------------------------------------------------------------------------------------------------
# spoofed identity arguments


SPOOFED = {"_teleport_user": "root", "_teleport_roles": ["order-admin"], "_teleport_anything": "x"}


def test_spoofed_identity_arguments_are_replaced(interceptor: Interceptor, token: str, audit_lines: Audit) -> None:
    body = tool_call(GET, {"order_id": "42", **SPOOFED}, rpc_id=11)
    sent = forwarded(interceptor.handle(request_event(body, token)))
    assert sent["params"]["arguments"] == {
        "order_id": "42",
        "_teleport_user": "alice",
        "_teleport_roles": ["developer"],
    }
    assert sent == with_args(body, _teleport_user="alice", _teleport_roles=["developer"])
    [record] = audit_lines()
    assert record["spoofed_arguments"] == ["_teleport_anything", "_teleport_roles", "_teleport_user"]
    assert record["argument_names"] == ["order_id"]
    assert record["decision"] == "allow"


def test_spoofs_in_meta_are_listed_and_removed(interceptor: Interceptor, token: str, audit_lines: Audit) -> None:
    body = tool_call(GET, {"order_id": "42", "_teleport_user": "root"}, rpc_id=12)
    body["params"]["_meta"] = {"_Teleport_User": "mallory", "progressToken": 7}
    sent = forwarded(interceptor.handle(request_event(body, token)))
    assert sent["params"]["_meta"] == {"progressToken": 7, IDENTITY_META_KEY: {"user": "alice", "roles": ["developer"]}}
    assert "mallory" not in json.dumps(sent)
    [record] = audit_lines()
    assert record["spoofed_arguments"] == ["_teleport_user", "_meta._Teleport_User"]


def test_spoofed_roles_grant_nothing(interceptor: Interceptor, token: str, audit_lines: Audit) -> None:
    body = tool_call(UPDATE, {"order_id": "42", "status": "shipped", **SPOOFED})
    text = tool_denial(interceptor.handle(request_event(body, token)))
    assert "policy_denied" in text
    [record] = audit_lines()
    assert record["spoofed_arguments"] == ["_teleport_anything", "_teleport_roles", "_teleport_user"]


def test_policies_never_see_spoofed_arguments(
    tmp_path: Path,
    issuer: Issuer,
    make_interceptor: Callable[..., Interceptor],
    audit_lines: Audit,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a schema that would let a policy read `_teleport_user`, and a policy that trusts it: the function will not
    # serve with them (refusing every call, the trap never evaluated), and says which argument in its init log
    folder = tmp_path / "p"
    folder.mkdir()
    schema = (REPO / "policies" / "schema.cedarschema").read_text(encoding="utf-8")
    schema = schema.replace("      limit?: Long,\n", "      limit?: Long,\n      _teleport_user?: String,\n")
    assert "_teleport_user?" in schema
    (folder / "schema.cedarschema").write_text(schema, encoding="utf-8")
    (folder / "trap.cedar").write_text(
        '@id("trusts-caller") permit (principal, action == Teleport::Action::"orders___list_my_orders", resource) '
        'when { context.input has _teleport_user && context.input._teleport_user == "root" };',
        encoding="utf-8",
    )
    caplog.set_level(logging.ERROR)
    interceptor = make_interceptor(POLICY_DIR=str(folder))
    token = issuer.mint(user="mallory", roles=[])
    out = interceptor.handle(request_event(tool_call(LIST, {"_teleport_user": "root"}), token))
    assert "transformedGatewayRequest" not in out["mcp"]
    assert audit_lines()[0]["reason"] == "policy_set_invalid"
    problems = [problem for r in caplog.records for problem in getattr(r, "problems", [])]
    assert any("declares argument '_teleport_user'" in problem for problem in problems), problems


@pytest.mark.parametrize("name", ["_teleport_user", "_teleport_roles", "_teleport_x"])
def test_a_single_spoofed_name_is_still_caught(
    interceptor: Interceptor, token: str, name: str, audit_lines: Audit
) -> None:
    sent = forwarded(interceptor.handle(request_event(tool_call(GET, {"order_id": "1", name: "evil"}), token)))
    assert "evil" not in json.dumps(sent)
    assert audit_lines()[0]["spoofed_arguments"] == [name]


# ---------------------------------------------------------------------------------------------------------------
# log_only mode


def test_log_only_forwards_a_denied_call_stamped(
    make_interceptor: Callable[..., Interceptor], token: str, audit_lines: Audit
) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    body = tool_call(UPDATE, {"order_id": "42", "status": "shipped", "_teleport_user": "root"}, rpc_id=21)
    sent = forwarded(interceptor.handle(request_event(body, token)))
    assert sent == with_args(body, _teleport_user="alice", _teleport_roles=["developer"])
    [record] = audit_lines()
    assert record["mode"] == "log_only"
    assert record["decision"] == "deny"
    assert record["forwarded"] is True
    assert record["reason"] == "policy_denied"
    assert record["spoofed_arguments"] == ["_teleport_user"]


def test_log_only_audits_the_forbidding_policy(
    issuer: Issuer, make_interceptor: Callable[..., Interceptor], audit_lines: Audit
) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    token = issuer.mint(user="bot-ci", roles=["order-admin"])
    forwarded(interceptor.handle(request_event(tool_call(UPDATE, {"order_id": "1", "status": "shipped"}), token)))
    [record] = audit_lines()
    assert record["policy_ids"] == ["no-destructive-tools-for-bots"]
    assert record["decision"] == "deny"
    assert record["forwarded"] is True


def test_log_only_allowed_call_is_audited_as_allow(
    make_interceptor: Callable[..., Interceptor], token: str, audit_lines: Audit
) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    forwarded(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token)))
    [record] = audit_lines()
    assert (record["decision"], record["forwarded"], record["reason"]) == ("allow", True, "allowed")


@pytest.mark.parametrize(("headers", "reason"), [c[1:] for c in AUTH_FAILURES], ids=[c[0] for c in AUTH_FAILURES])
def test_log_only_still_refuses_bad_tokens(
    issuer: Issuer,
    make_interceptor: Callable[..., Interceptor],
    headers: Callable[[Issuer], dict[str, str] | None],
    reason: str,
    audit_lines: Audit,
) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    event = request_event(tool_call(GET, {"order_id": "1"}, rpc_id=2), headers=headers(issuer))
    assert reason in refusal(interceptor.handle(event), 401, 2)
    [record] = audit_lines()
    assert record["forwarded"] is False
    assert record["mode"] == "log_only"


def test_log_only_still_refuses_without_headers(make_interceptor: Callable[..., Interceptor], token: str) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    out = interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token, with_headers=False))
    assert "passRequestHeaders" in refusal(out, 500, 1)


# ---------------------------------------------------------------------------------------------------------------
# malformed events


def _event_with_body(body: Any, token: str) -> dict[str, Any]:
    event = request_event({}, token)
    event["mcp"]["gatewayRequest"]["body"] = body
    return event


MALFORMED: list[tuple[str, Callable[[str], Any], Any]] = [
    # case id, event builder (given a valid token), id expected in the refusal
    ("event-list", lambda t: [request_event(rpc("ping"), t)], None),
    ("event-none", lambda t: None, None),
    ("event-str", lambda t: json.dumps(request_event(rpc("ping"), t)), None),
    ("event-int", lambda t: 42, None),
    ("no-mcp", lambda t: {"interceptorInputVersion": "1.0"}, None),
    ("mcp-null", lambda t: {"interceptorInputVersion": "1.0", "mcp": None}, None),
    ("mcp-list", lambda t: {"interceptorInputVersion": "1.0", "mcp": [1]}, None),
    ("no-gateway-request", lambda t: {"mcp": {"rawGatewayRequest": {"body": json.dumps(rpc("ping"))}}}, None),
    (
        "headers-list",
        lambda t: {"mcp": {"gatewayRequest": {"headers": [["Authorization", t]], "body": rpc("ping")}}},
        1,  # the body's id is read before the envelope is judged
    ),
    ("batch", lambda t: _event_with_body([rpc("ping", rpc_id=1), rpc("tools/list", rpc_id=2)], t), None),
    ("batch-as-string", lambda t: _event_with_body(json.dumps([tool_call(GET, {"order_id": "1"})]), t), None),
    ("invalid-json-string", lambda t: _event_with_body('{"jsonrpc": "2.0", "id": 1, "method": ', t), None),
    ("json-string-scalar", lambda t: _event_with_body('"tools/list"', t), None),
    ("body-null", lambda t: _event_with_body(None, t), None),
    ("body-missing", lambda t: {"mcp": {"gatewayRequest": {"headers": {"Authorization": f"Bearer {t}"}}}}, None),
    ("body-number", lambda t: _event_with_body(7, t), None),
    ("no-method", lambda t: _event_with_body({"jsonrpc": "2.0", "id": 7}, t), 7),
    ("empty-method", lambda t: _event_with_body({"jsonrpc": "2.0", "id": "m", "method": ""}, t), "m"),
    ("method-not-str", lambda t: _event_with_body({"jsonrpc": "2.0", "id": 7, "method": ["tools/call"]}, t), 7),
    (
        "params-list",
        lambda t: _event_with_body({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": [GET]}, t),
        7,
    ),
    (
        "params-null",
        lambda t: _event_with_body({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": None}, t),
        7,
    ),
    ("params-str", lambda t: _event_with_body({"jsonrpc": "2.0", "id": 7, "method": "ping", "params": "x"}, t), 7),
    ("arguments-list", lambda t: _event_with_body(rpc("tools/call", {"name": GET, "arguments": ["42"]}, "a"), t), "a"),
    (
        "arguments-str",
        lambda t: _event_with_body(rpc("tools/call", {"name": GET, "arguments": '{"order_id": "1"}'}, 2), t),
        2,
    ),
    ("arguments-null", lambda t: _event_with_body(rpc("tools/call", {"name": GET, "arguments": None}, 2), t), 2),
    ("tool-name-missing", lambda t: _event_with_body(rpc("tools/call", {"arguments": {}}, 3), t), 3),
    ("tool-name-not-str", lambda t: _event_with_body(rpc("tools/call", {"name": [GET], "arguments": {}}, 3), t), 3),
    ("tool-name-empty", lambda t: _event_with_body(rpc("tools/call", {"name": "", "arguments": {}}, 3), t), 3),
    ("id-true", lambda t: _event_with_body(tool_call(GET, {"order_id": "1"}, rpc_id=True), t), None),
    ("id-false", lambda t: _event_with_body(rpc("ping", rpc_id=False), t), None),
    ("id-float", lambda t: _event_with_body(tool_call(GET, {"order_id": "1"}, rpc_id=1.5), t), None),
    ("id-object", lambda t: _event_with_body(rpc("ping", rpc_id={"a": 1}), t), None),
    ("id-list", lambda t: _event_with_body(rpc("ping", rpc_id=[1]), t), None),
]


@pytest.mark.parametrize(("build_event", "rpc_id"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_events_get_a_clean_400(
    interceptor: Interceptor, token: str, build_event: Callable[[str], Any], rpc_id: Any, audit_lines: Audit
) -> None:
    event = build_event(token)
    snapshot = copy.deepcopy(event)
    out = interceptor.handle(event)
    message = refusal(out, 400, rpc_id)
    assert "request_malformed" in message
    assert token not in json.dumps(out)
    assert event == snapshot
    [record] = audit_lines()
    assert record["reason"] == "request_malformed"
    assert record["forwarded"] is False
    assert record["decision"] == "deny"


def test_malformed_event_is_refused_even_without_a_token(interceptor: Interceptor) -> None:
    event = request_event([rpc("ping")])
    assert "request_malformed" in refusal(interceptor.handle(event), 400, None)


def test_unknown_keys_are_tolerated(interceptor: Interceptor, token: str) -> None:
    event = request_event(tool_call(GET, {"order_id": "1"}), token)
    event["mcp"]["gatewayRequest"]["context"] = {"requestId": "r", "gatewayId": "g"}
    event["mcp"]["somethingNew"] = {"x": 1}
    event["extraTopLevel"] = True
    assert forwarded(interceptor.handle(event))["params"]["arguments"]["_teleport_user"] == "alice"


@pytest.mark.parametrize(
    "event",
    [
        {"interceptorInputVersion": "1.0", "http": {"gatewayRequest": {"headers": {}, "body": "eyJhIjoxfQ=="}}},
        {"interceptorInputVersion": "1.0", "http": None},
        {"interceptorInputVersion": "1.0", "mcp": None, "http": {"gatewayRequest": {}}},
    ],
    ids=["http", "http-null", "mcp-null-http"],
)
def test_http_target_events_are_refused_under_the_http_key(
    interceptor: Interceptor, token: str, event: dict[str, Any], audit_lines: Audit
) -> None:
    event = copy.deepcopy(event)
    if isinstance(event["http"], dict) and "gatewayRequest" in event["http"]:
        event["http"]["gatewayRequest"]["headers"] = {"Authorization": f"Bearer {token}"}
    out = interceptor.handle(event)
    message = refusal(out, 400, None, kind="http")
    assert "unsupported_target" in message
    assert "mcp" not in out
    [record] = audit_lines()
    assert record["reason"] == "unsupported_target"
    assert record["forwarded"] is False


# ---------------------------------------------------------------------------------------------------------------
# RESPONSE phase events


@pytest.mark.parametrize("status", [200, 202, 500])
def test_response_phase_tools_list_is_filtered_keeping_its_status(
    interceptor: Interceptor, token: str, status: int, audit_lines: Audit
) -> None:
    # filtering itself is tested in test_listing.py; here: the contract shape of a RESPONSE answer
    request = request_event(rpc("tools/list", rpc_id=12), token)
    tools = [{"name": name, "inputSchema": {"type": "object"}} for name in (GET, UPDATE)]
    body = {"jsonrpc": "2.0", "id": 12, "result": {"tools": tools}}
    event = response_event(request, body, status)
    snapshot = copy.deepcopy(event)
    code, out_body = short_circuit(interceptor.handle(event))
    assert code == status
    assert out_body == {"jsonrpc": "2.0", "id": 12, "result": {"tools": tools[:1]}}
    assert event == snapshot
    [record] = audit_lines()
    assert record["phase"] == "RESPONSE"
    assert record["method"] == "tools/list"
    assert record["reason"] == "tools_filtered"


def test_response_phase_is_never_treated_as_a_request(interceptor: Interceptor, token: str) -> None:
    # a tools/call RESPONSE event must not be re-authorized and forwarded as a request
    request = request_event(tool_call(UPDATE, {"order_id": "1", "status": "shipped"}), token)
    body = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "done"}]}}
    out = interceptor.handle(response_event(request, body))
    assert "transformedGatewayRequest" not in out["mcp"]
    assert short_circuit(out) == (200, body)


def test_null_gateway_response_on_a_request_event_is_a_request(
    interceptor: Interceptor, token: str, audit_lines: Audit
) -> None:
    body = tool_call(GET, {"order_id": "42", "_teleport_user": "root"}, rpc_id=13)
    event = request_event(body, token)
    event["mcp"]["gatewayResponse"] = None
    assert forwarded(interceptor.handle(event)) == with_args(
        body, _teleport_user="alice", _teleport_roles=["developer"]
    )
    unauthenticated = request_event(body)
    unauthenticated["mcp"]["gatewayResponse"] = None
    assert "token_missing" in refusal(interceptor.handle(unauthenticated), 401, 13)
    records = audit_lines()
    assert [r["phase"] for r in records] == ["REQUEST", "REQUEST"]


@pytest.mark.parametrize(
    "gateway_response",
    ["not-an-object", [1], {"statusCode": "200", "body": {}}, {"statusCode": True, "body": {}}],
    ids=repr,
)
def test_malformed_response_phase_event_never_crashes(
    interceptor: Interceptor, token: str, gateway_response: Any
) -> None:
    event = request_event(rpc("tools/list"), token)
    event["mcp"]["gatewayResponse"] = gateway_response
    code, body = short_circuit(interceptor.handle(event))
    assert code == 400
    assert "request_malformed" in body["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------
# audit


def test_audit_record_of_an_allowed_call(issuer: Issuer, interceptor: Interceptor, audit_lines: Audit) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    event = request_event(tool_call(GET, {"order_id": "42"}, rpc_id="a-1"), token, headers={"mcp-session-id": None})
    event["mcp"]["gatewayRequest"]["headers"] = {"Authorization": f"Bearer {token}", "MCP-SESSION-ID": "sess-42"}
    interceptor.handle(event, "lambda-req-1")
    [record] = audit_lines()
    assert set(record) >= AUDIT_FIELDS
    latency = record.pop("latency_us")
    assert type(latency) is int
    assert latency >= 0
    assert {k: record[k] for k in AUDIT_FIELDS - {"latency_us"}} == {
        "phase": "REQUEST",
        "mode": "enforce",
        "lambda_request_id": "lambda-req-1",
        "mcp_session_id": "sess-42",
        "rpc_id": "a-1",
        "method": "tools/call",
        "tool": GET,
        "user": "alice",
        "roles": ["developer"],
        "bot": False,
        "decision": "allow",
        "forwarded": True,
        "reason": "allowed",
        "policy_ids": ["developers-read-orders"],
        "argument_names": ["order_id"],
        "spoofed_arguments": [],
    }


def test_audit_record_of_a_bot(issuer: Issuer, interceptor: Interceptor, audit_lines: Audit) -> None:
    token = issuer.mint(user="bot-reporter", roles=["bot-reporter"])
    interceptor.handle(request_event(tool_call(LIST, {"status": "pending", "limit": 3}), token), "r-2")
    [record] = audit_lines()
    assert record["bot"] is True
    assert record["user"] == "bot-reporter"
    assert record["policy_ids"] == ["reporter-bot-lists-orders"]
    assert record["argument_names"] == ["limit", "status"]


def test_exactly_one_audit_record_per_event(
    issuer: Issuer, interceptor: Interceptor, make_interceptor: Callable[..., Interceptor], audit_lines: Audit
) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    broken = make_interceptor(ENFORCEMENT_MODE="bogus")
    events: list[tuple[Interceptor, Any, str]] = [
        (interceptor, request_event(tool_call(GET, {"order_id": "1"}), token), "allowed"),
        (interceptor, request_event(tool_call(UPDATE, {"order_id": "1", "status": "shipped"}), token), "policy_denied"),
        (interceptor, request_event(tool_call("nope___x", {}), token), "tool_unknown"),
        (interceptor, request_event(rpc("tools/list"), token), "allowed"),
        (interceptor, request_event(notification(), token), "allowed"),
        (interceptor, request_event(rpc("tools/list")), "token_missing"),
        (interceptor, request_event(rpc("tools/list"), token, with_headers=False), "headers_missing"),
        (interceptor, [1, 2], "request_malformed"),
        (interceptor, {"http": {}}, "unsupported_target"),
        (
            interceptor,
            response_event(request_event(rpc("ping"), token), {"jsonrpc": "2.0", "id": 1, "result": {}}),
            "passthrough",
        ),
        (broken, request_event(rpc("tools/list"), token), "misconfigured"),
    ]
    for n, (target, event, reason) in enumerate(events, start=1):
        target.handle(event, f"req-{n}")
        records = audit_lines()
        assert len(records) == n, f"event {n} wrote {len(records) - n + 1} audit records"
        assert records[-1]["reason"] == reason
        assert records[-1]["lambda_request_id"] == f"req-{n}"
        assert type(records[-1]["latency_us"]) is int


SECRET_ARGS = {"order_id": "zz-secret-order-8f3a", "status": "zz-secret-status-77c1"}


def _secret_cases(issuer: Issuer) -> list[tuple[str, dict[str, Any], str]]:
    alice = issuer.mint(user="alice", roles=["developer"])
    admin = issuer.mint(user="olga", roles=["order-admin"])
    return [
        ("allowed", request_event(tool_call(GET, {"order_id": SECRET_ARGS["order_id"]}), alice), alice),
        ("denied", request_event(tool_call(UPDATE, dict(SECRET_ARGS)), alice), alice),
        ("forbidden", request_event(tool_call(UPDATE, dict(SECRET_ARGS)), admin), admin),
        (
            "spoofed",
            request_event(
                tool_call(GET, {"order_id": SECRET_ARGS["order_id"], "_teleport_user": SECRET_ARGS["status"]}), alice
            ),
            alice,
        ),
        ("unknown-tool", request_event(tool_call("x___y", dict(SECRET_ARGS)), alice), alice),
        ("tools-list", request_event(rpc("tools/list", {"cursor": SECRET_ARGS["order_id"]}), alice), alice),
    ]


@pytest.mark.parametrize("case", ["allowed", "denied", "forbidden", "spoofed", "unknown-tool", "tools-list"])
@pytest.mark.parametrize("mode", ["enforce", "log_only"])
def test_argument_values_and_token_never_logged(
    issuer: Issuer,
    make_interceptor: Callable[..., Interceptor],
    case: str,
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    audit_lines: Audit,
) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE=mode)
    [(_, event, token)] = [c for c in _secret_cases(issuer) if c[0] == case]
    interceptor.handle(event, "r")
    assert len(audit_lines()) == 1
    logs = log_text(caplog, capsys)
    for secret in SECRET_ARGS.values():
        assert secret not in logs
    for part in token_parts(token):
        assert part not in logs


@pytest.mark.parametrize(
    "arguments",
    [
        {"order_id": "zz-secret-order-8f3a", "status": 5},
        {"order_id": ["zz-secret-order-8f3a"]},
    ],
    ids=["wrong-type-sibling", "wrong-type"],
)
def test_argument_values_never_logged_when_arguments_do_not_match_schema(
    issuer: Issuer,
    make_interceptor: Callable[..., Interceptor],
    arguments: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    audit_lines: Audit,
) -> None:
    interceptor = make_interceptor()
    token = issuer.mint(user="olga", roles=["order-admin"])
    tool = UPDATE if "status" in arguments else GET
    text = tool_denial(interceptor.handle(request_event(tool_call(tool, arguments), token)))
    assert "policy_error" in text
    assert audit_lines()[0]["reason"] == "policy_error"
    assert "zz-secret-order-8f3a" not in log_text(caplog, capsys)


def test_audit_never_holds_the_token_on_auth_failure(
    issuer: Issuer,
    interceptor: Interceptor,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tokens = [
        issuer.mint(user="alice", ttl=-3600),
        issuer.mint(key=new_key(), user="alice"),
        issuer.mint(aud="mcp+https://other/mcp"),
        "header.zz-not-a-real-payload.zz-not-a-real-signature",
    ]
    for token in tokens:
        interceptor.handle(request_event(rpc("tools/list"), token))
    logs = log_text(caplog, capsys)
    for token in tokens:
        for part in token_parts(token):
            assert part not in logs


def run_script(tmp_path: Path, code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with the repository importable, no POWERTOOLS_* settings but `env`."""
    script = tmp_path / "run.py"
    script.write_text(code, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    environ.update(PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]), **env)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )


def test_component_logs_are_json_lines_of_the_service_without_env(tmp_path: Path, issuer: Issuer) -> None:
    code = (
        "import json, sys\n"
        "from devtools.gateway import request_event, rpc\n"
        "from interceptor.app import build\n"
        "from interceptor.audit import Auditor\n"
        "records = []\n"
        "env = json.loads(sys.argv[1])\n"
        "build(env, Auditor(records.append)).handle(request_event(rpc('tools/list'), sys.argv[2]))\n"
        "assert len(records) == 1 and json.loads(records[0])['audit']['reason'] == 'allowed', records\n"
    )
    settings = {
        "TELEPORT_ISSUER": issuer.url,
        "TELEPORT_AUDIENCE": issuer.audience,
        "TELEPORT_JWKS": json.dumps(issuer.jwks()),
    }
    done = run_script(tmp_path, code, json.dumps(settings), issuer.mint(user="alice"))
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert all(line["message"] != "audit" for line in lines), "the audit record goes to its sink only"
    [loaded] = [line for line in lines if line["message"] == "JWKS loaded"]
    assert loaded["service"] == "teleport-agentcore-interceptor"
    assert loaded["key_count"] == 1


# ---------------------------------------------------------------------------------------------------------------
# the Lambda entry point


def test_lambda_handler_uses_the_container_interceptor(
    monkeypatch: pytest.MonkeyPatch, make_interceptor: Callable[..., Interceptor], token: str, audit_lines: Audit
) -> None:
    monkeypatch.setattr(app, "INTERCEPTOR", make_interceptor())
    context = SimpleNamespace(aws_request_id="3f1c-aws-req", function_name="interceptor")
    body = tool_call(GET, {"order_id": "42"}, rpc_id=1)
    out = app.lambda_handler(request_event(body, token), context)  # type: ignore[arg-type]
    assert forwarded(out) == with_args(body, _teleport_user="alice", _teleport_roles=["developer"])
    [record] = audit_lines()
    assert record["lambda_request_id"] == "3f1c-aws-req"


LAMBDA_CONTEXT = SimpleNamespace(
    aws_request_id="3f1c-aws-req",
    function_name="interceptor",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:interceptor",
)


def test_every_operational_log_line_of_an_invocation_carries_the_lambda_request_id(
    monkeypatch: pytest.MonkeyPatch, make_interceptor: Callable[..., Interceptor], issuer: Issuer, audit_lines: Audit
) -> None:
    """Powertools' inject_lambda_context on the handler: the line of a refused call (and the key load on the way)
    names the request, as the audit line does."""
    monkeypatch.setattr(app, "INTERCEPTOR", make_interceptor())
    stream = io.StringIO()
    handler = app.logger.registered_handler
    previous = handler.setStream(stream)
    try:
        token = issuer.mint(user="olga", roles=["order-admin"])
        event = request_event(tool_call(UPDATE, {"order_id": "1", "status": 5}), token)
        assert "policy_error" in tool_denial(app.lambda_handler(event, LAMBDA_CONTEXT))  # type: ignore[arg-type]
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {"JWKS loaded", "policy evaluation errors; call refused"} <= {line["message"] for line in lines}
    assert {line["function_request_id"] for line in lines} == {"3f1c-aws-req"}
    assert {line["function_name"] for line in lines} == {"interceptor"}
    assert audit_lines()[0]["lambda_request_id"] == "3f1c-aws-req"
    assert token.split(".")[2] not in stream.getvalue()


def test_the_handler_never_logs_the_event_whatever_the_environment(tmp_path: Path, issuer: Issuer) -> None:
    """POWERTOOLS_LOGGER_LOG_EVENT=true would log each event, bearer token included: the handler overrides it."""
    code = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from devtools.gateway import request_event, rpc\n"
        "from interceptor.app import lambda_handler\n"
        "context = SimpleNamespace(aws_request_id='r-77', function_name='f', memory_limit_in_mb=128,\n"
        "                          invoked_function_arn='arn:aws:lambda:us-east-1:123456789012:function:f')\n"
        "lambda_handler(request_event(rpc('tools/list'), sys.argv[1]), context)\n"
    )
    token = issuer.mint(user="alice")
    done = run_script(
        tmp_path,
        code,
        token,
        POWERTOOLS_LOGGER_LOG_EVENT="true",
        POWERTOOLS_LOG_LEVEL="DEBUG",
        TELEPORT_ISSUER=issuer.url,
        TELEPORT_AUDIENCE=issuer.audience,
        TELEPORT_JWKS=json.dumps(issuer.jwks()),
    )
    assert '"function_request_id":"r-77"' in done.stdout  # the invocation did log, in context
    for part in token_parts(token):
        assert part not in done.stdout + done.stderr


def test_lambda_handler_refuses_and_tolerates_a_bare_context(
    monkeypatch: pytest.MonkeyPatch, make_interceptor: Callable[..., Interceptor], audit_lines: Audit
) -> None:
    monkeypatch.setattr(app, "INTERCEPTOR", make_interceptor())
    out = app.lambda_handler(request_event(rpc("tools/list", rpc_id="x")), object())  # type: ignore[arg-type]
    assert "token_missing" in refusal(out, 401, "x")
    assert audit_lines()[0]["lambda_request_id"] is None


def test_lambda_handler_never_raises_on_garbage(
    monkeypatch: pytest.MonkeyPatch, make_interceptor: Callable[..., Interceptor]
) -> None:
    monkeypatch.setattr(app, "INTERCEPTOR", make_interceptor())
    context = SimpleNamespace(aws_request_id="r")
    for event in (None, [], "", {"mcp": {"gatewayRequest": {"body": "{"}}}, {"http": {}}):
        out = app.lambda_handler(event, context)  # type: ignore[arg-type]
        assert out["interceptorOutputVersion"] == "1.0"
        kind = "http" if isinstance(event, dict) and "http" in event else "mcp"
        assert out[kind]["transformedGatewayResponse"]["statusCode"] == 400
