"""Issue 11's findings, end to end through `Interceptor.handle` with tokens of the real local issuer: every
answer strict JSON in UTF-8 (or an `output_invalid` refusal), the method table enforced on both phases, reserved
names removed whatever the method, ids echoed whenever readable, statuses and depth refused cleanly, and only the
exact compact token form accepted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    issuer: Issuer, interceptor: Interceptor, monkeypatch: pytest.MonkeyPatch, poison: Any, audit_lines: Audit
) -> None:
    # every input is checked, so only a bug could build such an answer: simulate one in the refusal builder
    real = contract.tool_error
    monkeypatch.setattr(contract, "tool_error", lambda *a: {**real(*a), "x": poison})
    denied = issuer.mint(user="mallory", roles=["nobody"])
    out = interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}, rpc_id=5), denied))
    error = answer(out, 500, 5, "output_invalid")
    assert error["code"] == -32603
    [record] = audit_lines()
    assert (record["reason"], record["decision"], record["forwarded"]) == ("output_invalid", "deny", False)


# Forwarded requests are not encoded again at the exit: they are built from the body (proven at parse) and the
# verified identity (proven at verification). Any JSON-ish value, including NaN, infinities, huge integers and lone
# surrogates, anywhere a caller can put one: every answer must still be strict JSON in UTF-8.
TEXT = st.text(st.characters(exclude_categories=()), max_size=4)  # lone surrogates included
LEAF = st.none() | st.booleans() | st.integers() | st.floats() | TEXT  # NaN, infinities and bigints included
VALUES = st.recursive(
    LEAF, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3), max_leaves=10
)
CALLERS = [("alice", ["developer"]), ("zoë", ["developer", "dév"])]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=VALUES, extra=VALUES, param=VALUES, caller=st.sampled_from(CALLERS))
def test_every_forwarded_call_is_strict_json(
    issuer: Issuer, interceptor: Interceptor, meta: Any, extra: Any, param: Any, caller: tuple[str, list[str]]
) -> None:
    token = issuer.mint(user=caller[0], roles=caller[1])
    call = tool_call(GET, {"order_id": "1"}, rpc_id=7)
    call["params"].update({"_meta": meta, "x": param})
    listing = rpc("tools/list", {"_meta": meta, "cursor": param}, rpc_id=8)
    for body in (call, listing):
        out = interceptor.handle(request_event({**body, "x": extra}, token))
        strict(out)


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


# ---------------------------------------------------------------------------------------------------------------
# issue 12: MCP 2026-07-28 per request (README "MCP versions")

V26 = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": V26, "io.modelcontextprotocol/clientCapabilities": {}}
UPDATE = "orders___update_order"  # alice (developer) may not call it


def modern(method: str, params: dict[str, Any], rpc_id: Any = 1) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 request body and the headers a conforming client sends with it."""
    headers = {"MCP-Protocol-Version": V26, "Mcp-Method": method}
    if method == "tools/call":
        headers["Mcp-Name"] = params["name"]
    return rpc(method, {**params, "_meta": META}, rpc_id), headers


