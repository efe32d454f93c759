"""RESPONSE phase: tool lists filtered per caller (the listing rule), semantic search forms, pagination, fail-closed
behaviour, pass-through of every other response, log_only and the audit record (metrics: test_audit.py).

Events go through the interceptor built exactly as at cold start, with tokens from the real local issuer."""

from __future__ import annotations

import copy
import functools
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.gateway import notification, request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer, new_key
from interceptor import listing
from interceptor.listing import SEARCH_TOOL, ToolLister, could_allow
from interceptor.pipeline import Interceptor
from interceptor.policy import PolicyEngine, PolicySource, policy_set_digest
from interceptor.tokens import Identity

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"
SCHEMA = (REPO_POLICIES / "schema.cedarschema").read_text(encoding="utf-8")
GET = "orders___get_order_tool"
LIST = "orders___list_my_orders"
UPDATE = "orders___update_order"
QUERY = "db___run_query"
ALL = [QUERY, GET, LIST, UPDATE]
UNKNOWN = "payroll___pay"

Audit = Callable[[], list[dict[str, Any]]]
Make = Callable[..., Interceptor]


# ---------------------------------------------------------------------------------------------------------------
# helpers


def tool_def(name: str) -> dict[str, Any]:
    """A tool as a gateway lists it, with the fields filtering must keep untouched."""
    return {
        "name": name,
        "description": f"does {name}",
        "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}},
        "annotations": {"readOnlyHint": True, "title": name.upper()},
    }


def list_event(token: str | None, names: list[str], rpc_id: Any = 1, **result: Any) -> dict[str, Any]:
    request = request_event(rpc("tools/list", {"cursor": "page-1"}, rpc_id=rpc_id), token)
    body = {"jsonrpc": "2.0", "id": rpc_id, "result": {"tools": [tool_def(n) for n in names], **result}}
    return response_event(request, body)


def search_event(token: str | None, result: dict[str, Any], rpc_id: Any = 9) -> dict[str, Any]:
    request = request_event(tool_call(SEARCH_TOOL, {"query": "orders"}, rpc_id=rpc_id), token)
    return response_event(request, {"jsonrpc": "2.0", "id": rpc_id, "result": result})


def answer(out: dict[str, Any]) -> tuple[int, Any]:
    """(statusCode, body) of a RESPONSE output; asserts the documented minimal shape."""
    assert out["interceptorOutputVersion"] == "1.0"
    assert set(out) == {"interceptorOutputVersion", "mcp"}
    assert set(out["mcp"]) == {"transformedGatewayResponse"}
    response = out["mcp"]["transformedGatewayResponse"]
    assert set(response) == {"statusCode", "body"}
    return response["statusCode"], response["body"]


def listed(out: dict[str, Any]) -> list[str]:
    code, body = answer(out)
    assert code == 200
    return [t["name"] for t in body["result"]["tools"]]


def refused(out: dict[str, Any], status: int, rpc_id: Any) -> str:
    code, body = answer(out)
    assert code == status
    assert set(body) == {"jsonrpc", "id", "error"}
    assert body["id"] == rpc_id
    message: str = body["error"]["message"]
    return message


def folder_with(tmp_path: Path, text: str, schema: str = SCHEMA) -> str:
    """A POLICY_DIR under tmp_path holding `schema` and one policy file."""
    folder = tmp_path / f"policies-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "schema.cedarschema").write_text(schema, encoding="utf-8")
    (folder / "p.cedar").write_text(text, encoding="utf-8")
    return str(folder)


def who(user: str = "alice", roles: tuple[str, ...] = (), traits: dict[str, tuple[str, ...]] | None = None) -> Identity:
    return Identity(user, roles, traits or {}, "https://t.example.com", 0)


def per_tool(engine: PolicyEngine, identity: Identity) -> frozenset[str]:
    """The rule applied tool by tool: one Cedar partial evaluation each (the reference for the lister)."""
    return frozenset(t for t in engine.tools if could_allow(engine.partially_evaluate(identity, t)))


# ---------------------------------------------------------------------------------------------------------------
# the listing rule on the example policies


EXAMPLES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("developer", {"user": "alice", "roles": ["developer"]}, [GET, LIST]),
    # update_order is forbidden only for unknown statuses: allowed under argument conditions, so listed
    ("order-admin", {"user": "carol", "roles": ["order-admin"]}, [GET, LIST, UPDATE]),
    # the bot forbid holds whatever the arguments: update_order hidden although order-admin permits it
    ("bot-order-admin", {"user": "bot-ci", "roles": ["order-admin"]}, [GET, LIST]),
    ("reporter-bot", {"user": "bot-reporter", "roles": ["bot-reporter"]}, [LIST]),
    # a permit whose condition reads the arguments (database in the caller's trait): listed
    ("db-reader", {"user": "dana", "roles": ["db-reader"], "traits": {"db_names": ["sales"]}}, [QUERY]),
    ("db-reader-no-trait", {"user": "dan", "roles": ["db-reader"], "traits": {}}, []),
    ("db-reader-bot", {"user": "bot-db", "roles": ["db-reader"], "traits": {"db_names": ["sales"]}}, []),
    ("no-roles", {"user": "eve", "roles": []}, []),
]


