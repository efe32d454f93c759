"""MCP revisions per request (issue 12), unit by unit: the era of a request, header/body agreement, and the fields
of results we write or rewrite (resultType, caching hints)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from interceptor import contract, protocol
from interceptor.contract import MalformedEvent
from interceptor.reasons import Reason

V26 = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": V26, "io.modelcontextprotocol/clientCapabilities": {}}
CALL = {"name": "orders___get_order_tool", "arguments": {"order_id": "42"}, "_meta": META}
MODERN_CALL_HEADERS = {"MCP-Protocol-Version": V26, "Mcp-Method": "tools/call", "Mcp-Name": "orders___get_order_tool"}


def b64(text: str) -> str:
    return f"=?base64?{base64.b64encode(text.encode()).decode()}?="


def non_canonical(text: str) -> str:
    """`b64(text)` with a padding bit set: Python's decoder still reads `text`, MCP's canonical form is not."""
    encoded = base64.b64encode(text.encode()).decode()
    assert encoded.endswith("=")
    last = encoded.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    tweaked = last[:-1] + alphabet[alphabet.index(last[-1]) + 1] + encoded[len(last) :]
    assert base64.b64decode(tweaked) == text.encode()
    return f"=?base64?{tweaked}?="


def request(method: str, params: Any = None, headers: Any = None, rpc_id: Any = 7) -> contract.McpRequest:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": {} if params is None else params}
    if rpc_id is not None:
        body["id"] = rpc_id
    event = {"mcp": {"gatewayRequest": {"headers": headers, "body": body}}}
    return contract.parse_request(event)


def mismatch(req: contract.McpRequest) -> str:
    with pytest.raises(MalformedEvent) as info:
        contract.check_headers(req)
    assert (info.value.reason, info.value.rpc_id) == (Reason.HEADER_MISMATCH, req.rpc_id)
    return info.value.detail


# ---------------------------------------------------------------------------------------------------------------
# the era of a request


@pytest.mark.parametrize(
    ("method", "params", "headers", "modern"),
    [
        ("tools/call", CALL, {}, True),  # the per-request `_meta` version decides
        ("tools/call", {**CALL, "_meta": {"io.modelcontextprotocol/protocolVersion": 5}}, {}, True),  # malformed: still
        ("tools/list", {}, {"mcp-protocol-version": V26}, True),  # header only (the target refuses the missing _meta)
        ("tools/list", {}, {"MCP-PROTOCOL-VERSION": "2027-01-01"}, True),  # a later revision
        ("tools/list", {}, {"MCP-Protocol-Version": "2025-11-25"}, False),
        ("tools/list", {}, {"MCP-Protocol-Version": "2025-06-18"}, False),
        ("tools/list", {}, {"MCP-Protocol-Version": "2025-03-26"}, False),
        ("tools/list", {}, {}, False),  # no header: a legacy server assumes 2025-03-26
        ("tools/list", {"_meta": "x"}, {}, False),
        ("initialize", {"protocolVersion": "2025-11-25", "_meta": META}, {"MCP-Protocol-Version": V26}, False),
    ],
    ids=[
        "meta",
        "meta-not-string",
        "header",
        "later",
        "2025-11",
        "2025-06",
        "2025-03",
        "none",
        "meta-not-object",
        "init",
    ],
)
def test_the_era_of_a_request(method: str, params: Any, headers: Any, modern: bool) -> None:
    assert request(method, params, headers).modern is modern


# ---------------------------------------------------------------------------------------------------------------
# headers agree with the body


@pytest.mark.parametrize(
    ("method", "params", "headers"),
    [
        ("tools/call", CALL, MODERN_CALL_HEADERS),
        ("tools/call", CALL, {k.lower(): v for k, v in MODERN_CALL_HEADERS.items()}),
        ("tools/call", CALL, {**MODERN_CALL_HEADERS, "Mcp-Name": b64("orders___get_order_tool")}),
        ("tools/call", CALL, {**MODERN_CALL_HEADERS, "Mcp-Param-Region": "eu", "mcp-param-n": b64(" é ")}),
        ("tools/call", {**CALL, "name": "café"}, {**MODERN_CALL_HEADERS, "Mcp-Name": b64("café")}),
        ("prompts/get", {"name": "greet", "_meta": META}, {"MCP-Protocol-Version": V26, "Mcp-Method": "prompts/get",
                                                           "Mcp-Name": "greet"}),
        ("resources/read", {"uri": "file:///a b", "_meta": META}, {"MCP-Protocol-Version": V26,
                                                                   "Mcp-Method": "resources/read",
                                                                   "Mcp-Name": "file:///a b"}),
        ("tools/list", {"_meta": META}, {"MCP-Protocol-Version": V26, "Mcp-Method": "tools/list"}),
        ("tasks/update", {"taskId": "t", "_meta": META}, {"MCP-Protocol-Version": V26, "Mcp-Method": "tasks/update"}),
        ("tools/call", {"name": "t"}, {}),  # legacy clients send none of them
        ("tools/call", {"name": "t"}, {"MCP-Protocol-Version": "2025-11-25"}),
        ("tools/call", {"name": "t"}, {"MCP-Protocol-Version": "2025-11-25", "Mcp-Method": "tools/call"}),
        ("notifications/cancelled", {"_meta": META}, {}),  # notification headers are not defined by 2026-07-28
    ],
    ids=["plain", "lower-case-names", "base64-name", "params", "non-ascii-name", "prompt", "resource", "list",
         "task", "legacy", "legacy-version", "legacy-method", "notification"],
)  # fmt: skip
def test_headers_that_agree_with_the_body_pass(method: str, params: Any, headers: Any) -> None:
    contract.check_headers(request(method, params, headers, None if method.startswith("notifications/") else 7))


@pytest.mark.parametrize(
    ("params", "headers", "detail"),
    [
        (CALL, {**MODERN_CALL_HEADERS, "Mcp-Method": "tools/list"}, "mcp-method header does not match"),
        (CALL, {**MODERN_CALL_HEADERS, "Mcp-Method": "Tools/Call"}, "mcp-method header does not match"),
        (CALL, {**MODERN_CALL_HEADERS, "Mcp-Name": "orders___update_order"}, "mcp-name header does not match"),
        (CALL, {**MODERN_CALL_HEADERS, "Mcp-Name": b64("orders___update_order")}, "mcp-name header does not match"),
        (CALL, {**MODERN_CALL_HEADERS, "MCP-Protocol-Version": "2025-11-25"}, "mcp-protocol-version header does not"),
        ({**CALL, "_meta": {"io.modelcontextprotocol/protocolVersion": 20260728}}, MODERN_CALL_HEADERS,
         "mcp-protocol-version header does not match"),
        ({k: v for k, v in CALL.items() if k != "_meta"}, {**MODERN_CALL_HEADERS, "Mcp-Name": "x"},
         "mcp-name header does not match"),
        ({"name": "t"}, {"Mcp-Method": "tools/list"}, "mcp-method header does not match"),  # legacy: present = checked
        ({"name": "t"}, {"Mcp-Name": "u"}, "mcp-name header does not match"),
    ],
    ids=["method", "method-case", "name", "name-base64", "version", "version-not-string", "name-header-only",
         "legacy-method", "legacy-name"],
)  # fmt: skip
def test_a_header_that_disagrees_with_the_body_is_refused(params: Any, headers: Any, detail: str) -> None:
    assert detail in mismatch(request("tools/call", params, headers))


@pytest.mark.parametrize("missing", ["MCP-Protocol-Version", "Mcp-Method", "Mcp-Name"])
def test_a_missing_routing_header_is_not_refused(missing: str) -> None:
    # nothing can route on an absent header, and the gateway may not pass `Mcp-*` headers at all
    headers = {k: v for k, v in MODERN_CALL_HEADERS.items() if k != missing}
    contract.check_headers(request("tools/call", CALL, headers))  # no MalformedEvent


def test_a_name_header_on_a_method_without_a_name_is_refused() -> None:
    headers = {"MCP-Protocol-Version": V26, "Mcp-Method": "tools/list", "Mcp-Name": "orders___update_order"}
    assert "mcp-name" in mismatch(request("tools/list", {"_meta": META}, headers))


@pytest.mark.parametrize(
    "headers",
    [
        {**MODERN_CALL_HEADERS, "mcp-method": "tools/call"},  # the same header twice, in another case
        {**MODERN_CALL_HEADERS, "Mcp-Name": ["orders___get_order_tool"]},
        {**MODERN_CALL_HEADERS, "Mcp-Name": "orders___get_order_tool\u00e9"},  # non-ASCII must be encoded
        {**MODERN_CALL_HEADERS, "Mcp-Name": "orders___get_order_tool\n"},
        {**MODERN_CALL_HEADERS, "Mcp-Name": "=?base64?!!?="},
        {**MODERN_CALL_HEADERS, "Mcp-Name": non_canonical("orders___get_order_tool")},
        {**MODERN_CALL_HEADERS, "Mcp-Name": "=?base64?" + base64.b64encode(b"\xff").decode() + "?="},  # not UTF-8
        {**MODERN_CALL_HEADERS, "Mcp-Param-Region": "=?base64?%%?="},
        {**MODERN_CALL_HEADERS, "Mcp-Param-Region": "eu", "MCP-PARAM-REGION": "us"},
    ],
    ids=["repeated", "list", "non-ascii", "newline", "bad-base64", "non-canonical", "not-utf8", "param-bad", "param-2"],
)
def test_a_repeated_or_undecodable_header_never_matches(headers: Any) -> None:
    detail = mismatch(request("tools/call", CALL, headers))
    assert "repeated or not a valid header value" in detail
    assert "eu" not in detail and "us" not in detail.split()  # names headers, never values


def test_an_event_without_headers_is_left_to_authentication() -> None:
    contract.check_headers(request("tools/call", CALL, None))  # refused later as headers_missing, not here


# ---------------------------------------------------------------------------------------------------------------
# results: interim answers, filtered results


@pytest.mark.parametrize(
    ("result", "interim"),
    [
        ({"resultType": "input_required", "inputRequests": {"k": {}}, "requestState": "s"}, True),
        ({"resultType": "input_required", "requestState": "s", "_meta": {}}, True),
        ({"resultType": "input_required", "requestState": "s", "tools": [{"name": "x"}]}, False),  # lists: filtered
        ({"resultType": "input_required", "content": []}, False),
        ({"resultType": "complete", "content": []}, False),
        ({"inputRequests": {}}, False),
    ],
)
def test_only_a_pure_input_required_answer_is_interim(result: Any, interim: bool) -> None:
    assert protocol.interim({"jsonrpc": "2.0", "id": 1, "result": result}) is interim
    assert not protocol.interim({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x"}})


TOOLS = [{"name": "orders___get_order_tool"}]


@pytest.mark.parametrize(
    ("upstream", "ttl"),
    [({"ttlMs": 300_000, "cacheScope": "public"}, 60_000), ({"ttlMs": 5_000, "cacheScope": "private"}, 5_000),
     ({}, 0), ({"ttlMs": -1}, 0), ({"ttlMs": True}, 0), ({"ttlMs": 1.5}, 0), ({"ttlMs": "9"}, 0)],
    ids=["capped", "kept", "absent", "negative", "bool", "float", "string"],
)  # fmt: skip
def test_a_modern_filtered_list_is_private_with_a_capped_ttl(upstream: dict[str, Any], ttl: int) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS, "nextCursor": "c", **upstream}}
    out = protocol.filtered_result(body, "tools/list", modern=True)
    assert out == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"tools": TOOLS, "nextCursor": "c", "resultType": "complete", "ttlMs": ttl, "cacheScope": "private"},
    }
    assert body["result"] == {"tools": TOOLS, "nextCursor": "c", **upstream}  # not mutated


@pytest.mark.parametrize(
    ("method", "modern", "result_type"),
    [("tools/list", False, None), ("tools/call", False, None), ("tools/call", True, "complete")],
    ids=["legacy-list", "legacy-search", "modern-search"],
)
def test_other_filtered_results_lose_upstream_hints_and_gain_none(method: str, modern: bool, result_type: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS, "ttlMs": 9_000, "cacheScope": "public"}}
    result = protocol.filtered_result(body, method, modern)["result"]
    assert result == {"tools": TOOLS, **({"resultType": result_type} if result_type else {})}


def test_a_modern_result_of_another_type_keeps_it_and_gets_no_hints() -> None:
    body = {"jsonrpc": "2.0", "id": 1, "result": {"resultType": "task", "taskId": "t", "cacheScope": "public"}}
    assert protocol.filtered_result(body, "tools/list", True)["result"] == {"resultType": "task", "taskId": "t"}


@pytest.mark.parametrize("result_type", [None, "", "x", 0, "input_required"])
def test_a_modern_filtered_list_of_any_result_type_is_private(result_type: Any) -> None:
    """A list that held tools was filtered for one caller: private with a capped ttl, whatever upstream's type."""
    body = {"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS, "resultType": result_type, "cacheScope": "public"}}
    result = protocol.filtered_result(body, "tools/list", True)["result"]
    assert (result["resultType"], result["cacheScope"], result["ttlMs"]) == (result_type, "private", 0)


def test_a_filtered_json_text_body_stays_text_and_bodies_without_result_pass() -> None:
    text = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS, "cacheScope": "public"}})
    out = protocol.filtered_result(text, "tools/list", True)
    assert json.loads(out)["result"]["cacheScope"] == "private"
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "x"}}
    assert protocol.filtered_result(error, "tools/list", True) is error