def result_of(out: dict[str, Any], status: int = 200) -> dict[str, Any]:
    strict(out)
    response = out["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == status, out
    result: dict[str, Any] = response["body"]["result"]
    return result


@pytest.mark.parametrize("token_kind", ["valid", "none"])
def test_a_header_mismatch_is_refused_before_the_token_and_policy(
    interceptor: Interceptor, token: str, token_kind: str, audit_lines: Audit
) -> None:
    body, headers = modern("tools/call", {"name": GET, "arguments": {"order_id": "42"}}, rpc_id=40)
    headers["Mcp-Name"] = UPDATE
    out = interceptor.handle(request_event(body, token if token_kind == "valid" else None, headers))
    error = answer(out, 400, 40, "header_mismatch")
    assert error["code"] == -32020
    assert UPDATE not in error["message"]  # header values are never echoed
    [record] = audit_lines()
    assert (record["reason"], record["forwarded"], record["user"], record["policy_ids"]) == (
        "header_mismatch",
        False,
        None,
        [],
    )


def test_a_header_mismatch_is_refused_on_the_response_phase_too(interceptor: Interceptor, token: str) -> None:
    body, headers = modern("tools/list", {}, rpc_id=41)
    headers["Mcp-Method"] = "tools/call"
    listed = {"jsonrpc": "2.0", "id": 41, "result": {"tools": [{"name": GET}, {"name": UPDATE}]}}
    answer(interceptor.handle(response_event(request_event(body, token, headers), listed)), 400, 41, "header_mismatch")


def test_a_modern_request_without_any_headers_is_a_configuration_error(interceptor: Interceptor, token: str) -> None:
    body, _ = modern("tools/call", {"name": GET, "arguments": {"order_id": "42"}}, rpc_id=42)
    answer(interceptor.handle(request_event(body, token, with_headers=False)), 500, 42, "headers_missing")


def test_a_modern_allowed_call_is_forwarded_with_its_meta_and_headers_untouched(
    interceptor: Interceptor, token: str
) -> None:
    body, headers = modern("tools/call", {"name": GET, "arguments": {"order_id": "42"}})
    out = interceptor.handle(request_event(body, token, headers))
    sent = forwarded(out)
    assert "headers" not in out["mcp"]["transformedGatewayRequest"]
    assert sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == V26
    assert sent["params"]["name"] == GET  # what Mcp-Name says, so the target's own check agrees


@pytest.mark.parametrize(
    ("tool", "reason"), [(UPDATE, "policy_denied"), ("payroll___pay", "tool_unknown")], ids=["denied", "unknown"]
)
@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_our_tool_result_carries_result_type_exactly_on_modern_requests(
    interceptor: Interceptor, token: str, tool: str, reason: str, era: str
) -> None:
    params = {"name": tool, "arguments": {"order_id": "42", "status": "shipped"}}
    body, headers = modern("tools/call", params) if era == "modern" else (rpc("tools/call", params), {})
    result = result_of(interceptor.handle(request_event(body, token, headers)))
    assert result["isError"] is True and f"(reason: {reason})" in result["content"][0]["text"]
    assert result.get("resultType") == ("complete" if era == "modern" else None)


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_authentication_failures_are_401_with_our_code_and_no_result(interceptor: Interceptor, era: str) -> None:
    body, headers = modern("tools/list", {}, rpc_id=43) if era == "modern" else (rpc("tools/list", rpc_id=43), {})
    out = interceptor.handle(request_event(body, "not-a-token", headers))
    assert answer(out, 401, 43, "token_malformed")["code"] == -31001
    assert "result" not in out["mcp"]["transformedGatewayResponse"]["body"]


def list_response(token: str, era: str, result: dict[str, Any], method: str = "tools/list") -> dict[str, Any]:
    params = {"name": "x_amz_bedrock_agentcore_search", "arguments": {"query": "q"}} if method == "tools/call" else {}
    body, headers = modern(method, params, rpc_id=44) if era == "modern" else (rpc(method, params, rpc_id=44), {})
    return response_event(request_event(body, token, headers), {"jsonrpc": "2.0", "id": 44, "result": result})


PUBLIC = {"tools": [{"name": GET}, {"name": UPDATE}], "ttlMs": 600_000, "cacheScope": "public"}


def test_a_modern_filtered_list_is_private_and_fresh_for_at_most_a_minute(interceptor: Interceptor, token: str) -> None:
    result = result_of(interceptor.handle(list_response(token, "modern", {**PUBLIC, "resultType": "complete"})))
    assert result == {"tools": [{"name": GET}], "resultType": "complete", "ttlMs": 60_000, "cacheScope": "private"}


def test_a_legacy_filtered_list_loses_the_upstream_hints(interceptor: Interceptor, token: str) -> None:
    assert result_of(interceptor.handle(list_response(token, "legacy", PUBLIC))) == {"tools": [{"name": GET}]}


def test_log_only_returns_the_unfiltered_list_with_its_own_hints(
    make_interceptor: Callable[..., Interceptor], token: str
) -> None:
    out = make_interceptor(ENFORCEMENT_MODE="log_only").handle(list_response(token, "modern", PUBLIC))
    assert result_of(out) == PUBLIC  # the same list for everyone, so the target's hints still hold


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_a_filtered_search_result_is_never_cacheable(interceptor: Interceptor, token: str, era: str) -> None:
    search = {"structuredContent": {"tools": PUBLIC["tools"]}, "content": [], "ttlMs": 5, "cacheScope": "public"}
    result = result_of(interceptor.handle(list_response(token, era, search, "tools/call")))
    assert result["structuredContent"] == {"tools": [{"name": GET}]}
    assert "ttlMs" not in result and "cacheScope" not in result
    assert result.get("resultType") == ("complete" if era == "modern" else None)


def test_an_input_required_answer_passes_through_unfiltered(
    interceptor: Interceptor, token: str, audit_lines: Audit
) -> None:
    interim = {"resultType": "input_required", "inputRequests": {"q": {"method": "elicitation/create"}}}
    event = list_response(token, "modern", {**interim, "requestState": "s"}, "tools/call")
    assert result_of(interceptor.handle(event)) == {**interim, "requestState": "s"}
    assert audit_lines()[-1]["reason"] == "passthrough"


MRTR = {
    "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": True}}},
    "requestState": "eyJzdGF0ZSI6MX0",
}


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_a_multi_round_trip_retry_is_authorized_and_stamped_like_any_call(
    interceptor: Interceptor, token: str, era: str, audit_lines: Audit
) -> None:
    params = {"name": GET, "arguments": {"order_id": "42", "_teleport_user": "mallory"}, **MRTR}
    body, headers = modern("tools/call", params, rpc_id=45) if era == "modern" else (rpc("tools/call", params, 45), {})
    sent = forwarded(interceptor.handle(request_event(body, token, headers)))
    assert sent["params"]["arguments"] == {
        "order_id": "42",
        "_teleport_user": "alice",
        "_teleport_roles": ["developer"],
    }
    assert {k: sent["params"][k] for k in MRTR} == MRTR  # the round's answers and state reach the tool unchanged
    assert audit_lines()[-1]["spoofed_arguments"] == ["_teleport_user"]
    denied, headers = modern("tools/call", {"name": UPDATE, "arguments": {"order_id": "42"}, **MRTR}, rpc_id=46)
    result = result_of(interceptor.handle(request_event(denied, token, headers)))
    assert result["isError"] is True and result["resultType"] == "complete"


