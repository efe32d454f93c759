"""Issue 11's findings, end to end through `Interceptor.handle` with tokens of the real local issuer: every
answer strict JSON in UTF-8 (or an `output_invalid` refusal), the method table enforced on both phases, reserved
names removed whatever the method, ids echoed whenever readable, statuses and depth refused cleanly, and only the
exact compact token form accepted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devtools.gateway import notification, request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer
from interceptor import contract
from interceptor.methods import METHODS, UNCOVERED, Rule
from interceptor.pipeline import Interceptor

GET = "orders___get_order_tool"
Audit = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def token(issuer: Issuer) -> str:
    return issuer.mint(user="alice", roles=["developer"])


def strict(out: dict[str, Any]) -> str:
    """The output as the gateway reads it; fails unless it is strict JSON in UTF-8."""
    text = json.dumps(out, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    return text


def answer(out: dict[str, Any], status: int, rpc_id: Any, reason: str) -> dict[str, Any]:
    """The JSON-RPC error of a short-circuit answer with `status`, echoing `rpc_id`, naming `reason`."""
    strict(out)
    assert set(out) == {"interceptorOutputVersion", "mcp"}
    response = out["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == status, out
    body = response["body"]
    assert body["id"] == rpc_id
    assert type(body["id"]) is type(rpc_id)
    assert body["error"]["message"].endswith(f"(reason: {reason})")
    error: dict[str, Any] = body["error"]
    return error


def forwarded(out: dict[str, Any]) -> dict[str, Any]:
    strict(out)
    assert set(out["mcp"]) == {"transformedGatewayRequest"}, out
    body: dict[str, Any] = out["mcp"]["transformedGatewayRequest"]["body"]
    return body


def with_body(body: Any, token: str) -> dict[str, Any]:
    event = request_event({}, token)
    event["mcp"]["gatewayRequest"]["body"] = body
    return event


def deep(levels: int) -> Any:
    value: Any = 1
    for n in range(levels):
        value = [value] if n % 2 else {"d": value}
    return value


# ---------------------------------------------------------------------------------------------------------------
# finding 1: every answer is strict JSON in UTF-8


@pytest.mark.parametrize(
    "body",
    [
        tool_call(GET, {"order_id": "42", "x": float("inf")}, rpc_id=3),
        rpc("tools/list", {"x": float("inf")}, rpc_id=3),
        rpc("ping", {"_meta": {"n": float("nan")}}, rpc_id=3),
        '{"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"x": 1e400}}',
    ],
    ids=["tools/call-inf", "tools/list-inf", "ping-nan-meta", "string-1e400"],
)
def test_non_finite_numbers_are_refused_not_forwarded(
    interceptor: Interceptor, token: str, body: Any, audit_lines: Audit
) -> None:
    out = interceptor.handle(with_body(body, token))
    answer(out, 400, 3, "request_malformed")
    [record] = audit_lines()
    assert record["reason"] == "request_malformed"
    assert record["rpc_id"] == 3
    assert record["forwarded"] is False


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_string_bodies_with_non_finite_constants_are_refused(
    interceptor: Interceptor, token: str, constant: str
) -> None:
    text = '{"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"x": %s}}' % constant  # noqa: UP031
    answer(interceptor.handle(with_body(text, token)), 400, None, "request_malformed")


@pytest.mark.parametrize("rpc_id", ["\ud800", "x\udfff"], ids=["lead", "trail"])
def test_an_id_with_a_lone_surrogate_is_never_echoed(interceptor: Interceptor, token: str, rpc_id: str) -> None:
    for body in (rpc("tools/list", rpc_id=rpc_id), tool_call(GET, {"order_id": "1"}, rpc_id=rpc_id)):
        out = interceptor.handle(request_event(body, token))
        answer(out, 400, None, "request_malformed")
        assert "\\ud800" not in strict(out)


def test_a_lone_surrogate_in_the_arguments_is_refused_with_the_id(interceptor: Interceptor, token: str) -> None:
    out = interceptor.handle(request_event(tool_call(GET, {"order_id": "4\ud800"}, rpc_id="c"), token))
    answer(out, 400, "c", "request_malformed")


@pytest.mark.parametrize(
    "poison", [float("nan"), float("inf"), "\ud800", {1, 2}], ids=["nan", "inf", "surrogate", "set"]
)
def test_an_answer_that_is_not_strict_json_becomes_output_invalid(
    interceptor: Interceptor, token: str, monkeypatch: pytest.MonkeyPatch, poison: Any, audit_lines: Audit
) -> None:
    # every input is checked, so only a bug could build such an answer: simulate one in the forward builder
    real = contract.forward_request
    monkeypatch.setattr(contract, "forward_request", lambda body: {**real(body), "x": poison})
    out = interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}, rpc_id=5), token))
    error = answer(out, 500, 5, "output_invalid")
    assert error["code"] == -32603
    [record] = audit_lines()
    assert (record["reason"], record["decision"], record["forwarded"]) == ("output_invalid", "deny", False)


# ---------------------------------------------------------------------------------------------------------------
# finding 2: the method table


LOOK_ALIKES = ["Tools/Call", "tools/call ", "tools/call\u0000", "tools\u2215call", "TOOLS/CALL", "t\u043eols/call"]


@pytest.mark.parametrize("method", LOOK_ALIKES, ids=repr)
def test_look_alikes_are_refused_with_their_spoofed_identity(
    interceptor: Interceptor, token: str, method: str, audit_lines: Audit
) -> None:
    body = rpc(method, {"name": GET, "arguments": {"order_id": "42", "_teleport_user": "mallory"}}, rpc_id=8)
    out = interceptor.handle(request_event(body, token))
    error = answer(out, 400, 8, "method_unknown")
    assert error["code"] == -32601
    assert "mallory" not in strict(out)
    [record] = audit_lines()
    assert (record["reason"], record["forwarded"], record["method"]) == ("method_unknown", False, method)


def test_look_alikes_are_refused_on_the_response_phase_too(interceptor: Interceptor, token: str) -> None:
    request = request_event(rpc("Tools/List", rpc_id=9), token)
    out = interceptor.handle(response_event(request, {"jsonrpc": "2.0", "id": 9, "result": {"tools": [{"name": GET}]}}))
    answer(out, 400, 9, "method_unknown")


@pytest.mark.parametrize("method", sorted(UNCOVERED))
def test_uncovered_methods_are_refused_by_default(interceptor: Interceptor, token: str, method: str) -> None:
    out = interceptor.handle(request_event(rpc(method, {"name": "p", "uri": "file:///etc/passwd"}, rpc_id=4), token))
    error = answer(out, 403, 4, "method_not_covered")
    assert "FORWARD_UNCOVERED_METHODS" in error["message"]


def test_an_administrator_can_forward_an_uncovered_method_without_reserved_names(
    make_interceptor: Callable[..., Interceptor], token: str, audit_lines: Audit
) -> None:
    interceptor = make_interceptor(FORWARD_UNCOVERED_METHODS="prompts/get,resources/read")
    body = rpc("prompts/get", {"name": "greet", "arguments": {"who": "bob", "_Teleport_User": "mallory"}}, rpc_id=6)
    sent = forwarded(interceptor.handle(request_event(body, token)))
    assert sent["params"] == {"name": "greet", "arguments": {"who": "bob"}}
    [record] = audit_lines()
    assert record["spoofed_arguments"] == ["_Teleport_User"]
    assert record["user"] == "alice"
    still_refused = interceptor.handle(request_event(rpc("completion/complete", {}, rpc_id=7), token))
    answer(still_refused, 403, 7, "method_not_covered")


def test_an_invalid_forward_setting_refuses_everything(
    make_interceptor: Callable[..., Interceptor], token: str
) -> None:
    interceptor = make_interceptor(FORWARD_UNCOVERED_METHODS="tools/call")
    out = interceptor.handle(request_event(rpc("tools/list", rpc_id=1), token))
    answer(out, 500, 1, "misconfigured")


FORWARDED = sorted(n for n, m in METHODS.items() if m.rule in {Rule.FORWARD, Rule.FILTER})


@pytest.mark.parametrize("method", FORWARDED)
def test_forwarded_methods_lose_caller_sent_reserved_names(
    interceptor: Interceptor, token: str, method: str, audit_lines: Audit
) -> None:
    params = {
        "keep": [1, {"b": None}],
        "arguments": {"_TELEPORT_ROLES": ["order-admin"], "a": 1},
        "_meta": {"_teleport_user": "mallory", "progressToken": 2},
    }
    body = {"jsonrpc": "2.0", "method": method, "params": params}
    if not method.startswith("notifications/"):
        body["id"] = 12
    sent = forwarded(interceptor.handle(request_event(body, token)))
    assert sent == {**body, "params": {"keep": [1, {"b": None}], "arguments": {"a": 1}, "_meta": {"progressToken": 2}}}
    [record] = audit_lines()
    assert record["spoofed_arguments"] == ["_TELEPORT_ROLES", "_meta._teleport_user"]
    assert record["forwarded"] is True


@pytest.mark.parametrize("method", sorted(n for n, m in METHODS.items() if m.rule is Rule.REFUSE))
def test_server_to_client_methods_are_refused(interceptor: Interceptor, token: str, method: str) -> None:
    answer(interceptor.handle(request_event(rpc(method, {}, rpc_id=2), token)), 400, 2, "method_unknown")


def test_a_refused_notification_gets_a_null_id(interceptor: Interceptor, token: str) -> None:
    answer(interceptor.handle(request_event(notification("notifications/message"), token)), 400, None, "method_unknown")


# ---------------------------------------------------------------------------------------------------------------
# finding 3: ids, statuses, depth


@pytest.mark.parametrize("headers", [0, [], ""], ids=repr)
def test_a_malformed_envelope_echoes_the_bodys_id(interceptor: Interceptor, token: str, headers: Any) -> None:
    event = request_event(tool_call(GET, {"order_id": "1"}, rpc_id="e-1"), token)
    event["mcp"]["gatewayRequest"]["headers"] = headers
    answer(interceptor.handle(event), 400, "e-1", "request_malformed")


def test_a_malformed_gateway_response_echoes_the_id(interceptor: Interceptor, token: str, audit_lines: Audit) -> None:
    event = request_event(rpc("tools/list", rpc_id=21), token)
    event["mcp"]["gatewayResponse"] = []
    answer(interceptor.handle(event), 400, 21, "request_malformed")
    assert audit_lines()[0]["rpc_id"] == 21


@pytest.mark.parametrize("status", [0, -1, 600, 10**30], ids=repr)
def test_a_response_status_outside_100_599_is_refused(interceptor: Interceptor, token: str, status: int) -> None:
    request = request_event(rpc("ping", rpc_id=22), token)
    out = interceptor.handle(response_event(request, {"jsonrpc": "2.0", "id": 22, "result": {}}, status))
    answer(out, 400, 22, "request_malformed")


def test_twenty_thousand_levels_in_a_string_body_are_a_400(interceptor: Interceptor, token: str) -> None:
    text = '{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": ' + "[" * 20_000 + "]" * 20_000 + "}}"
    answer(interceptor.handle(with_body(text, token)), 400, None, "request_malformed")


@pytest.mark.parametrize("levels", [65, 100_000])
def test_deep_nesting_in_a_parsed_event_is_a_400_with_the_id(interceptor: Interceptor, token: str, levels: int) -> None:
    event = with_body(tool_call(GET, {"order_id": deep(levels)}, rpc_id=23), token)  # as the runtime parsed it
    answer(interceptor.handle(event), 400, 23, "request_malformed")


def test_deep_nesting_in_a_parsed_response_body_is_a_400(interceptor: Interceptor, token: str) -> None:
    event = response_event(request_event(rpc("tools/list", rpc_id=24), token), None)
    event["mcp"]["gatewayResponse"]["body"] = {"jsonrpc": "2.0", "id": 24, "result": deep(100_000)}
    answer(interceptor.handle(event), 400, 24, "request_malformed")


# ---------------------------------------------------------------------------------------------------------------
# finding 6: exactly one compact serialization


@pytest.mark.parametrize(
    "pad", [lambda t: t + "=", lambda t: t + "==", lambda t: t.replace(".", "=.", 1)], ids=["pad1", "pad2", "header"]
)
def test_a_padded_token_is_malformed(
    interceptor: Interceptor, token: str, pad: Callable[[str], str], audit_lines: Audit
) -> None:
    event = request_event(tool_call(GET, {"order_id": "1"}, rpc_id=31), pad(token))
    out = interceptor.handle(event)
    answer(out, 401, 31, "token_malformed")
    assert token.split(".")[2] not in strict(out)
    assert audit_lines()[0]["reason"] == "token_malformed"


def test_the_unpadded_token_still_works(interceptor: Interceptor, token: str) -> None:
    sent = forwarded(interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token)))
    assert sent["params"]["arguments"]["_teleport_user"] == "alice"