@pytest.mark.parametrize(("claims", "expected"), [c[1:] for c in EXAMPLES], ids=[c[0] for c in EXAMPLES])
def test_each_caller_sees_the_tools_some_call_could_allow(
    issuer: Issuer, interceptor: Interceptor, claims: dict[str, Any], expected: list[str]
) -> None:
    token = issuer.mint(**claims)
    assert listed(interceptor.handle(list_event(token, [*ALL, UNKNOWN]))) == [t for t in ALL if t in expected]


def test_listing_agrees_with_the_request_path(issuer: Issuer, interceptor: Interceptor) -> None:
    """A hidden tool is refused whatever the arguments; a listed one is allowed for some arguments."""
    arguments = {
        GET: [{"order_id": "1"}],
        LIST: [{}],
        UPDATE: [{"order_id": "1", "status": s} for s in ("shipped", "lost")],
        QUERY: [{"database": d, "query": "q"} for d in ("sales", "hr")],
    }
    for _, claims, _expected in EXAMPLES:
        token = issuer.mint(**claims)
        shown = set(listed(interceptor.handle(list_event(token, ALL))))
        for tool, candidates in arguments.items():
            outputs = [interceptor.handle(request_event(tool_call(tool, args), token)) for args in candidates]
            allowed = any("transformedGatewayRequest" in out["mcp"] for out in outputs)
            assert allowed == (tool in shown), (claims, tool)


