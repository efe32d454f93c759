"""Cedar authorization: the example policies' decisions, the model's guarantees (default deny, forbid wins,
anything but Allow denies, ids are the authors' @id), and what an invalid policy set does to the container."""

from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from devtools.gateway import notification, request_event, rpc, tool_call
from devtools.issuer import Issuer
from interceptor.policy import (
    GATEWAY,
    PolicyEngine,
    PolicySetInvalid,
    PolicySource,
    caller_cache_size,
    context_text,
    decide,
    parse_schema,
    principal_entities,
)
from interceptor.reasons import Reason
from interceptor.tokens import Identity
from tool_identity import tool_arguments

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"
GET = "orders___get_order_tool"
LIST = "orders___list_my_orders"
UPDATE = "orders___update_order"
QUERY = "db___run_query"
ALL_TOOLS = frozenset({GET, LIST, UPDATE, QUERY})
VALID_ARGS: dict[str, dict[str, Any]] = {
    GET: {"order_id": "42"},
    LIST: {},
    UPDATE: {"order_id": "42", "status": "shipped"},
    QUERY: {"database": "sales", "query": "select 1"},
}


def who(user: str = "alice", roles: tuple[str, ...] = (), traits: dict[str, tuple[str, ...]] | None = None) -> Identity:
    return Identity(user=user, roles=roles, traits=traits or {}, issuer="https://t.example.com", expires_at=0)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.load(REPO_POLICIES)


