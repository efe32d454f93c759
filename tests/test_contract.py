"""The gateway contract, unit by unit (issue 11): strict JSON bodies, ids read before the envelope is judged,
the depth limit, RESPONSE statuses, the exact token form, the MCP method table, an explicit answer for every
reason code, and reserved names removed from requests of every method."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from interceptor import contract
from interceptor.config import Settings
from interceptor.contract import MAX_DEPTH, MalformedEvent
from interceptor.errors import Problems
from interceptor.methods import ALL, LEGACY, METHODS, UNCOVERED, V2025_11, V2026_07, Rule, refusal
from interceptor.reasons import ANSWERS, MESSAGES, Reason
from interceptor.stamping import without_reserved

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
# A syntactically valid compact JWS (not a real token: these tests never verify one).
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"


def event(body: Any, headers: Any = None, response: Any = None) -> dict[str, Any]:
    request: dict[str, Any] = {"headers": {} if headers is None else headers, "body": body}
    mcp: dict[str, Any] = {"gatewayRequest": request}
    if response is not None:
        mcp["gatewayResponse"] = response
    return {"interceptorInputVersion": "1.0", "mcp": mcp}


def rpc(method: str = "tools/list", params: Any = None, rpc_id: Any = 7) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


def deep(levels: int, leaf: Any = 1) -> Any:
    """`levels` nested containers around `leaf`, built without recursion."""
    value = leaf
    for n in range(levels):
        value = [value] if n % 2 else {"d": value}
    return value


def refused(ev: Any) -> MalformedEvent:
    with pytest.raises(MalformedEvent) as info:
        contract.parse_response(ev) if contract.is_response_phase(ev) else contract.parse_request(ev)
    return info.value


# ---------------------------------------------------------------------------------------------------------------
# strict JSON in


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_string_body_with_a_non_finite_constant_is_refused(constant: str) -> None:
    text = '{"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"x": %s}}' % constant  # noqa: UP031
    exc = refused(event(text))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert exc.rpc_id is None  # the body cannot be read strictly, so neither can its id


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"x": 1e400}}',
        rpc(params={"x": float("inf")}),
        rpc(params={"x": float("-inf")}),
        rpc("tools/call", {"name": "t", "arguments": {"a": [1, {"b": float("nan")}]}}),
        rpc(params={"_meta": {"progressToken": float("nan")}}),
    ],
    ids=["string-1e400", "inf", "-inf", "nan-deep-in-arguments", "nan-in-meta"],
)
def test_non_finite_numbers_anywhere_in_the_body_are_refused_with_the_id(body: Any) -> None:
    exc = refused(event(body))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert "finite" in exc.detail
    assert exc.rpc_id == 7


@pytest.mark.parametrize(
    "rpc_id",
    ["\ud800", "a\udfffb", 10**5000, 1.5, True, [1], {"a": 1}],
    ids=["surrogate", "surrogate-inside", "5000-digits", "float", "bool", "list", "object"],
)
def test_an_id_that_cannot_be_echoed_is_answered_with_null(rpc_id: Any) -> None:
    exc = refused(event(rpc(rpc_id=rpc_id)))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert exc.rpc_id is None


@pytest.mark.parametrize(
    "params",
    [{"x": "\ud800"}, {"\udc00": 1}, {"arguments": {"k": ["ok", "bad\ud83d"]}}],
    ids=["value", "key", "nested"],
)
def test_lone_surrogates_elsewhere_are_refused_with_the_id(params: dict[str, Any]) -> None:
    exc = refused(event(rpc(params=params)))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert exc.rpc_id == 7


class Agreeable(dict[str, Any]):
    """A mapping no JSON parser makes, whose equality vouches for anything."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    "value",
    [10**5000, {1, 2}, b"x", object(), (1, 2), Agreeable(when=datetime.now(UTC)), [Agreeable(n=1)]],
    ids=["long-int", "set", "bytes", "object", "tuple", "agreeable-mapping", "agreeable-in-list"],
)  # only what a JSON parser makes: a forwarded body is not encoded again before it leaves
def test_values_json_cannot_carry_are_refused(value: Any) -> None:
    assert refused(event(rpc(params={"x": value}))).rpc_id == 7