def test_order_and_every_other_key_are_preserved(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    names = [UPDATE, LIST, QUERY, GET, UNKNOWN]
    event = list_event(token, names, rpc_id="list-3", nextCursor="cursor-2", _meta={"k": "v"})
    event["mcp"]["gatewayResponse"]["body"]["x-extra"] = {"kept": True}
    snapshot = copy.deepcopy(event)
    code, body = answer(interceptor.handle(event))
    original = snapshot["mcp"]["gatewayResponse"]["body"]
    assert code == 200
    assert body == {**original, "result": {**original["result"], "tools": [tool_def(LIST), tool_def(GET)]}}
    assert body["result"]["nextCursor"] == "cursor-2"
    assert event == snapshot, "the gateway's event was mutated"


def test_every_page_is_filtered_and_keeps_its_cursor(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    pages = [([QUERY, GET], "c1"), ([UPDATE], "c2"), ([LIST], None)]
    for names, cursor in pages:
        extra = {"nextCursor": cursor} if cursor else {}
        _, body = answer(interceptor.handle(list_event(token, names, **extra)))
        assert body["result"].get("nextCursor") == cursor
        assert [t["name"] for t in body["result"]["tools"]] == [n for n in names if n in (GET, LIST)]


def test_body_as_json_text_is_filtered_and_stays_text(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    event = list_event(token, [GET, UPDATE], nextCursor="n")
    event["mcp"]["gatewayResponse"]["body"] = json.dumps(event["mcp"]["gatewayResponse"]["body"])
    _, body = answer(interceptor.handle(event))
    assert isinstance(body, str)
    assert json.loads(body)["result"] == {"tools": [tool_def(GET)], "nextCursor": "n"}


@pytest.mark.parametrize(
    "item", [{"title": GET}, {"name": None}, {"name": 7}, "orders___get_order_tool", None, [GET]], ids=repr
)
def test_tools_without_a_usable_name_are_removed(issuer: Issuer, interceptor: Interceptor, item: Any) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    event = list_event(token, [GET])
    event["mcp"]["gatewayResponse"]["body"]["result"]["tools"].append(item)
    assert listed(interceptor.handle(event)) == [GET]


def test_an_empty_list_stays_empty(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    assert listed(interceptor.handle(list_event(token, [], nextCursor="c"))) == []


# ---------------------------------------------------------------------------------------------------------------
# the listing rule on purpose-built policies


PERMIT_GET = '@id("get") permit (principal, action == Teleport::Action::"orders___get_order_tool", resource);\n'
RULES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("no-policy", "", {}, []),
    ("unconditional-permit", PERMIT_GET, {}, [GET]),
    (
        "permit-on-arguments",
        '@id("p") permit (principal, action == Teleport::Action::"orders___update_order", resource)\n'
        'when { context.input.status == "pending" };',
        {},
        [UPDATE],
    ),
    (
        "permit-on-optional-argument",
        '@id("p") permit (principal, action == Teleport::Action::"orders___list_my_orders", resource)\n'
        "when { context.input has limit && context.input.limit < 10 };",
        {},
        [LIST],
    ),
    (
        "permit-on-a-role-the-caller-lacks",
        '@id("p") permit (principal in Teleport::Role::"admin", action, resource);',
        {"roles": ["developer"]},
        [],
    ),
    (
        "permit-on-the-target-group",
        '@id("p") permit (principal, action in Teleport::Action::"db", resource);',
        {},
        [QUERY],
    ),
    (
        "unconditional-forbid-hides",
        PERMIT_GET + '@id("f") forbid (principal, action, resource);',
        {},
        [],
    ),
    (
        "forbid-on-arguments-does-not-hide",
        PERMIT_GET + '@id("f") forbid (principal, action, resource) when { context.input has order_id };',
        {},
        [GET],
    ),
    (
        "forbid-on-arguments-unless-does-not-hide",
        PERMIT_GET + '@id("f") forbid (principal, action, resource) unless { context.input has order_id };',
        {},
        [GET],
    ),
    (
        "forbid-on-a-trait-hides",
        PERMIT_GET + '@id("f") forbid (principal, action, resource) when { principal.hasTag("team") && '
        'principal.getTag("team").contains("red") };',
        {"traits": {"team": ["red"]}},
        [],
    ),
    (
        "forbid-on-a-trait-the-caller-lacks",
        PERMIT_GET + '@id("f") forbid (principal, action, resource) when { principal.hasTag("team") && '
        'principal.getTag("team").contains("red") };',
        {"traits": {"team": ["blue"]}},
        [GET],
    ),
    (
        "forbid-on-the-user",
        PERMIT_GET + '@id("f") forbid (principal == Teleport::User::"alice", action, resource);',
        {},
        [],
    ),
    (
        "permit-and-forbid-both-on-arguments",
        '@id("p") permit (principal, action == Teleport::Action::"orders___update_order", resource)\n'
        'when { context.input.status == "pending" };\n'
        '@id("f") forbid (principal, action == Teleport::Action::"orders___update_order", resource)\n'
        'when { context.input.order_id == "0" };',
        {},
        [UPDATE],
    ),
    (
        # conditions reading `action` are evaluated tool by tool
        "condition-on-the-action",
        '@id("p") permit (principal, action in Teleport::Action::"orders", resource)\n'
        'when { action == Teleport::Action::"orders___list_my_orders" };',
        {},
        [LIST],
    ),
    (
        # another user's entity is not in the store: the request path refuses (policy_error), so it is hidden
        "condition-on-an-unknown-entity",
        PERMIT_GET + '@id("p") permit (principal, action == Teleport::Action::"db___run_query", resource)\n'
        'when { Teleport::User::"boss".bot == false };',
        {},
        [GET],
    ),
]


@pytest.mark.parametrize(("policies", "claims", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_listing_rule(
    tmp_path: Path,
    issuer: Issuer,
    make_interceptor: Make,
    policies: str,
    claims: dict[str, Any],
    expected: list[str],
) -> None:
    interceptor = make_interceptor(POLICY_DIR=folder_with(tmp_path, policies))
    token = issuer.mint(**{"user": "alice", "roles": [], "traits": {}, **claims})
    assert listed(interceptor.handle(list_event(token, ALL))) == [t for t in ALL if t in expected]


# 2**63 - 1 + 1 overflows: a runtime error for bots only (validation cannot see it)
OVERFLOW = "9223372036854775807 + (if principal.bot then 1 else 0) > 0"


@pytest.mark.parametrize(("user", "expected"), [("alice", [GET, LIST]), ("bot-ci", [LIST])])
def test_a_policy_that_errors_hides_only_the_tools_it_applies_to(
    tmp_path: Path, issuer: Issuer, make_interceptor: Make, user: str, expected: list[str]
) -> None:
    policies = (
        f'@id("overflow") permit (principal, action == Teleport::Action::"orders___get_order_tool", resource)\n'
        f"when {{ {OVERFLOW} }};\n"
        '@id("list") permit (principal, action == Teleport::Action::"orders___list_my_orders", resource);'
    )
    interceptor = make_interceptor(POLICY_DIR=folder_with(tmp_path, policies))
    token = issuer.mint(user=user, roles=[])
    assert listed(interceptor.handle(list_event(token, ALL))) == expected
    # the request path refuses what is hidden, for the same reason
    call = interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token))
    assert ("transformedGatewayRequest" in call["mcp"]) == (GET in expected)


# ---------------------------------------------------------------------------------------------------------------
# the one-evaluation-per-caller lister equals evaluating every tool on its own


SCOPES = [
    "principal",
    'principal in Teleport::Role::"r1"',
    'principal in Teleport::Role::"r2"',
    'principal == Teleport::User::"u1"',
    "principal is Teleport::User",
    'principal is Teleport::User in Teleport::Role::"r1"',
    'principal in Teleport::User::"u2"',
]
ACTIONS = [
    "action",
    'action in Teleport::Action::"orders"',
    'action in Teleport::Action::"db"',
    *(f'action == Teleport::Action::"{t}"' for t in ALL),
    f'action in [Teleport::Action::"{GET}", Teleport::Action::"{QUERY}"]',
]
CONDITIONS = [
    "",
    "when { principal.bot }",
    "unless { principal.bot }",
    'when { principal.hasTag("team") && principal.getTag("team").contains("red") }',
    'when { context has input && context.input has order_id && context.input.order_id == "1" }',
    'when { context.input has status && ["a", "b"].contains(context.input.status) }',
    "when { principal.bot && context.input has limit }",
    f'when {{ action == Teleport::Action::"{LIST}" || action == Teleport::Action::"{QUERY}" }}',
    'when { Teleport::User::"u2".bot }',
    f"when {{ {OVERFLOW} }}",
    'when { principal.name like "u*" }',
]


def random_policies(rnd: random.Random) -> str:
    lines = []
    for n in range(rnd.randint(1, 12)):
        effect = "forbid" if rnd.random() < 0.35 else "permit"
        condition = rnd.choice(CONDITIONS)
        lines.append(f'@id("p{n}") {effect} ({rnd.choice(SCOPES)}, {rnd.choice(ACTIONS)}, resource) {condition};')
    return "\n".join(lines)


def random_caller(rnd: random.Random) -> Identity:
    user = rnd.choice(["u1", "u2", "bot-u3", "x"])
    roles = tuple(r for r in ("r1", "r2", "r3") if rnd.random() < 0.5)
    traits = {"team": tuple(t for t in ("red", "blue") if rnd.random() < 0.5)} if rnd.random() < 0.6 else {}
    return who(user, roles, traits)


@pytest.mark.parametrize("seed", range(60))
def test_lister_equals_per_tool_partial_evaluation(seed: int) -> None:
    rnd = random.Random(seed)
    source = PolicySource({"p.cedar": random_policies(rnd)}, SCHEMA)
    engine = PolicyEngine(source)
    lister = ToolLister(engine, policy_set_digest(source))
    for _ in range(6):
        caller = random_caller(rnd)
        assert lister.visible(caller) == per_tool(engine, caller), source.files["p.cedar"]
        for tool in engine.tools:  # and the per-tool rule agrees with Cedar's own partial decision
            result = engine.partially_evaluate(caller, tool)
            if not (result.diagnostics.errors or result.diagnostics.unknown_entities):
                assert could_allow(result) == (result.decision is not cedarpy.Decision.Deny)


def test_a_callers_list_evaluates_only_policies_that_can_match_them_then_is_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PolicyEngine.load(REPO_POLICIES)
    lister = ToolLister(engine, "x")
    evaluated: list[str] = []

    def spying(original: Callable[..., Any]) -> Callable[..., Any]:
        def spy(self: PolicyEngine, identity: Identity, tool: str, policies: Any = None) -> Any:
            evaluated.append(str(policies))  # the policies Cedar evaluates, as text
            return original(self, identity, tool, policies)

        return spy

    for name in ("partially_evaluate", "probe"):
        monkeypatch.setattr(PolicyEngine, name, spying(getattr(PolicyEngine, name)))
    alice = who("alice", ("developer",))
    assert lister.visible(alice) == {GET, LIST}
    seen = "\n".join(evaluated)
    assert "developers-read-orders" in seen and "no-destructive-tools-for-bots" in seen
    for other_roles in ("order-admins-manage-orders", "db-readers-own-databases", "reporter-bot-lists-orders"):
        assert other_roles not in seen
    count = len(evaluated)
    assert lister.visible(alice) == {GET, LIST}
    assert len(evaluated) == count, "cached"
    assert lister.visible(who("alice", ("developer", "order-admin"))) == {GET, LIST, UPDATE}
    assert "order-admins-manage-orders" in "\n".join(evaluated[count:]), "other roles are another cache entry"


def test_a_tool_no_user_can_call_is_hidden(tmp_path: Path, issuer: Issuer, make_interceptor: Make) -> None:
    schema = SCHEMA.replace("entity Gateway;", "entity Gateway;\n  entity Robot;").replace(
        f'action "{GET}" in [Action::"orders", Action::"read_only"] appliesTo {{\n    principal: [User, Agent],',
        f'action "{GET}" in [Action::"orders", Action::"read_only"] appliesTo {{\n    principal: [Robot],',
    )
    assert "principal: [Robot]" in schema
    interceptor = make_interceptor(
        POLICY_DIR=folder_with(tmp_path, '@id("all") permit (principal, action, resource);', schema)
    )
    token = issuer.mint(user="alice", roles=[])
    assert listed(interceptor.handle(list_event(token, ALL))) == [QUERY, LIST, UPDATE]


def cedar_literal(text: str) -> str:
    """`text` as a Cedar string literal in policy text (which accepts any escape, unlike partial evaluation)."""
    return '"' + "".join(c if c.isascii() and c.isalnum() else f"\\u{{{ord(c):x}}}" for c in text) + '"'


@functools.cache
def user_engine(user: str) -> PolicyEngine:
    policy = f"permit (principal == Teleport::User::{cedar_literal(user)}, action, resource);"
    return PolicyEngine(PolicySource({"p.cedar": policy}, SCHEMA))


NAMES = [
    "alice",
    "o'brien",
    'zoë "the" admin',
    "a\\b",
    "tab\there\nnewline",
    "nul\0",
    "日本語",
    "🚀",
    "\u0301accent-first",
]


@pytest.mark.parametrize("user", NAMES, ids=repr)
def test_partial_evaluation_names_exactly_the_caller(user: str) -> None:
    assert user_engine(user).partially_evaluate(who(user), GET).decision is cedarpy.Decision.Allow
    assert user_engine(user).partially_evaluate(who(user + "x"), GET).decision is cedarpy.Decision.Deny


@given(st.text(max_size=30))
def test_partial_evaluation_never_names_another_user(user: str) -> None:
    """Cedar accepts only its own rendering of a uid; whatever it cannot parse is an error (nothing shown)."""
    result = PolicyEngine.partially_evaluate(user_engine(""), who(user), GET)
    matched = result.decision is cedarpy.Decision.Allow
    assert matched == (user == "") or result.diagnostics.errors


NAME_POLICIES = PERMIT_GET.replace("resource);", "resource) when { !principal.bot };") + (
    '@id("r1-lists") permit (principal in Teleport::Role::"r1", action == Teleport::Action::"orders___list_my_orders",'
    " resource);"
)


@given(st.text(max_size=12))
def test_the_lister_agrees_with_per_tool_evaluation_whatever_the_callers_name(user: str) -> None:
    """Full and partial evaluations take the caller's uid in the same Cedar rendering: an unreadable name fails
    both alike (nothing shown), a readable one is evaluated as itself."""
    engine = name_engine()
    caller = who(user, ("r1",))
    assert ToolLister(engine, "x").visible(caller) == per_tool(engine, caller)


@functools.cache
def name_engine() -> PolicyEngine:
    return PolicyEngine(PolicySource({"p.cedar": NAME_POLICIES}, SCHEMA))


def test_a_forbid_naming_an_unusual_user_hides_for_that_user_only(
    tmp_path: Path, issuer: Issuer, make_interceptor: Make
) -> None:
    name = 'zoë "the" \\ o\'admin\n🚀'
    policy = PERMIT_GET + f'@id("f") forbid (principal == Teleport::User::{cedar_literal(name)}, action, resource);'
    interceptor = make_interceptor(POLICY_DIR=folder_with(tmp_path, policy))
    assert listed(interceptor.handle(list_event(issuer.mint(user=name, roles=[]), ALL))) == []
    assert listed(interceptor.handle(list_event(issuer.mint(user="zoë", roles=[]), ALL))) == [GET]


# ---------------------------------------------------------------------------------------------------------------
# semantic search


def test_search_structured_content_and_text_are_filtered(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    found = [tool_def(n) for n in (UPDATE, GET, UNKNOWN, LIST)]
    text_json = {"tools": found, "query": "orders", "total": 4}
    result = {
        "structuredContent": {"tools": found, "total": 4},
        "content": [
            {"type": "text", "text": json.dumps(text_json)},
            {"type": "text", "text": "Found 4 tools."},
        ],
        "isError": False,
    }
    event = search_event(token, result)
    snapshot = copy.deepcopy(event)
    code, body = answer(interceptor.handle(event))
    assert code == 200
    assert body["id"] == 9
    out = body["result"]
    assert out["structuredContent"] == {"tools": [tool_def(GET), tool_def(LIST)], "total": 4}
    assert json.loads(out["content"][0]["text"]) == {**text_json, "tools": [tool_def(GET), tool_def(LIST)]}
    assert out["content"][1] == {"type": "text", "text": "Found 4 tools."}
    assert out["isError"] is False
    assert event == snapshot


@pytest.mark.parametrize(
    "item",
    [
        {"type": "text", "text": f"Best match: {UPDATE} (update an order)"},
        {"type": "text", "text": '{"tools": [{"name": "orders___update_order"}'},  # truncated JSON
        {"type": "text", "text": json.dumps([tool_def(UPDATE)])},  # JSON, but not the known shape
        {"type": "resource", "resource": {"uri": "x://t", "text": json.dumps({"tools": [tool_def(UPDATE)]})}},
    ],
    ids=["prose", "broken-json", "json-list", "embedded-resource"],
)
def test_search_items_that_may_name_tools_but_cannot_be_filtered_are_dropped(
    issuer: Issuer, interceptor: Interceptor, item: dict[str, Any], audit_lines: Audit
) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    keep = {"type": "text", "text": "no matches nearby"}
    _, body = answer(interceptor.handle(search_event(token, {"content": [item, keep]})))
    assert body["result"]["content"] == [keep]
    assert UPDATE not in json.dumps(body)
    assert audit_lines()[-1]["content_dropped"] == 1


def test_search_refused_by_the_request_phase_passes_through(issuer: Issuer, interceptor: Interceptor) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    body = {"jsonrpc": "2.0", "id": 9, "error": {"code": -31001, "message": "token expired (reason: token_expired)"}}
    request = request_event(tool_call(SEARCH_TOOL, {"query": "q"}, rpc_id=9), token)
    assert answer(interceptor.handle(response_event(request, body, 401))) == (401, body)


def test_search_tool_itself_is_listed_only_when_the_schema_and_policies_allow_it(
    tmp_path: Path, issuer: Issuer, make_interceptor: Make
) -> None:
    token = issuer.mint(user="alice", roles=["developer"])
    assert listed(make_interceptor().handle(list_event(token, [SEARCH_TOOL, GET]))) == [GET]
    schema = SCHEMA.replace(
        "  // Target db.",
        f'  action "{SEARCH_TOOL}" appliesTo {{ principal: [User], resource: [Gateway], '
        "context: { input: { query: String } } };\n  // Target db.",
    )
    policies = f'@id("search") permit (principal, action == Teleport::Action::"{SEARCH_TOOL}", resource);'
    allowed = make_interceptor(POLICY_DIR=folder_with(tmp_path, policies, schema))
    assert listed(allowed.handle(list_event(token, [SEARCH_TOOL, GET]))) == [SEARCH_TOOL]


# ---------------------------------------------------------------------------------------------------------------
# fail closed


def _expired(issuer: Issuer) -> str:
    return issuer.mint(user="alice", ttl=-3600)


BAD_TOKENS: list[tuple[str, Callable[[Issuer], str | None], str]] = [
    ("missing", lambda i: None, "token_missing"),
    ("garbage", lambda i: "not.a.jwt", "token_malformed"),
    ("expired", _expired, "token_expired"),
    ("foreign-key", lambda i: i.mint(key=new_key(), roles=["order-admin"]), "signature_invalid"),
    ("wrong-audience", lambda i: i.mint(aud="mcp+https://other.example.com/mcp"), "audience_mismatch"),
    ("wrong-issuer", lambda i: i.mint(iss="https://other.example.com"), "issuer_mismatch"),
]


@pytest.mark.parametrize("mode", ["enforce", "log_only"])
@pytest.mark.parametrize(("make_token", "reason"), [b[1:] for b in BAD_TOKENS], ids=[b[0] for b in BAD_TOKENS])
def test_bad_tokens_get_a_refusal_never_the_list(
    issuer: Issuer,
    make_interceptor: Make,
    make_token: Callable[[Issuer], str | None],
    reason: str,
    mode: str,
    audit_lines: Audit,
) -> None:
    out = make_interceptor(ENFORCEMENT_MODE=mode).handle(list_event(make_token(issuer), ALL, rpc_id=4))
    assert f"reason: {reason}" in refused(out, 401, 4)
    assert not any(tool in json.dumps(out) for tool in ALL)
    [record] = audit_lines()
    assert (record["phase"], record["reason"], record["forwarded"]) == ("RESPONSE", reason, False)


def test_search_with_a_bad_token_is_refused(issuer: Issuer, interceptor: Interceptor) -> None:
    result = {"structuredContent": {"tools": [tool_def(GET)]}, "content": []}
    assert "token_expired" in refused(interceptor.handle(search_event(_expired(issuer), result)), 401, 9)


def test_without_headers_the_list_is_refused(issuer: Issuer, interceptor: Interceptor) -> None:
    event = list_event(issuer.mint(), ALL)
    del event["mcp"]["gatewayRequest"]["headers"]
    assert "headers_missing" in refused(interceptor.handle(event), 500, 1)


def test_idp_outage_refuses_the_list(issuer: Issuer, make_interceptor: Make) -> None:
    interceptor = make_interceptor()
    token = issuer.mint()
    issuer.down = True
    assert "idp_unavailable" in refused(interceptor.handle(list_event(token, ALL)), 503, 1)


def test_broken_containers_never_pass_a_list(tmp_path: Path, issuer: Issuer, make_interceptor: Make) -> None:
    token = issuer.mint(user="carol", roles=["order-admin"])
    misconfigured = make_interceptor(ENFORCEMENT_MODE="bogus")
    assert "misconfigured" in refused(misconfigured.handle(list_event(token, ALL)), 500, 1)
    invalid = make_interceptor(POLICY_DIR=folder_with(tmp_path, "permit (principal, action, resource) when { nope };"))
    assert "policy_set_invalid" in refused(invalid.handle(list_event(token, ALL)), 500, 1)


@pytest.mark.parametrize(
    "target",
    [
        (ToolLister, "visible"),
        (listing, "filter_response"),
        (PolicyEngine, "partially_evaluate"),
        (PolicyEngine, "probe"),
        (ToolLister, "_decide"),
    ],
    ids=lambda t: t[1],
)
def test_errors_while_filtering_refuse_the_list(
    monkeypatch: pytest.MonkeyPatch,
    issuer: Issuer,
    interceptor: Interceptor,
    target: tuple[Any, str],
    audit_lines: Audit,
) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("filtering broke")

    monkeypatch.setattr(*target, boom)
    out = interceptor.handle(list_event(issuer.mint(user="carol", roles=["order-admin"]), ALL, rpc_id=6))
    assert "internal_error" in refused(out, 500, 6)
    assert not any(tool in json.dumps(out) for tool in ALL)
    assert audit_lines()[-1]["reason"] == "internal_error"


UNFILTERABLE: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("result-list", lambda b: {**b, "result": [tool_def(GET)]}),
    ("result-string", lambda b: {**b, "result": json.dumps(b["result"])}),
    ("tools-object", lambda b: {**b, "result": {"tools": {GET: tool_def(GET)}}}),
    ("tools-null", lambda b: {**b, "result": {"tools": None}}),
    ("structured-tools-string", lambda b: {**b, "result": {"structuredContent": {"tools": GET}}}),
    ("content-object", lambda b: {**b, "result": {"content": {"text": GET}}}),
    ("text-tools-object", lambda b: {**b, "result": {"content": [{"type": "text", "text": '{"tools": {}}'}]}}),
    ("body-list", lambda b: [b]),
    ("body-number", lambda b: 42),
    ("body-not-json", lambda b: "event: message\ndata: " + json.dumps(b)),
]


@pytest.mark.parametrize("mode", ["enforce", "log_only"])
@pytest.mark.parametrize("mangle", [u[1] for u in UNFILTERABLE], ids=[u[0] for u in UNFILTERABLE])
def test_a_list_that_cannot_be_read_is_refused(
    issuer: Issuer, make_interceptor: Make, mangle: Callable[[dict[str, Any]], Any], mode: str, audit_lines: Audit
) -> None:
    event = list_event(issuer.mint(user="alice", roles=["developer"]), [UPDATE, GET])
    event["mcp"]["gatewayResponse"]["body"] = mangle(event["mcp"]["gatewayResponse"]["body"])
    out = make_interceptor(ENFORCEMENT_MODE=mode).handle(event)
    assert "internal_error" in refused(out, 500, 1)
    [record] = audit_lines()
    assert record["detail"].startswith("tool list response cannot be filtered")


# ---------------------------------------------------------------------------------------------------------------
# every other response passes through unchanged


PASS_THROUGH: list[tuple[str, dict[str, Any], Any, int]] = [
    ("tool-result", tool_call(GET, {"order_id": "1"}), {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, 200),
    (
        "tool-error-result",
        tool_call(UPDATE, {"order_id": "1", "status": "x"}),
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "no"}], "isError": True}},
        200,
    ),
    (
        "tool-result-naming-tools",
        tool_call(LIST, {}),
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f"try {UPDATE}"}]}},
        200,
    ),
    (
        "request-short-circuit-401",
        rpc("tools/list", rpc_id=2),
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -31001, "message": "no bearer token (reason: token_missing)"}},
        401,
    ),
    (
        "policy-denial",
        tool_call(UPDATE, {"order_id": "1", "status": "shipped"}, rpc_id=3),
        {"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": "denied"}], "isError": True}},
        200,
    ),
    (
        "initialize",
        rpc("initialize", {"protocolVersion": "2025-06-18"}),
        {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}}},
        200,
    ),
    ("ping", rpc("ping", rpc_id="p"), {"jsonrpc": "2.0", "id": "p", "result": {}}, 200),
    ("resources-list", rpc("resources/list"), {"jsonrpc": "2.0", "id": 1, "result": {"resources": []}}, 200),
    ("target-error", tool_call(GET, {"order_id": "1"}), {"jsonrpc": "2.0", "id": 1, "error": {"code": -1}}, 500),
    ("text-body", tool_call(GET, {"order_id": "1"}), "upstream said no", 502),
    ("empty-object-body", rpc("ping"), {}, 200),
]


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
@pytest.mark.parametrize(
    ("request_body", "body", "status"), [p[1:] for p in PASS_THROUGH], ids=[p[0] for p in PASS_THROUGH]
)
def test_other_responses_pass_through_unchanged(
    issuer: Issuer,
    interceptor: Interceptor,
    request_body: dict[str, Any],
    body: Any,
    status: int,
    with_token: bool,
    audit_lines: Audit,
) -> None:
    token = issuer.mint(user="alice", roles=["developer"]) if with_token else None
    event = response_event(request_event(request_body, token), copy.deepcopy(body), status)
    snapshot = copy.deepcopy(event)
    assert answer(interceptor.handle(event)) == (status, body)
    assert event == snapshot
    [record] = audit_lines()
    assert (record["phase"], record["reason"], record["forwarded"]) == ("RESPONSE", "passthrough", True)
    assert "tools_hidden" not in record