def policy_folder(tmp_path: Path, policies: dict[str, str], schema: str | None = None) -> Path:
    """A policy folder under tmp_path: the repository schema (or `schema`) plus the given files."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "schema.cedarschema").write_text(
        schema if schema is not None else (REPO_POLICIES / "schema.cedarschema").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    for name, text in policies.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def repo_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, folder)
    return folder


def annotated_ids() -> set[str]:
    ids: set[str] = set()
    for path in REPO_POLICIES.glob("*.cedar"):
        ids.update(re.findall(r'@id\("([^"]+)"\)', path.read_text(encoding="utf-8")))
    return ids


# ---------------------------------------------------------------------------------------------------------------
# Decisions of the example policies

DB_TRAITS = {"db_names": ("sales", "hr")}
CASES: list[tuple[str, Identity, str, dict[str, Any], bool, Reason, tuple[str, ...]]] = [
    # id, identity, tool, arguments, allowed, reason, determining policy ids
    (
        "dev-get",
        who("alice", ("developer",)),
        GET,
        {"order_id": "42"},
        True,
        Reason.ALLOWED,
        ("developers-read-orders",),
    ),
    ("dev-list", who("alice", ("developer",)), LIST, {}, True, Reason.ALLOWED, ("developers-read-orders",)),
    (
        "dev-list-args",
        who("alice", ("developer",)),
        LIST,
        {"status": "pending", "limit": 5},
        True,
        Reason.ALLOWED,
        ("developers-read-orders",),
    ),
    ("dev-update", who("alice", ("developer",)), UPDATE, VALID_ARGS[UPDATE], False, Reason.POLICY_DENIED, ()),
    ("dev-query", who("alice", ("developer",), DB_TRAITS), QUERY, VALID_ARGS[QUERY], False, Reason.POLICY_DENIED, ()),
    (
        "admin-update",
        who("olga", ("order-admin",)),
        UPDATE,
        {"order_id": "42", "status": "shipped"},
        True,
        Reason.ALLOWED,
        ("order-admins-manage-orders",),
    ),
    (
        "admin-get",
        who("olga", ("order-admin",)),
        GET,
        {"order_id": "42"},
        True,
        Reason.ALLOWED,
        ("order-admins-manage-orders",),
    ),
    (
        "admin-update-unknown-status",
        who("olga", ("order-admin",)),
        UPDATE,
        {"order_id": "42", "status": "lost"},
        False,
        Reason.POLICY_DENIED,
        ("order-status-must-be-known",),
    ),
    (
        "admin-update-status-case",
        who("olga", ("order-admin",)),
        UPDATE,
        {"order_id": "42", "status": "Shipped"},
        False,
        Reason.POLICY_DENIED,
        ("order-status-must-be-known",),
    ),
    ("admin-query", who("olga", ("order-admin",)), QUERY, VALID_ARGS[QUERY], False, Reason.POLICY_DENIED, ()),
    (
        "both-roles",
        who("olga", ("developer", "order-admin")),
        GET,
        {"order_id": "1"},
        True,
        Reason.ALLOWED,
        ("developers-read-orders", "order-admins-manage-orders"),
    ),
    (
        "db-own",
        who("dana", ("db-reader",), DB_TRAITS),
        QUERY,
        {"database": "hr", "query": "select 1"},
        True,
        Reason.ALLOWED,
        ("db-readers-own-databases",),
    ),
    (
        "db-other",
        who("dana", ("db-reader",), DB_TRAITS),
        QUERY,
        {"database": "billing", "query": "select 1"},
        False,
        Reason.POLICY_DENIED,
        (),
    ),
    (
        "db-prefix-is-not-membership",
        who("dana", ("db-reader",), DB_TRAITS),
        QUERY,
        {"database": "sale", "query": "select 1"},
        False,
        Reason.POLICY_DENIED,
        (),
    ),
    ("db-no-trait", who("dana", ("db-reader",)), QUERY, VALID_ARGS[QUERY], False, Reason.POLICY_DENIED, ()),
    (
        "db-empty-trait",
        who("dana", ("db-reader",), {"db_names": ()}),
        QUERY,
        VALID_ARGS[QUERY],
        False,
        Reason.POLICY_DENIED,
        (),
    ),
    (
        "db-other-trait",
        who("dana", ("db-reader",), {"logins": ("sales",)}),
        QUERY,
        VALID_ARGS[QUERY],
        False,
        Reason.POLICY_DENIED,
        (),
    ),
    (
        "bot-admin-update",
        who("bot-ci", ("order-admin",)),
        UPDATE,
        {"order_id": "42", "status": "shipped"},
        False,
        Reason.POLICY_DENIED,
        ("no-destructive-tools-for-bots",),
    ),
    (
        "bot-admin-get",
        who("bot-ci", ("order-admin",)),
        GET,
        {"order_id": "42"},
        True,
        Reason.ALLOWED,
        ("order-admins-manage-orders",),
    ),
    (
        "bot-db-reader",
        who("bot-ci", ("db-reader",), DB_TRAITS),
        QUERY,
        VALID_ARGS[QUERY],
        False,
        Reason.POLICY_DENIED,
        ("no-destructive-tools-for-bots",),
    ),
    (
        "bot-reporter-list",
        who("bot-reporter", ("bot-reporter",)),
        LIST,
        {},
        True,
        Reason.ALLOWED,
        ("reporter-bot-lists-orders",),
    ),
    (
        "bot-reporter-get",
        who("bot-reporter", ("bot-reporter",)),
        GET,
        {"order_id": "1"},
        False,
        Reason.POLICY_DENIED,
        (),
    ),
    (
        "human-named-like-bot",
        who("botany", ("order-admin",)),
        UPDATE,
        {"order_id": "42", "status": "shipped"},
        True,
        Reason.ALLOWED,
        ("order-admins-manage-orders",),
    ),
]


@pytest.mark.parametrize(
    ("identity", "tool", "arguments", "allowed", "reason", "ids"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_example_policy_decisions(
    engine: PolicyEngine,
    identity: Identity,
    tool: str,
    arguments: dict[str, Any],
    allowed: bool,
    reason: Reason,
    ids: tuple[str, ...],
) -> None:
    decision = engine.authorize(identity, tool, arguments)
    assert decision.allowed is allowed
    assert decision.reason is reason
    assert sorted(decision.policy_ids) == sorted(ids)
    assert decision.errors == ()


def test_determining_policy_ids_are_the_authors_ids(engine: PolicyEngine) -> None:
    known = annotated_ids()
    assert known == {
        "developers-read-orders",
        "order-admins-manage-orders",
        "order-status-must-be-known",
        "db-readers-own-databases",
        "reporter-bot-lists-orders",
        "no-destructive-tools-for-bots",
    }
    seen = set()
    for _, identity, tool, arguments, _, _, _ in CASES:
        seen.update(engine.authorize(identity, tool, arguments).policy_ids)
    assert seen == known  # every policy was exercised and reported by its @id


@pytest.mark.parametrize("roles", [(), ("",), ("nobody",), ("Developer",), ("developers",)], ids=repr)
@pytest.mark.parametrize("tool", sorted(ALL_TOOLS))
def test_default_deny_without_a_matching_role(engine: PolicyEngine, roles: tuple[str, ...], tool: str) -> None:
    decision = engine.authorize(who("nora", roles, DB_TRAITS), tool, VALID_ARGS[tool])
    assert not decision.allowed
    assert decision.reason is Reason.POLICY_DENIED
    assert decision.policy_ids == ()


def test_tools_are_exactly_the_schema_tool_actions(engine: PolicyEngine) -> None:
    assert engine.tools == ALL_TOOLS
    assert "orders" not in engine.tools
    assert "db" not in engine.tools
    assert engine.files == ("bots.cedar", "db.cedar", "orders.cedar")


@pytest.mark.parametrize(
    "tool",
    ["orders", "db", "orders___delete_order", "ORDERS___GET_ORDER_TOOL", "orders___get_order_tool ", "", "Action"],
)
def test_unknown_tool_is_denied_with_its_own_reason(engine: PolicyEngine, tool: str) -> None:
    decision = engine.authorize(who("olga", ("order-admin", "developer")), tool, {"order_id": "42"})
    assert decision.allowed is False
    assert decision.reason is Reason.TOOL_UNKNOWN
    assert decision.policy_ids == ()


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (GET, {"order_id": 42}),
        (GET, {}),
        (GET, {"order_id": "42", "extra": "x"}),
        (GET, {"order_id": None}),
        (GET, {"order_id": ["42"]}),
        (LIST, {"limit": "5"}),
        (LIST, {"limit": 1.5}),
        (LIST, {"limit": 2**70}),
        (GET, {"order_id": 2**70}),  # an integer orjson cannot write, where the schema says String
        (GET, {"order_id": "\ud800"}),  # a lone surrogate (no JSON body holds one; a Python caller might)
        (GET, {"order_id": "42", 5: "x"}),  # a key that is no string
        (UPDATE, {"order_id": "42", "status": {"__entity": {"type": "Teleport::Role", "id": "x"}}}),
        (GET, {"order_id": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}),
    ],
    ids=repr,
)
def test_arguments_not_matching_the_schema_are_denied(
    engine: PolicyEngine, tool: str, arguments: dict[str, Any]
) -> None:
    # order-admin would be allowed every orders tool with valid arguments
    decision = engine.authorize(who("olga", ("order-admin", "developer")), tool, arguments)
    assert decision.allowed is False
    assert decision.reason is Reason.POLICY_ERROR
    assert decision.errors


@pytest.fixture(scope="module")
def whole_set() -> tuple[cedarpy.PolicySet, cedarpy.Schema]:
    source = PolicySource.read(REPO_POLICIES)
    return cedarpy.PolicySet.from_str("\n".join(source.files.values())), parse_schema(source)


def cedar_request(identity: Identity, tool: str, context: Any) -> dict[str, Any]:
    return {
        "principal": {"type": "Teleport::User", "id": identity.user},
        "action": {"type": "Teleport::Action", "id": tool},
        "resource": GATEWAY,
        "context": context,
    }


def entities_of(identity: Identity, schema: cedarpy.Schema) -> cedarpy.Entities:
    uids = [{"uid": GATEWAY, "attrs": {}, "parents": []}, *principal_entities(identity)]
    return cedarpy.Entities.from_json_str(json.dumps(uids), schema)


@pytest.mark.parametrize(
    ("roles", "tool", "arguments"),
    [
        (("developer",), GET, {"order_id": "42"}),  # allowed
        ((), GET, {"order_id": "42"}),  # default deny
        (("order-admin",), UPDATE, {"order_id": "42", "status": "bogus"}),  # a forbid denies
        (("order-admin",), UPDATE, {"order_id": "42", "status": "shipped"}),
        (("developer",), LIST, {"limit": 5, "status": "zoë 🚀"}),
        (("developer",), LIST, {"status": float("nan")}),  # orjson writes null, json NaN: Cedar refuses both
        (("developer",), GET, {"order_id": 42}),  # mistyped
        (("developer",), GET, {"order_id": 2**70}),  # orjson cannot write it: json.dumps does, as the wrapper
        (("developer",), GET, {"order_id": "\ud800"}),  # a lone surrogate (no JSON body holds one)
        (("developer",), GET, {"order_id": "42", 5: "x"}),  # a key that is no string
    ],
    ids=repr,
)
def test_cedar_answers_as_through_its_public_wrapper(
    whole_set: tuple[cedarpy.PolicySet, cedarpy.Schema], roles: tuple[str, ...], tool: str, arguments: dict[Any, Any]
) -> None:
    """The engine calls the extension under `cedarpy.is_authorized` itself (`decide`, with `context_text`): for
    JSON values, also those orjson cannot write, the decision, determining policies and kinds of error are the
    wrapper's, in a batch too (each request answered in its place)."""
    policies, schema = whole_set
    identity, stranger = who("olga", roles), who("sam")
    context = {"input": arguments}
    requests = [cedar_request(identity, tool, context), cedar_request(stranger, tool, context)]
    text = context_text(context)
    answers = decide(
        [{**request, "context": text} for request in requests], policies, entities_of(identity, schema), schema
    )
    expected = cedarpy.is_authorized_batch(requests, policies, entities_of(identity, schema), schema)
    assert len(answers) == len(expected) == 2
    for answer, result in zip(answers, expected, strict=True):
        diagnostics = answer["diagnostics"]
        assert (answer["decision"], sorted(diagnostics.get("reason", [])), kinds(diagnostics["errors"])) == (
            result.decision.value,
            sorted(result.diagnostics.reasons),  # Cedar's own order varies from call to call
            kinds(result.diagnostics.errors),
        )