def test_a_non_string_key_is_refused() -> None:
    assert refused(event(rpc(params={1: "x"}))).reason is Reason.REQUEST_MALFORMED


def test_large_ordinary_values_pass() -> None:
    body = rpc(params={"big": 2**64, "neg": -(10**30), "text": "é🚀" * 1000, "f": 1.5e300})
    assert contract.parse_request(event(body)).body is body


# ---------------------------------------------------------------------------------------------------------------
# depth


def test_the_depth_limit_is_exact() -> None:
    # the body is level 1 and params level 2: below params, MAX_DEPTH - 2 more containers fit
    contract.parse_request(event(rpc(params={"x": deep(MAX_DEPTH - 2)})))
    exc = refused(event(rpc(params={"x": deep(MAX_DEPTH - 1)})))
    assert f"deeper than {MAX_DEPTH}" in exc.detail
    assert exc.rpc_id == 7


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deep_nesting_in_a_parsed_body_is_refused_not_recursed(levels: int) -> None:
    exc = refused(event(rpc("tools/call", {"name": "t", "arguments": {"a": deep(levels)}})))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert exc.rpc_id == 7


def test_deep_nesting_in_a_string_body_is_refused() -> None:
    text = '{"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"x": ' + "[" * 20_000 + "]" * 20_000 + "}}"
    assert refused(event(text)).reason is Reason.REQUEST_MALFORMED


# ---------------------------------------------------------------------------------------------------------------
# ids are read before the envelope is judged; statuses


@pytest.mark.parametrize("headers", [0, [], "", "x", [["Authorization", "Bearer t"]], True])
@pytest.mark.parametrize("as_text", [False, True], ids=["object-body", "string-body"])
def test_a_malformed_envelope_still_echoes_the_bodys_id(headers: Any, as_text: bool) -> None:
    body = rpc(rpc_id="req-9")
    exc = refused(event(json.dumps(body) if as_text else body, headers=headers))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert exc.rpc_id == "req-9"


@pytest.mark.parametrize("gateway_response", [[], "", 0, True, [{"statusCode": 200}]], ids=repr)
def test_a_malformed_gateway_response_still_echoes_the_id(gateway_response: Any) -> None:
    exc = refused(event(rpc(rpc_id=11), response=gateway_response))
    assert exc.reason is Reason.REQUEST_MALFORMED
    assert exc.rpc_id == 11


@pytest.mark.parametrize("status", [0, -1, 99, 600, 10**30, "200", True, 200.0], ids=repr)
def test_a_response_status_outside_100_599_is_malformed(status: Any) -> None:
    exc = refused(event(rpc(), response={"statusCode": status, "body": {"jsonrpc": "2.0", "id": 7, "result": {}}}))
    assert "statusCode" in exc.detail
    assert exc.rpc_id == 7


@pytest.mark.parametrize("status", [100, 200, 599])
def test_response_statuses_in_range_pass(status: int) -> None:
    response = contract.parse_response(event(rpc(), response={"statusCode": status, "body": None}))
    assert response.status_code == status


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "id": 7, "result": {"x": float("nan")}},
        {"jsonrpc": "2.0", "id": 7, "result": {"x": "\ud800"}},
        {"jsonrpc": "2.0", "id": 7, "result": deep(100_000)},
        '{"jsonrpc": "2.0", "id": 7, "result": {"x": NaN}}',
        '{"jsonrpc": "2.0", "id": 7, "result": {"x": 1e400}}',
        '{"jsonrpc": "2.0", "id": 7, "result": ' + "[" * 20_000 + "]" * 20_000 + "}",
    ],
    ids=["nan", "surrogate", "deep", "text-nan", "text-1e400", "text-deep"],
)
def test_a_response_body_that_is_not_strict_json_is_malformed(body: Any) -> None:
    exc = refused(event(rpc(), response={"statusCode": 200, "body": body}))
    assert exc.detail == "gatewayResponse.body is not strict JSON"
    assert exc.rpc_id == 7