def test_a_notification_response_without_body_gets_the_bare_version(issuer: Issuer, interceptor: Interceptor) -> None:
    event = response_event(request_event(notification(), issuer.mint()), None, 202)
    assert interceptor.handle(event) == {"interceptorOutputVersion": "1.0"}
    del event["mcp"]["gatewayResponse"]["body"]
    assert interceptor.handle(event) == {"interceptorOutputVersion": "1.0"}


@pytest.mark.parametrize("request_body", [rpc("tools/list"), tool_call(GET, {"order_id": "1"})], ids=["list", "call"])
def test_a_request_response_without_body_is_answered_not_waved_through(
    issuer: Issuer, interceptor: Interceptor, request_body: dict[str, Any]
) -> None:
    """The bare output could read as "carry on unchanged": a request with an id gets an explicit answer."""
    event = response_event(request_event(request_body, issuer.mint()), None, 202)
    assert interceptor.handle(event) == {
        "interceptorOutputVersion": "1.0",
        "mcp": {"transformedGatewayResponse": {"statusCode": 202, "body": None}},
    }


# ---------------------------------------------------------------------------------------------------------------
# log_only


def test_log_only_lists_everything_and_records_what_it_would_hide(
    issuer: Issuer, make_interceptor: Make, audit_lines: Audit
) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    event = list_event(issuer.mint(user="alice", roles=["developer"]), [*ALL, UNKNOWN], nextCursor="c")
    _, body = answer(interceptor.handle(event))
    assert body == event["mcp"]["gatewayResponse"]["body"]
    [record] = audit_lines()
    assert record["mode"] == "log_only"
    assert (record["tools_kept"], record["tools_hidden"]) == (2, 3)
    assert record["hidden_tools"] == [QUERY, UPDATE, UNKNOWN]