def test_a_context_neither_path_can_write_is_refused_by_both(
    whole_set: tuple[cedarpy.PolicySet, cedarpy.Schema],
) -> None:
    """A datetime (or a dataclass) is no JSON value: orjson is told to refuse it, so it reaches the wrapper's
    encoder, which refuses it as before; the handler would refuse the call (internal_error)."""
    policies, schema = whole_set
    context = {"input": {"order_id": datetime.datetime(2024, 1, 1)}}
    with pytest.raises(TypeError):
        context_text(context)
    with pytest.raises(TypeError):
        cedarpy.is_authorized(
            cedar_request(who("olga"), GET, context), policies, entities_of(who("olga"), schema), schema
        )


def kinds(errors: list[str]) -> list[str]:
    """What kind each error is, as the engine reports it (`_describe_error`): a NaN fails to build the request
    either way, though orjson writes it as null and the json module as NaN, so Cedar's detail differs."""
    return [error.split(":")[0] for error in errors]


@pytest.mark.parametrize(
    "name",
    [
        'alice"',
        'alice" in Teleport::Role::"order-admin',
        'alice", "id": "admin',
        "alice\nbob",
        "alice\\",
        "zoë",
        "用户",
        "🚀 rocket",
        "a\u0000b",
        "",
    ],
    ids=repr,
)
def test_principal_ids_are_never_concatenated(engine: PolicyEngine, name: str) -> None:
    reader = engine.authorize(who(name, ("developer",)), GET, {"order_id": "42"})
    assert reader.allowed is True
    writer = engine.authorize(who(name, ("developer",)), UPDATE, VALID_ARGS[UPDATE])
    assert writer.allowed is False
    assert writer.reason is Reason.POLICY_DENIED