def test_a_response_body_that_is_plain_text_is_left_to_the_pipeline() -> None:
    assert contract.parse_response(event(rpc(), response={"statusCode": 502, "body": "Bad Gateway"})).body == (
        "Bad Gateway"
    )


@pytest.mark.parametrize("session", ["\ud800", "has space", "", "é", 5])
def test_a_session_id_that_is_not_visible_ascii_is_not_kept(session: Any) -> None:
    assert contract.parse_request(event(rpc(), headers={"Mcp-Session-Id": session})).session_id is None


# ---------------------------------------------------------------------------------------------------------------
# answers


def test_encodable_is_strict_json_in_utf8() -> None:
    assert contract.encodable({"a": [1, "é", None, 1.5, 2**64]})
    for value in (float("nan"), float("inf"), "\ud800", {"k\udfff": 1}, 10**5000, deep(100_000), {1, 2}):
        assert not contract.encodable(value)


# Codes JSON-RPC (-32700..-32603) and MCP (-32020 HeaderMismatch) define; anything else we emit must lie outside
# the reserved -32768..-32000, whose -32000..-32019 new implementations must not use (-32001: the SDK's timeout).
DEFINED_CODES = {-32700, -32600, -32601, -32602, -32603, -32020}


def test_every_reason_has_an_explicit_status_and_json_rpc_code() -> None:
    assert set(ANSWERS) == set(Reason), "give every new reason its status and JSON-RPC code in reasons.ANSWERS"
    assert set(MESSAGES) == set(Reason)
    for reason, (status, code) in ANSWERS.items():
        assert 100 <= status <= 599, reason
        assert code is None or code in DEFINED_CODES or not -32768 <= code <= -32000, reason
        assert (code is None) == (status == 200), reason  # only tool results (and `allowed`) carry no error code


def test_the_new_reasons_answer_as_documented() -> None:
    assert ANSWERS[Reason.METHOD_UNKNOWN] == (400, -32601)
    assert ANSWERS[Reason.METHOD_NOT_COVERED] == (403, -32601)
    assert ANSWERS[Reason.OUTPUT_INVALID] == (500, -32603)
    assert ANSWERS[Reason.HEADER_MISMATCH] == (400, -32020)


def test_every_authentication_failure_is_a_401_with_our_stable_code() -> None:
    unauthorized = {reason for reason, answer in ANSWERS.items() if answer.status == 401}
    assert {Reason.TOKEN_MISSING, Reason.TOKEN_EXPIRED, Reason.CLAIMS_INVALID} <= unauthorized
    assert {ANSWERS[reason].rpc_code for reason in unauthorized} == {-31001}
    assert "-31001" in README.split("\n## Responses\n", 1)[1].split("\n## ", 1)[0]


def test_our_own_tool_result_is_valid_in_the_requests_era() -> None:
    legacy, modern = contract.tool_error(3, "no (reason: policy_denied)"), contract.tool_error(3, "no", modern=True)
    assert legacy["result"] == {"content": [{"type": "text", "text": "no (reason: policy_denied)"}], "isError": True}
    assert modern["result"] == {"content": [{"type": "text", "text": "no"}], "isError": True, "resultType": "complete"}
    assert "resultType" not in contract.rpc_error(3, -32020, "x")


def test_the_readme_lists_every_reason_code() -> None:
    section = README.split("### Reason codes", 1)[1].split("\n## ", 1)[0]
    assert not [r.value for r in Reason if f"`{r.value}`" not in section]
    assert "FORWARD_UNCOVERED_METHODS" in MESSAGES[Reason.METHOD_NOT_COVERED]


# ---------------------------------------------------------------------------------------------------------------
# the method table