def test_log_only_search_is_returned_whole(issuer: Issuer, make_interceptor: Make, audit_lines: Audit) -> None:
    interceptor = make_interceptor(ENFORCEMENT_MODE="log_only")
    result = {"structuredContent": {"tools": [tool_def(UPDATE)]}, "content": [{"type": "text", "text": UPDATE}]}
    _, body = answer(interceptor.handle(search_event(issuer.mint(user="alice", roles=["developer"]), result)))
    assert body["result"] == result
    [record] = audit_lines()
    assert (record["tools_hidden"], record["content_dropped"]) == (1, 1)


# ---------------------------------------------------------------------------------------------------------------
# audit and metrics


def test_audit_record_of_a_filtered_list(
    issuer: Issuer,
    interceptor: Interceptor,
    audit_lines: Audit,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = issuer.mint(user="bot-ci", roles=["order-admin"], traits={"logins": ["ci"]})
    event = list_event(token, [*ALL, UNKNOWN], rpc_id="l-1")
    event["mcp"]["gatewayRequest"]["headers"]["Mcp-Session-Id"] = "sess-9"
    interceptor.handle(event, "lambda-req-7")
    [record] = audit_lines()
    assert type(record.pop("latency_us")) is int
    assert record == {
        "phase": "RESPONSE",
        "mode": "enforce",
        "lambda_request_id": "lambda-req-7",
        "mcp_session_id": "sess-9",
        "rpc_id": "l-1",
        "method": "tools/list",
        "tool": None,
        "user": "bot-ci",
        "roles": ["order-admin"],
        "bot": True,
        "decision": "filter",
        "forwarded": True,
        "reason": "tools_filtered",
        "policy_ids": [],
        "argument_names": [],
        "spoofed_arguments": [],
        "detail": None,
        "tools_kept": 2,
        "tools_hidden": 3,
        "hidden_tools": [QUERY, UPDATE, UNKNOWN],
        "content_dropped": 0,
        "policy_set": policy_set_digest(PolicySource.read(REPO_POLICIES)),
    }
    assert re.fullmatch(r"[0-9a-f]{12}", record["policy_set"])
    captured = capsys.readouterr()
    for part in [token, *token.split(".")]:
        assert part not in caplog.text + captured.out + captured.err


def test_policy_set_digest_names_the_content() -> None:
    a = PolicySource({"p.cedar": PERMIT_GET}, SCHEMA)
    assert policy_set_digest(a) == policy_set_digest(PolicySource({"p.cedar": PERMIT_GET}, SCHEMA))
    assert policy_set_digest(a) != policy_set_digest(PolicySource({"p.cedar": PERMIT_GET + " "}, SCHEMA))
    assert policy_set_digest(a) != policy_set_digest(PolicySource({"q.cedar": PERMIT_GET}, SCHEMA))
    assert policy_set_digest(a) != policy_set_digest(PolicySource({"p.cedar": PERMIT_GET}, SCHEMA + "\n"))


def test_hidden_names_are_capped_but_counted(issuer: Issuer, interceptor: Interceptor, audit_lines: Audit) -> None:
    names = [f"other___tool{i}" for i in range(250)]
    interceptor.handle(list_event(issuer.mint(user="alice", roles=["developer"]), [GET, *names]))
    [record] = audit_lines()
    assert (record["tools_kept"], record["tools_hidden"]) == (1, 250)
    assert record["hidden_tools"] == [*names[:100], "...(+150 more)"]