TASKS = sorted(n for n in METHODS if n.startswith("tasks/"))


@pytest.mark.parametrize("method", TASKS)
def test_tasks_follow_the_method_table(interceptor: Interceptor, token: str, method: str) -> None:
    params = {"taskId": "t-1", "arguments": {"_teleport_user": "mallory"}, **MRTR}
    body, headers = (
        modern(method, params, rpc_id=47) if V26 in METHODS[method].revisions else (rpc(method, params, 47), {})
    )
    sent = forwarded(interceptor.handle(request_event(body, token, headers)))
    assert sent["params"]["arguments"] == {} and sent["params"]["taskId"] == "t-1"  # forwarded, reserved names out
    answer(interceptor.handle(request_event(body, None, headers)), 401, 47, "token_missing")
    result = {"taskId": "t-1", "status": "working", "resultType": "complete"}
    passed = interceptor.handle(
        response_event(request_event(body, token, headers), {"jsonrpc": "2.0", "id": 47, "result": result})
    )
    assert result_of(passed) == result  # not a list: no filter, no hints


@pytest.mark.parametrize("method", [m for m in TASKS if V26 in METHODS[m].revisions])
def test_modern_task_requests_are_header_checked(interceptor: Interceptor, token: str, method: str) -> None:
    body, headers = modern(method, {"taskId": "t-1"}, rpc_id=48)
    headers["Mcp-Method"] = "tools/call"
    answer(interceptor.handle(request_event(body, token, headers)), 400, 48, "header_mismatch")