# Client-to-server methods of each revision, from the schemas' ClientRequest and ClientNotification unions
# (2026-07-28: plus the tasks extension), and what only a server sends.
CLIENT_METHODS = {
    "2025-06-18": {
        "ping", "initialize", "completion/complete", "logging/setLevel", "prompts/get", "prompts/list",
        "resources/list", "resources/templates/list", "resources/read", "resources/subscribe",
        "resources/unsubscribe", "tools/call", "tools/list", "notifications/cancelled", "notifications/progress",
        "notifications/initialized", "notifications/roots/list_changed",
    },
    "2025-11-25": {
        "ping", "initialize", "completion/complete", "logging/setLevel", "prompts/get", "prompts/list",
        "resources/list", "resources/templates/list", "resources/read", "resources/subscribe",
        "resources/unsubscribe", "tools/call", "tools/list", "tasks/get", "tasks/result", "tasks/list",
        "tasks/cancel", "notifications/cancelled", "notifications/progress", "notifications/initialized",
        "notifications/roots/list_changed", "notifications/tasks/status",
    },
    "2026-07-28": {
        "server/discover", "completion/complete", "prompts/get", "prompts/list", "resources/list",
        "resources/templates/list", "resources/read", "subscriptions/listen", "tools/call", "tools/list",
        "notifications/cancelled", "tasks/get", "tasks/update", "tasks/cancel",
    },
}  # fmt: skip
SERVER_ONLY = {
    "sampling/createMessage", "elicitation/create", "roots/list", "notifications/message",
    "notifications/resources/updated", "notifications/resources/list_changed", "notifications/tools/list_changed",
    "notifications/prompts/list_changed", "notifications/elicitation/complete",
    "notifications/subscriptions/acknowledged",
}  # fmt: skip


@pytest.mark.parametrize("revision", sorted(CLIENT_METHODS))
def test_every_client_method_of_every_revision_has_a_rule(revision: str) -> None:
    for name in CLIENT_METHODS[revision]:
        assert name in METHODS, name
        assert revision in METHODS[name].revisions, name
        assert METHODS[name].rule is not Rule.REFUSE, name
    assert set(METHODS) == set().union(*CLIENT_METHODS.values()) | SERVER_ONLY


def test_server_to_client_methods_are_refused() -> None:
    assert {name for name, m in METHODS.items() if m.rule is Rule.REFUSE} == SERVER_ONLY
    for name in SERVER_ONLY:
        assert refusal(name) is Reason.METHOD_UNKNOWN


def test_the_rules_of_the_data_methods() -> None:
    assert METHODS["tools/call"].rule is Rule.AUTHORIZE
    assert METHODS["tools/list"].rule is Rule.FILTER
    assert {
        "prompts/get",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "subscriptions/listen",
        "completion/complete",
    } == UNCOVERED
    assert METHODS["initialize"].revisions == LEGACY
    assert METHODS["tools/call"].revisions == ALL
    assert V2025_11 in METHODS["tasks/result"].revisions
    assert V2026_07 in METHODS["tasks/update"].revisions


@pytest.mark.parametrize(
    "method",
    [
        "Tools/Call",
        "TOOLS/CALL",
        "tools/call ",
        " tools/call",
        "tools/call\n",
        "tools/call\u0000",
        "tools/call\u200b",
        "tools\u2215call",
        "tools//call",
        "tools\\call",
        "t\u043eols/call",
        "tools/ca\u0301ll",
        "\uff54ools/call",
        "tools%2Fcall",
        "x-vendor/thing",
        "notifications/Initialized",
        "rpc.discover",
    ],
    ids=repr,
)
def test_look_alikes_and_unknown_methods_are_refused(method: str) -> None:
    assert refusal(method) is Reason.METHOD_UNKNOWN
    assert refusal(method, frozenset({method})) is Reason.METHOD_UNKNOWN  # no setting lets one through