def test_principal_entities_are_built_as_dicts() -> None:
    name = 'eve" in Teleport::Role::"order-admin'
    entities = principal_entities(who(name, ("developer", 'r"x'), {"logins": ("root", "eve"), "db_names": ()}))
    user, *roles = entities
    assert user == {
        "uid": {"type": "Teleport::User", "id": name},
        "attrs": {"name": name, "bot": False},
        "parents": [{"type": "Teleport::Role", "id": "developer"}, {"type": "Teleport::Role", "id": 'r"x'}],
        "tags": {"logins": ["root", "eve"], "db_names": []},
    }
    assert roles == [
        {"uid": {"type": "Teleport::Role", "id": "developer"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Teleport::Role", "id": 'r"x'}, "attrs": {}, "parents": []},
    ]
    assert principal_entities(who("bot-x"))[0]["attrs"]["bot"] is True
    assert GATEWAY == {"type": "Teleport::Gateway", "id": "agentcore"}


def test_policies_match_unicode_and_quoted_principal_ids_exactly(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path,
        {
            "people.cedar": '@id("zoe-reads") permit (principal == Teleport::User::"zo\\u{eb} \\"q\\"\\n", '
            'action == Teleport::Action::"orders___get_order_tool", resource);'
        },
    )
    engine = PolicyEngine.load(folder)
    allowed = engine.authorize(who('zoë "q"\n'), GET, {"order_id": "1"})
    assert allowed.allowed
    assert allowed.policy_ids == ("zoe-reads",)
    for other in ['zoë "q"', 'zoe "q"\n', "zoë \\q\\\n"]:
        assert not engine.authorize(who(other), GET, {"order_id": "1"}).allowed


def test_forbid_wins_over_any_permit(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path,
        {
            "a.cedar": '@id("everyone-everything") permit (principal, action, resource);',
            "b.cedar": '@id("nobody-updates") forbid (principal, action == Teleport::Action::"orders___update_order", '
            "resource);",
        },
    )
    engine = PolicyEngine.load(folder)
    decision = engine.authorize(who("olga", ("order-admin",)), UPDATE, VALID_ARGS[UPDATE])
    assert decision.allowed is False
    assert decision.reason is Reason.POLICY_DENIED
    assert decision.policy_ids == ("nobody-updates",)
    other = engine.authorize(who("olga", ("order-admin",)), GET, VALID_ARGS[GET])
    assert other.allowed
    assert other.policy_ids == ("everyone-everything",)


def test_a_forbid_that_errors_at_runtime_denies(tmp_path: Path) -> None:
    # integer overflow is a runtime error strict validation cannot rule out: Cedar skips the erroring forbid
    # and would Allow; the engine must refuse instead
    folder = policy_folder(
        tmp_path,
        {
            "a.cedar": '@id("devs-list") permit (principal in Teleport::Role::"developer", '
            'action == Teleport::Action::"orders___list_my_orders", resource);\n'
            '@id("limit-cap") forbid (principal, action == Teleport::Action::"orders___list_my_orders", resource) '
            "when { context.input has limit && context.input.limit + 1 > 100 };",
        },
    )
    engine = PolicyEngine.load(folder)
    assert engine.authorize(who("alice", ("developer",)), LIST, {"limit": 5}).allowed
    capped = engine.authorize(who("alice", ("developer",)), LIST, {"limit": 500})
    assert not capped.allowed
    assert capped.policy_ids == ("limit-cap",)
    overflow = engine.authorize(who("alice", ("developer",)), LIST, {"limit": 2**63 - 1})
    assert overflow.allowed is False
    assert overflow.reason is Reason.POLICY_ERROR
    assert overflow.errors


def test_traits_are_set_tags_and_bot_is_an_attribute(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path,
        {
            "a.cedar": '@id("root-login-humans") permit (principal, '
            'action == Teleport::Action::"orders___get_order_tool", resource) '
            'when { principal.hasTag("logins") && principal.getTag("logins").contains("root") '
            "&& !principal.bot && principal.name == context.input.order_id };",
        },
    )
    engine = PolicyEngine.load(folder)
    assert engine.authorize(who("ann", (), {"logins": ("ubuntu", "root")}), GET, {"order_id": "ann"}).allowed
    assert not engine.authorize(who("ann", (), {"logins": ("ubuntu",)}), GET, {"order_id": "ann"}).allowed
    assert not engine.authorize(who("ann", (), {"logins": ("root",)}), GET, {"order_id": "bob"}).allowed
    assert not engine.authorize(who("bot-ann", (), {"logins": ("root",)}), GET, {"order_id": "bot-ann"}).allowed
    assert not engine.authorize(who("ann", ()), GET, {"order_id": "ann"}).allowed


def test_action_groups_cover_every_tool_of_a_target(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path,
        {"a.cedar": '@id("db-all") permit (principal, action in Teleport::Action::"db", resource);'},
    )
    engine = PolicyEngine.load(folder)
    assert engine.authorize(who("x"), QUERY, VALID_ARGS[QUERY]).allowed
    assert not engine.authorize(who("x"), GET, VALID_ARGS[GET]).allowed


def test_policies_without_id_are_named_by_file_and_position(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path,
        {
            "open.cedar": 'permit (principal, action == Teleport::Action::"db___run_query", resource);\n'
            'permit (principal, action == Teleport::Action::"orders___get_order_tool", resource);',
        },
    )
    engine = PolicyEngine.load(folder)
    assert engine.authorize(who("x"), QUERY, VALID_ARGS[QUERY]).policy_ids == ("open.cedar#0",)
    assert engine.authorize(who("x"), GET, VALID_ARGS[GET]).policy_ids == ("open.cedar#1",)


def test_tool_detection_with_several_groups_and_quoted_names(tmp_path: Path) -> None:
    schema = (REPO_POLICIES / "schema.cedarschema").read_text(encoding="utf-8")
    schema = schema.replace(
        'action "db";',
        'action "db";\n  action "admin";\n'
        '  action "ops___say \\"hi\\"" in [Action::"db", Action::"admin"] appliesTo {\n'
        "    principal: [User], resource: [Gateway], context: { input: { text: String } },\n  };",
    )
    folder = policy_folder(
        tmp_path,
        {"a.cedar": '@id("admins") permit (principal, action in Teleport::Action::"admin", resource);'},
        schema,
    )
    engine = PolicyEngine.load(folder)
    assert engine.tools == ALL_TOOLS | {'ops___say "hi"'}
    assert engine.authorize(who("x"), 'ops___say "hi"', {"text": "t"}).allowed
    assert engine.authorize(who("x"), "admin", {}).reason is Reason.TOOL_UNKNOWN


def test_empty_policy_folder_denies_everything(tmp_path: Path) -> None:
    engine = PolicyEngine.load(policy_folder(tmp_path, {}))
    assert engine.tools == ALL_TOOLS
    for tool in ALL_TOOLS:
        decision = engine.authorize(who("olga", ("order-admin", "developer", "db-reader"), DB_TRAITS), tool, {})
        assert not decision.allowed


# ---------------------------------------------------------------------------------------------------------------
# Invalid policy sets


INVALID: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "unknown-tool",
        lambda d: (d / "x.cedar").write_text(
            '@id("x") permit (principal, action == Teleport::Action::"orders___delete_order", resource);'
        ),
        "x.cedar",
    ),
    (
        "unknown-input-attribute",
        lambda d: (d / "x.cedar").write_text(
            '@id("x") permit (principal, action == Teleport::Action::"orders___get_order_tool", resource) '
            'when { context.input.customer == "c" };'
        ),
        "x.cedar",
    ),
    (
        "unknown-principal-attribute",
        lambda d: (d / "x.cedar").write_text(
            '@id("x") permit (principal, action, resource) when { principal.email == "e" };'
        ),
        "x.cedar",
    ),
    (
        "unknown-entity-type",
        lambda d: (d / "x.cedar").write_text('@id("x") permit (principal in Teleport::Group::"g", action, resource);'),
        "x.cedar",
    ),
    (
        "type-error",
        lambda d: (d / "x.cedar").write_text(
            '@id("x") permit (principal, action, resource) when { principal.bot == "yes" };'
        ),
        "x.cedar",
    ),
    ("syntax-error", lambda d: (d / "x.cedar").write_text("permit (principal action, resource"), "x.cedar"),
    (
        "duplicate-id-across-files",
        lambda d: (d / "x.cedar").write_text(
            '@id("developers-read-orders") permit (principal, action == Teleport::Action::"db___run_query", resource);'
        ),
        "developers-read-orders",
    ),
    (
        "duplicate-id-in-file",
        lambda d: (d / "x.cedar").write_text(
            '@id("twice") permit (principal, action == Teleport::Action::"db___run_query", resource);\n'
            '@id("twice") forbid (principal, action == Teleport::Action::"db___run_query", resource);'
        ),
        "twice",
    ),
    ("schema-missing", lambda d: (d / "schema.cedarschema").unlink(), "schema"),
    ("schema-syntax-error", lambda d: (d / "schema.cedarschema").write_text("namespace Teleport { entity ;"), "schema"),
    (
        "breaking-schema-change",
        lambda d: (d / "schema.cedarschema").write_text(
            (d / "schema.cedarschema").read_text().replace("database: String,", "db: String,")
        ),
        "db.cedar",
    ),
]


