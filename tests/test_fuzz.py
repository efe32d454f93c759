"""A bounded, seeded fuzz run of the handler in every `make test` (`make fuzz` runs a long one), and proof that
its invariant checks catch what they are meant to catch."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from devtools import fuzz
from devtools.gateway import notification, request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer

EVENTS = 2_000


@pytest.fixture(scope="module")
def tokens() -> fuzz.Tokens:
    return fuzz.Tokens.mint(Issuer(fuzz.ISSUER, fuzz.AUDIENCE))


def test_a_seeded_run_holds_every_invariant() -> None:
    report = fuzz.run(EVENTS, seed=11)
    assert report.violations == [], "\n".join(f"event {n}: {v}" for n, v in report.violations[:20])
    assert report.events == EVENTS
    assert sum(report.outcomes.values()) == EVENTS
    # the run reached the paths that matter, not only refusals of garbage
    assert report.forwarded >= EVENTS // 20
    for reason in ("allowed", "policy_denied", "method_unknown", "method_not_covered", "request_malformed"):
        assert report.outcomes[reason] >= 10, reason
    for reason in ("token_malformed", "signature_invalid", "passthrough", "tools_filtered", "header_mismatch"):
        assert report.outcomes[reason] >= 5, reason


def fingerprint(value: Any) -> list[str]:
    """`value` as a flat list of type-tagged tokens, walked without recursion (events nest 30,000 levels deep);
    `repr` makes NaN equal to NaN (pickle, which did too, recurses)."""
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.append(f"dict{len(node)}")
            for key, child in node.items():
                out.append(repr(key))
                stack.append(child)
        elif isinstance(node, list):
            out.append(f"list{len(node)}")
            stack.extend(node)
        else:
            text = hex(node) if isinstance(node, int) else repr(node)  # hex: ints of 5,000 digits too
            out.append(f"{type(node).__name__}:{text}")
    return out


def test_the_same_seed_makes_the_same_events(tokens: fuzz.Tokens) -> None:
    def events(seed: int) -> list[str]:
        rng = random.Random(seed)
        return fingerprint([fuzz.make_event(rng, tokens) for _ in range(50)])

    assert events(5) == events(5)
    assert events(5) != events(6)


# ---------------------------------------------------------------------------------------------------------------
# the checks can fail


def forward(body: dict[str, Any]) -> dict[str, Any]:
    return {"interceptorOutputVersion": "1.0", "mcp": {"transformedGatewayRequest": {"body": body}}}


def refusal(rpc_id: Any, status: int = 401) -> dict[str, Any]:
    error = {"code": -31001, "message": "no (reason: token_missing)"}
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": error}
    return {
        "interceptorOutputVersion": "1.0",
        "mcp": {"transformedGatewayResponse": {"statusCode": status, "body": body}},
    }


AUDIT = [json.dumps({"message": "audit", "audit": {"reason": "allowed"}})]


def problems(event: Any, out: Any, tokens: fuzz.Tokens, audit: list[str] = AUDIT, logs: tuple[str, ...] = ()) -> str:
    rpc_id, user = fuzz.readable_id(event), fuzz.authentic_user(event, tokens)
    return "; ".join(fuzz.check(event, out, audit, list(logs), tokens, rpc_id, user))


def test_a_clean_forward_passes(tokens: fuzz.Tokens) -> None:
    body = tool_call("orders___get_order_tool", {"order_id": "1"})
    event = request_event(body, tokens.valid["alice"])
    stamped = copy.deepcopy(body)
    stamped["params"]["arguments"].update(_teleport_user="alice", _teleport_roles=["developer"])
    assert problems(event, forward(stamped), tokens) == ""


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "forward-without-token"), ("invalid", "forward-without-token"), ("alice", "")],
)
def test_a_forward_needs_the_valid_unmodified_token(tokens: fuzz.Tokens, token: str | None, expected: str) -> None:
    credential = {"alice": tokens.valid["alice"], "invalid": tokens.valid["alice"] + "=", None: None}[token]
    event = request_event(rpc("tools/list"), credential)
    assert expected in problems(event, forward(rpc("tools/list")), tokens)
    assert bool(problems(event, forward(rpc("tools/list")), tokens)) == bool(expected)


@pytest.mark.parametrize(
    "arguments",
    [
        {"_teleport_user": "alice", "_teleport_roles": ["developer"], "_Teleport_X": 1},
        {"_teleport_user": "carol", "_teleport_roles": ["developer"]},
        {"_teleport_user": "alice", "_teleport_roles": ["developer"], "note": "mallory"},
        {},
    ],
    ids=["extra-reserved", "wrong-user", "spoofed-value", "unstamped"],
)
def test_reserved_names_and_identity_are_checked(tokens: fuzz.Tokens, arguments: dict[str, Any]) -> None:
    event = request_event(tool_call("orders___get_order_tool"), tokens.valid["alice"])
    assert "reserved:" in problems(event, forward(tool_call("orders___get_order_tool", arguments)), tokens)


def test_reserved_meta_names_are_checked(tokens: fuzz.Tokens) -> None:
    body = rpc("tools/list", {"_meta": {"_TELEPORT_USER": "x"}})
    assert "reserved _meta" in problems(request_event(body, tokens.valid["alice"]), forward(body), tokens)


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ({"mcp": {}}, "shape"),
        ({"interceptorOutputVersion": "1.0"}, "shape: bare output for an event that needs an answer"),
        (refusal(1, status=600), "shape: statusCode"),
        (refusal(1, status=True), "shape: statusCode"),
        ({**refusal(1), "mcp": {"transformedGatewayResponse": {"statusCode": 401}}}, "shape"),
        ({**forward(rpc("ping")), "http": {}}, "shape"),
        (refusal(float("nan")), "strict-json"),
        (refusal("\ud800"), "strict-json"),
        (refusal(2), "id-echo"),
        (refusal(None), "id-echo"),
    ],
    ids=["no-version", "bare", "status-600", "status-bool", "no-body", "two-kinds", "nan", "surrogate", "id", "null"],
)
def test_shape_strictness_and_id_are_checked(tokens: fuzz.Tokens, out: Any, expected: str) -> None:
    assert expected in problems(request_event(rpc("ping", rpc_id=1)), out, tokens)


def test_the_bare_output_is_only_for_a_bodiless_response(tokens: fuzz.Tokens) -> None:
    bodiless = response_event(request_event(notification(), tokens.valid["alice"]), None)
    assert problems(bodiless, {"interceptorOutputVersion": "1.0"}, tokens) == ""
    with_body = response_event(request_event(rpc("ping"), tokens.valid["alice"]), {"jsonrpc": "2.0", "id": 1})
    assert "shape: bare" in problems(with_body, {"interceptorOutputVersion": "1.0"}, tokens)


def test_an_unreadable_id_must_be_answered_with_null(tokens: fuzz.Tokens) -> None:
    event = request_event(rpc("ping", rpc_id=1.5))
    assert problems(event, refusal(None), tokens) == ""
    assert "id-echo" in problems(event, refusal(1.5), tokens)


def test_token_material_is_checked_everywhere(tokens: fuzz.Tokens) -> None:
    token = tokens.valid["carol"]
    event = request_event(rpc("ping", rpc_id=1), token)
    signature = token.split(".")[2]
    leaky = refusal(1)
    leaky["mcp"]["transformedGatewayResponse"]["body"]["error"]["message"] += signature
    assert "token-leak" in problems(event, leaky, tokens)
    assert "token-leak" in problems(event, refusal(1), tokens, logs=(f"oops {token}",))
    line = json.dumps({"message": "audit", "audit": {"reason": "allowed", "detail": signature}})
    assert "token-leak" in problems(event, refusal(1), tokens, audit=[line])


@pytest.mark.parametrize(
    ("audit", "expected"),
    [
        ([], "0 audit records"),
        (AUDIT * 2, "2 audit records"),
        (["not json"], "not one JSON object"),
        ([json.dumps({"audit": {"reason": "because"}})], "no known reason"),
        ([json.dumps({"audit": {"reason": "allowed", "method": "m" * 300_000}})], "exceeds a CloudWatch event"),
    ],
    ids=["none", "two", "not-json", "unknown-reason", "too-big"],
)
def test_one_audit_record_per_event_is_checked(tokens: fuzz.Tokens, audit: list[str], expected: str) -> None:
    assert expected in problems(request_event(rpc("ping", rpc_id=1)), refusal(1), tokens, audit=audit)


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}, ""),
        ({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}, "headers:"),
        ({"MCP-Protocol-Version": "2026-07-28"}, ""),  # absent: nothing to route on, not refused
        ({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list", "mcp-method": "tools/list"}, "headers:"),
        ({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list", "Mcp-Name": "x"}, "headers:"),
    ],
    ids=["agree", "other-method", "missing", "repeated", "name-without-body-name"],
)
def test_a_forward_needs_headers_that_agree_with_the_body(
    tokens: fuzz.Tokens, headers: dict[str, str], expected: str
) -> None:
    body = rpc("tools/list", {"_meta": MODERN_META})
    event = request_event(body, tokens.valid["alice"], headers)
    found = problems(event, forward(body), tokens)
    assert expected in found and bool(found) == bool(expected)


def denial(rpc_id: Any, result_type: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": "no (reason: policy_denied)"}], "isError": True}
    if result_type is not None:
        result["resultType"] = result_type
    body = {"jsonrpc": "2.0", "id": rpc_id, "result": result}
    return {"interceptorOutputVersion": "1.0", "mcp": {"transformedGatewayResponse": {"statusCode": 200, "body": body}}}


@pytest.mark.parametrize(
    ("modern", "result_type", "expected"),
    [(True, "complete", ""), (True, None, "era:"), (False, None, ""), (False, "complete", "era:")],
)
def test_our_results_must_fit_the_requests_era(
    tokens: fuzz.Tokens, modern: bool, result_type: str | None, expected: str
) -> None:
    params = {"name": "orders___update_order", "arguments": {}, **({"_meta": MODERN_META} if modern else {})}
    event = request_event(rpc("tools/call", params, rpc_id=3), tokens.valid["alice"])
    found = problems(event, denial(3, result_type), tokens)
    assert expected in found and bool(found) == bool(expected)


@pytest.mark.parametrize(
    ("modern", "hints", "expected"),
    [
        (True, {"ttlMs": 60_000, "cacheScope": "private"}, ""),
        (True, {"ttlMs": 60_001, "cacheScope": "private"}, "cache:"),
        (True, {"ttlMs": 0, "cacheScope": "public"}, "cache:"),
        (True, {}, "cache:"),
        (False, {}, ""),
        (False, {"cacheScope": "public"}, "cache:"),
    ],
)
def test_a_filtered_list_must_not_be_shareable(
    tokens: fuzz.Tokens, modern: bool, hints: dict[str, Any], expected: str
) -> None:
    request = request_event(
        rpc("tools/list", {"_meta": MODERN_META} if modern else {}, rpc_id=4), tokens.valid["alice"]
    )
    event = response_event(request, {"jsonrpc": "2.0", "id": 4, "result": {"tools": []}})
    body = {"jsonrpc": "2.0", "id": 4, "result": {"tools": [], **hints}}
    out = {"interceptorOutputVersion": "1.0", "mcp": {"transformedGatewayResponse": {"statusCode": 200, "body": body}}}
    found = problems(event, out, tokens)
    assert expected in found and bool(found) == bool(expected)


def test_an_exception_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    class Raising:
        def handle(self, event: Any, request_id: str | None = None) -> Any:
            raise RuntimeError("boom")

    monkeypatch.setattr(fuzz, "build", lambda env, auditor: Raising())
    report = fuzz.run(3, seed=1)
    assert report.violations == [(n, "exception: RuntimeError") for n in (1, 2, 3)]


def test_main_reports_and_exits_zero_on_a_clean_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz.main(["--events", "50", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "fuzz: 50 events, seed 3" in out
    assert out.rstrip().endswith("violations: 0")


# ---------------------------------------------------------------------------------------------------------------
# agents: the checks can fail


def agent_problems(event: Any, out: Any, tokens: fuzz.Tokens, mode: str) -> str:
    rpc_id, user, agent = (
        fuzz.readable_id(event),
        fuzz.authentic_user(event, tokens),
        fuzz.authentic_agent(event, tokens),
    )
    return "; ".join(fuzz.check(event, out, AUDIT, [], tokens, rpc_id, user, mode=mode, agent=agent))


def stamped_call(user: str, roles: list[str], agent: str | None, **extra: Any) -> dict[str, Any]:
    body = tool_call("orders___get_order_tool", {"order_id": "1"})
    body["params"]["arguments"].update(_teleport_user=user, _teleport_roles=roles, **extra)
    if agent is not None:
        body["params"]["arguments"]["_teleport_agent"] = agent
    return body


@pytest.mark.parametrize(
    ("mode", "header", "stamp", "expected"),
    [
        ("required", None, None, "agent: passed in required mode without a valid agent token"),
        ("required", "valid", fuzz.ORDERS_AGENT, ""),
        ("required", "invalid", None, "agent: passed in required mode"),
        ("optional", None, None, ""),
        ("optional", "invalid", None, "agent: passed with an agent header that does not verify"),
        ("optional", "valid", None, "reserved: the stamped identity is not the verified one"),
        ("optional", "valid", fuzz.HR_AGENT, "reserved: the stamped identity is not the verified one"),
        ("off", "valid", None, ""),
        ("off", "valid", fuzz.ORDERS_AGENT, "reserved: a reserved argument name was forwarded"),
        ("off", None, "mallory", "reserved: a caller-sent identity value was forwarded"),
    ],
)
def test_agent_invariants_are_checked(
    tokens: fuzz.Tokens, mode: str, header: str | None, stamp: str | None, expected: str
) -> None:
    value = {"valid": tokens.agents[fuzz.ORDERS_AGENT], "invalid": tokens.invalid_agents[0], None: None}[header]
    headers = {fuzz.AGENT_HEADER: f"Bearer {value}"} if value is not None else {}
    event = request_event(tool_call("orders___get_order_tool", {"order_id": "1"}), tokens.valid["carol"], headers)
    found = agent_problems(event, forward(stamped_call("carol", ["order-admin"], stamp)), tokens, mode)
    assert expected in found and bool(found) == bool(expected), found


def test_the_act_claim_and_tool_lists_are_checked_in_agent_modes(tokens: fuzz.Tokens) -> None:
    orders, hr = tokens.agents[fuzz.ORDERS_AGENT], tokens.agents[fuzz.HR_AGENT]
    acting = request_event(rpc("tools/list"), tokens.valid["erin"], {fuzz.AGENT_HEADER: hr})
    assert "act names another agent" in agent_problems(acting, forward(rpc("tools/list")), tokens, "optional")
    assert agent_problems(acting, forward(rpc("tools/list")), tokens, "off") == ""
    listing = response_event(request_event(rpc("tools/list"), tokens.valid["carol"]), {"jsonrpc": "2.0", "id": 1})
    body = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "orders___get_order_tool"}]}}
    shown = {
        "interceptorOutputVersion": "1.0",
        "mcp": {"transformedGatewayResponse": {"statusCode": 200, "body": body}},
    }
    assert "(a tool list)" in agent_problems(listing, shown, tokens, "required")
    with_agent = response_event(
        request_event(rpc("tools/list"), tokens.valid["carol"], {fuzz.AGENT_HEADER: orders}),
        {"jsonrpc": "2.0", "id": 1},
    )
    assert agent_problems(with_agent, shown, tokens, "required") == ""


def test_a_seeded_run_reaches_every_agent_outcome() -> None:
    report = fuzz.run(EVENTS, seed=12)
    assert report.violations == []
    for reason in ("agent_token_missing", "agent_token_invalid", "agent_denied"):
        assert report.outcomes[reason] >= 3, reason