@pytest.mark.parametrize("method", sorted(UNCOVERED))
def test_uncovered_methods_are_refused_unless_an_administrator_forwards_them(method: str) -> None:
    assert refusal(method) is Reason.METHOD_NOT_COVERED
    assert refusal(method, frozenset(UNCOVERED - {method})) is Reason.METHOD_NOT_COVERED
    assert refusal(method, frozenset({method})) is None


@pytest.mark.parametrize("method", sorted(n for n, m in METHODS.items() if m.rule in {Rule.FORWARD, Rule.FILTER}))
def test_forwarded_methods_pass(method: str) -> None:
    assert refusal(method) is None


def test_check_method_refuses_with_the_id() -> None:
    request = contract.parse_request(event(rpc("prompts/get", {"name": "p"}, rpc_id="g-1")))
    with pytest.raises(MalformedEvent) as info:
        contract.check_method(request, frozenset())
    assert (info.value.reason, info.value.rpc_id) == (Reason.METHOD_NOT_COVERED, "g-1")
    contract.check_method(request, frozenset({"prompts/get"}))


def test_the_readme_method_table_is_the_code_table() -> None:
    section = README.split("\n## Methods\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (\w+) \| ([^|]+) \|$", section, re.MULTILINE)
    names = {"all three": ALL, "2025-06-18, 2025-11-25": LEGACY}
    documented = {name: (names.get(revs.strip(), tuple(revs.strip().split(", "))), rule, why.strip())
                  for name, revs, rule, why in rows}  # fmt: skip
    assert documented == {name: (m.revisions, m.rule.value, m.why) for name, m in METHODS.items()}
    assert list(documented) == list(METHODS)


# ---------------------------------------------------------------------------------------------------------------
# reserved names, whatever the method; the setting


def test_reserved_names_are_removed_from_any_forwarded_request() -> None:
    body = rpc(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "arguments": {"_TELEPORT_ROLES": ["admin"], "keep": 1},
            "_meta": {"_Teleport_User": "mallory", "SH.Teleport/Identity": {"user": "mallory"}, "progressToken": 3},
        },
    )
    snapshot = json.dumps(body)
    cleaned, spoofed = without_reserved(body)
    assert cleaned["params"] == {
        "protocolVersion": "2025-06-18",
        "arguments": {"keep": 1},
        "_meta": {"progressToken": 3},
    }
    assert spoofed == ("_TELEPORT_ROLES", "_meta.SH.Teleport/Identity", "_meta._Teleport_User")
    assert json.dumps(body) == snapshot  # the caller's body is not mutated


@pytest.mark.parametrize("params", [None, "x", {"arguments": "x", "_meta": 5}, {"arguments": {"a": 1}}], ids=repr)
def test_a_request_without_reserved_names_is_forwarded_as_is(params: Any) -> None:
    body = rpc(params=params)
    assert without_reserved(body) == (body, ())
    assert without_reserved(body)[0] is body


BASE = {"TELEPORT_ISSUER": "https://teleport.example.com", "TELEPORT_AUDIENCE": "mcp+https://gw.example.com/mcp"}


def test_forward_uncovered_methods_setting() -> None:
    assert Settings.from_env(BASE).forward_uncovered_methods == frozenset()
    settings = Settings.from_env({**BASE, "FORWARD_UNCOVERED_METHODS": " prompts/get, resources/read ,"})
    assert settings.forward_uncovered_methods == {"prompts/get", "resources/read"}


@pytest.mark.parametrize("value", ["tools/call", "Prompts/Get", "prompts/get,x-vendor/secret", "initialize"])
def test_forward_uncovered_methods_names_only_uncovered_methods(value: str) -> None:
    with pytest.raises(Problems) as info:
        Settings.from_env({**BASE, "FORWARD_UNCOVERED_METHODS": value})
    [problem] = info.value.problems
    assert problem.startswith("FORWARD_UNCOVERED_METHODS may only name")
    assert "x-vendor/secret" not in problem
    assert "Prompts/Get" not in problem