@pytest.mark.parametrize(("mutate", "where"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_policy_set_is_refused_at_load(tmp_path: Path, mutate: Callable[[Path], None], where: str) -> None:
    folder = repo_copy(tmp_path)
    mutate(folder)
    with pytest.raises(PolicySetInvalid) as info:
        PolicyEngine.load(folder)
    assert info.value.problems
    assert any(where in p for p in info.value.problems), info.value.problems


def _requests(issuer: Issuer) -> list[dict[str, Any]]:
    token = issuer.mint(user="alice", roles=["developer"])
    return [
        request_event(tool_call(GET, {"order_id": "42"}, rpc_id="c-1"), token),
        request_event(rpc("tools/list", rpc_id=2), token),
        request_event(rpc("ping", rpc_id=3), token),
        request_event(notification(), token),
    ]


@pytest.mark.parametrize(("mutate", "where"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_policy_set_refuses_every_request(
    tmp_path: Path,
    mutate: Callable[[Path], None],
    where: str,
    issuer: Issuer,
    make_interceptor: Callable[..., Any],
    audit_lines: Callable[[], list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = repo_copy(tmp_path)
    mutate(folder)
    interceptor = make_interceptor(POLICY_DIR=str(folder))
    logged = [r for r in caplog.records if r.getMessage().startswith("policy set invalid")]
    assert len(logged) == 1
    assert any(where in p for p in logged[0].__dict__["problems"])

    for event in _requests(issuer):
        out = interceptor.handle(event)
        assert out["interceptorOutputVersion"] == "1.0"
        assert set(out["mcp"]) == {"transformedGatewayResponse"}
        response = out["mcp"]["transformedGatewayResponse"]
        assert response["statusCode"] == 500
        assert response["body"]["id"] == event["mcp"]["gatewayRequest"]["body"].get("id")
        message = response["body"]["error"]["message"]
        assert "policy set invalid" in message
        assert "reason: policy_set_invalid" in message
        assert str(folder) not in json.dumps(out)
    records = audit_lines()
    assert [r["reason"] for r in records] == ["policy_set_invalid"] * 4
    assert not any(r["forwarded"] for r in records)


@pytest.mark.parametrize("kind", ["not-utf8", "directory"])
def test_unreadable_policy_file_refuses_every_request(
    tmp_path: Path, kind: str, issuer: Issuer, make_interceptor: Callable[..., Any]
) -> None:
    folder = repo_copy(tmp_path)
    if kind == "not-utf8":
        (folder / "latin1.cedar").write_bytes("// caf\xe9\npermit (principal, action, resource);".encode("latin-1"))
    else:
        (folder / "nested.cedar").mkdir()
    interceptor = make_interceptor(POLICY_DIR=str(folder))
    out = interceptor.handle(request_event(rpc("tools/list"), issuer.mint()))
    assert out["mcp"]["transformedGatewayResponse"]["statusCode"] == 500
    assert "policy set invalid" in out["mcp"]["transformedGatewayResponse"]["body"]["error"]["message"]


def test_valid_custom_policy_dir_is_used(
    tmp_path: Path, issuer: Issuer, make_interceptor: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    folder = policy_folder(
        tmp_path,
        {"only.cedar": '@id("only-db") permit (principal, action == Teleport::Action::"db___run_query", resource);'},
    )
    interceptor = make_interceptor(POLICY_DIR=str(folder))
    token = issuer.mint(user="alice", roles=["developer"])
    denied = interceptor.handle(request_event(tool_call(GET, {"order_id": "42"}), token))
    assert denied["mcp"]["transformedGatewayResponse"]["body"]["result"]["isError"] is True
    allowed = interceptor.handle(request_event(tool_call(QUERY, VALID_ARGS[QUERY]), token))
    assert "transformedGatewayRequest" in allowed["mcp"]


def test_forbid_on_an_outer_group_reaches_tools_of_nested_groups(tmp_path: Path) -> None:
    """Which policies apply to a tool is asked of Cedar (nested action groups included), not parsed from text."""
    (tmp_path / "schema.cedarschema").write_text(
        """namespace Teleport {
  entity Role; entity User in [Role] = { name: String, bot: Bool } tags Set<String>; entity Gateway;
  action "everything";
  action "orders" in [Action::"everything"];
  action "orders___get" in [Action::"orders"] appliesTo {
    principal: [User], resource: [Gateway], context: { input: {} } };
}"""
    )
    (tmp_path / "p.cedar").write_text(
        '@id("all") permit (principal, action == Teleport::Action::"orders___get", resource);\n'
        '@id("nothing-for-bots") forbid (principal, action in Teleport::Action::"everything", resource) '
        "when { principal.bot };\n"
    )
    engine = PolicyEngine.load(tmp_path)
    assert engine.tools == {"orders___get"}
    assert engine.authorize(Identity("alice", (), {}, "iss", 0), "orders___get", {}).allowed
    bot = engine.authorize(Identity("bot-x", (), {}, "iss", 0), "orders___get", {})
    assert not bot.allowed and bot.policy_ids == ("nothing-for-bots",)


@pytest.mark.parametrize("name", ["_teleport_user", "_TELEPORT_x", "_Teleport_Roles"])
def test_a_schema_that_types_a_reserved_argument_is_refused(tmp_path: Path, name: str) -> None:
    # no policy can be written to read what only the interceptor sets (and the engine does not strip it again)
    folder = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, folder, ignore=shutil.ignore_patterns("tests", "*.bundle.json"))
    schema = (folder / "schema.cedarschema").read_text(encoding="utf-8")
    typed = schema.replace("      limit?: Long,\n", f'      limit?: Long,\n      "{name}"?: String,\n')
    assert typed != schema
    (folder / "schema.cedarschema").write_text(typed, encoding="utf-8")
    with pytest.raises(PolicySetInvalid) as raised:
        PolicyEngine.load(folder)
    assert raised.value.problems == [
        f"schema: tool 'orders___list_my_orders' declares argument {name!r}: names under '_teleport_' belong to the "
        "interceptor"
    ]


def test_a_reserved_name_that_reaches_the_engine_fails_closed() -> None:
    # Reserved names are stripped where arguments enter (the pipeline's split_reserved, the toolkit): the engine
    # does not strip them again. One that reaches it anyway is an argument the schema does not declare, so the call
    # is refused, never decided with or without it; stripped, the same call is allowed.
    engine = PolicyEngine.load(REPO_POLICIES)
    alice = Identity("alice", ("developer",), {}, "iss", 0)
    sent = {"order_id": "1", "_Teleport_x": 1}
    refused = engine.authorize(alice, "orders___get_order_tool", sent)
    assert (refused.allowed, refused.reason) == (False, Reason.POLICY_ERROR)
    assert engine.authorize(alice, "orders___get_order_tool", tool_arguments(sent)).allowed


# ---------------------------------------------------------------------------------------------------------------
# The compiled set's indexes


NESTED_SCHEMA = """namespace Teleport {
  entity Role; entity User in [Role] = { name: String, bot: Bool } tags Set<String>; entity Gateway;
  action "everything";
  action "orders" in [Action::"everything"];
  action "orders___get" in [Action::"orders"] appliesTo {
    principal: [User], resource: [Gateway], context: { input: {} } };
  action "orders___get_v2" in [Action::"orders___get", Teleport::Action::"extra"] appliesTo {
    principal: [User], resource: [Gateway], context: { input: {} } };
  action "extra";
  action "db___query" appliesTo { principal: [User], resource: [Gateway], context: { input: {} } };
}"""


def test_the_action_index_follows_cedars_action_hierarchy(tmp_path: Path) -> None:
    """A policy on a group reaches its members transitively (a tool may group tools too); `==` names one action."""
    folder = policy_folder(
        tmp_path,
        {
            "p.cedar": '@id("outer") forbid (principal, action in Teleport::Action::"everything", resource);\n'
            '@id("get-and-below") permit (principal, action in Teleport::Action::"orders___get", resource);\n'
            '@id("listed") permit (principal, action in [Teleport::Action::"extra", Teleport::Action::"db___query"],'
            " resource);\n"
            '@id("only-get") permit (principal, action == Teleport::Action::"orders___get", resource);\n'
            '@id("all") permit (principal, action, resource);',
        },
        NESTED_SCHEMA,
    )
    engine = PolicyEngine.load(folder)
    assert {p.id: p.tools for p in engine.compiled.policies} == {
        "outer": ("orders___get", "orders___get_v2"),
        "get-and-below": ("orders___get", "orders___get_v2"),
        "listed": ("db___query", "orders___get_v2"),
        "only-get": ("orders___get",),
        "all": None,
    }
    assert engine.authorize(who("x"), "db___query", {}).policy_ids == ("all", "listed")
    assert engine.authorize(who("x"), "orders___get_v2", {}).policy_ids == ("outer",)


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        ("principal", None),
        ('principal in Teleport::Role::"r"', ("role", "r")),
        ('principal is Teleport::User in Teleport::Role::"r"', ("role", "r")),
        ('principal == Teleport::User::"u"', ("user", "u")),
        ('principal in Teleport::User::"u"', ("user", "u")),
        ("principal is Teleport::User", None),
    ],
)
def test_the_principal_index_names_the_only_callers_a_scope_can_match(
    tmp_path: Path, scope: str, key: tuple[str, str] | None
) -> None:
    folder = policy_folder(tmp_path, {"p.cedar": f'@id("p") permit ({scope}, action, resource);'})
    [compiled] = PolicyEngine.load(folder).compiled.policies
    assert compiled.principal == key


def test_errors_and_determining_policies_are_named_by_their_ids(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path,
        {
            "a.cedar": '@id("zz-everyone") permit (principal, action, resource);\n'
            '@id("aa-devs") permit (principal in Teleport::Role::"developer", action, resource);\n'
            '@id("limit-overflows") forbid (principal, action == Teleport::Action::"orders___list_my_orders", '
            "resource) when { context.input has limit && context.input.limit + 1 > 100 };",
        },
    )
    engine = PolicyEngine.load(folder)
    assert engine.authorize(who("a", ("developer",)), GET, VALID_ARGS[GET]).policy_ids == ("aa-devs", "zz-everyone")
    overflow = engine.authorize(who("a"), LIST, {"limit": 2**63 - 1})
    assert overflow.reason is Reason.POLICY_ERROR
    assert overflow.errors == ("policy limit-overflows failed to evaluate",)


@pytest.mark.parametrize(("tools", "callers"), [(4, 256), (500, 256), (1_000, 256), (5_000, 100), (100_000, 16)])
def test_caller_caches_shrink_as_each_caller_copies_more_actions(tools: int, callers: int) -> None:
    # each cached caller copies every tool's action entity (~0.75 MB at 5,000 tools): the caches stay bounded
    assert caller_cache_size(tools) == callers
