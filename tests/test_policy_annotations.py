"""Tool annotations in policy: `teleport-policy schema` puts tools into the action groups their MCP annotations
imply (absent hints read conservatively), from saved listings and the template's Metadata; policies name the groups
instead of listing tools, and the action index and tool listing follow them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from interceptor.listing import ToolLister, could_allow
from interceptor.policy import ACTION_TYPE, PolicyEngine
from interceptor.tokens import Identity
from policy_toolkit.cli import main
from policy_toolkit.schema import ANNOTATION_GROUPS, annotation_groups, generate, render

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["destructive", "open_world"]


@pytest.mark.parametrize(
    ("annotations", "groups"),
    [
        (None, DEFAULT),
        ({}, DEFAULT),
        ({"title": "Say hi"}, DEFAULT),
        ({"readOnlyHint": False}, DEFAULT),
        ({"readOnlyHint": True}, ["open_world", "read_only"]),
        ({"readOnlyHint": True, "openWorldHint": False}, ["read_only"]),
        ({"readOnlyHint": True, "idempotentHint": True}, ["idempotent", "open_world", "read_only"]),
        ({"destructiveHint": False}, ["open_world"]),
        ({"destructiveHint": False, "openWorldHint": False}, []),
        ({"destructiveHint": True, "idempotentHint": True}, ["destructive", "idempotent", "open_world"]),
        # contradictory: both, so a forbid on either group applies
        ({"readOnlyHint": True, "destructiveHint": True}, ["destructive", "open_world", "read_only"]),
    ],
    ids=repr,
)
def test_annotations_map_to_groups_with_mcp_defaults(annotations: Any, groups: list[str]) -> None:
    assert annotation_groups({"name": "t", "annotations": annotations}) == groups


@pytest.mark.parametrize("annotations", [{"readOnlyHint": "yes"}, {"destructiveHint": 0}, ["readOnlyHint"]], ids=repr)
def test_malformed_annotations_are_refused(annotations: Any) -> None:
    with pytest.raises(ValueError, match="tool t: annotation"):
        annotation_groups({"name": "t", "annotations": annotations})


@pytest.mark.parametrize("target", sorted(ANNOTATION_GROUPS))
def test_a_target_named_like_a_group_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="annotation groups"):
        render({target: [{"name": "x"}]})


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    return tmp_path


def test_the_template_metadata_and_saved_listings_annotate_the_demo_tools(work: Path) -> None:
    text = generate(work / "template.yaml", work / "policies" / "tools")
    assert 'action "orders___get_order_tool" in [Action::"orders", Action::"read_only"] appliesTo' in text
    assert 'action "orders___list_my_orders" in [Action::"orders", Action::"read_only"] appliesTo' in text
    assert (
        'action "orders___update_order" in [Action::"orders", Action::"destructive", Action::"idempotent"] appliesTo'
        in text
    )
    # the saved listing declares nothing: destructive and open-world
    assert 'action "db___run_query" in [Action::"db", Action::"destructive", Action::"open_world"] appliesTo' in text

    listing_path = work / "policies" / "tools" / "db.json"
    listing = json.loads(listing_path.read_text(encoding="utf-8"))
    listing["result"]["tools"][0]["annotations"] = {"readOnlyHint": True, "openWorldHint": False}
    listing_path.write_text(json.dumps(listing), encoding="utf-8")
    text = generate(work / "template.yaml", work / "policies" / "tools")
    assert 'action "db___run_query" in [Action::"db", Action::"read_only"] appliesTo' in text


def test_template_annotations_for_a_tool_it_does_not_define_are_refused(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = work / "template.yaml"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("        list_my_orders: {", "        list_orders: {"), encoding="utf-8")
    code = main(["--dir", str(work / "policies"), "schema", "--template", str(template), "--check"])
    assert code == 2
    assert "Metadata.ToolAnnotations names no tool ['list_orders']" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# groups in the engine and the listing

TOOLS = {
    "shop": [
        {"name": "browse", "annotations": {"readOnlyHint": True, "openWorldHint": False}},
        {"name": "order", "annotations": {"destructiveHint": False, "idempotentHint": True}},
        {"name": "cancel", "annotations": {"destructiveHint": True}},
        {"name": "mystery"},
    ],
    "mail": [{"name": "send", "annotations": {"destructiveHint": False, "openWorldHint": True}}],
}
POLICIES = """
@id("staff-everything") permit (principal in Teleport::Role::"staff", action, resource);

@id("auditors-read-only") permit (principal in Teleport::Role::"auditor", action in Teleport::Action::"read_only",
  resource);

@id("retry-bots") permit (principal in Teleport::Role::"retrier", action in Teleport::Action::"idempotent", resource);

@id("no-destructive-tools-for-bots") forbid (principal, action in Teleport::Action::"destructive", resource)
when { principal.bot };

@id("closed-world-for-contractors") forbid (principal in Teleport::Role::"contractor",
  action in Teleport::Action::"open_world", resource);
"""
ALL = {"shop___browse", "shop___order", "shop___cancel", "shop___mystery", "mail___send"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> PolicyEngine:
    folder = tmp_path_factory.mktemp("annotated")
    (folder / "schema.cedarschema").write_text(render(TOOLS), encoding="utf-8")
    (folder / "p.cedar").write_text(POLICIES, encoding="utf-8")
    assert main(["build", str(folder)]) == 0
    loaded = PolicyEngine.load(folder)
    assert loaded.bundle_status == "loaded"
    return loaded


def test_groups_are_not_tools_and_the_index_follows_them(engine: PolicyEngine) -> None:
    assert engine.tools == ALL
    index = {policy.id: policy.tools for policy in engine.compiled.policies}
    assert index["auditors-read-only"] == ("shop___browse",)
    assert index["retry-bots"] == ("shop___order",)
    assert index["no-destructive-tools-for-bots"] == ("shop___cancel", "shop___mystery")
    assert index["closed-world-for-contractors"] == ("mail___send", "shop___cancel", "shop___mystery", "shop___order")
    refused = engine.authorize(Identity("alice", ("staff",), {}, "iss", 0), "destructive", {})
    assert refused.reason.value == "tool_unknown"


@pytest.mark.parametrize(
    ("user", "roles", "allowed"),
    [
        ("alice", ("staff",), ALL),
        ("bot-ci", ("staff",), ALL - {"shop___cancel", "shop___mystery"}),
        ("ann", ("auditor",), {"shop___browse"}),
        ("bot-retry", ("retrier",), {"shop___order"}),
        ("carl", ("staff", "contractor"), {"shop___browse"}),
    ],
)
def test_calls_and_lists_follow_the_groups(
    engine: PolicyEngine, user: str, roles: tuple[str, ...], allowed: set[str]
) -> None:
    identity = Identity(user, roles, {}, "iss", 0)
    assert {tool for tool in ALL if engine.authorize(identity, tool, {}).allowed} == allowed
    assert ToolLister(engine, "digest").visible(identity) == allowed
    assert {tool for tool in ALL if could_allow(engine.partially_evaluate(identity, tool))} == allowed


def test_the_demo_bot_forbid_names_the_group_not_the_tools() -> None:
    engine = PolicyEngine.load(ROOT / "policies")
    [forbid] = [p for p in engine.compiled.policies if p.id == "no-destructive-tools-for-bots"]
    assert f'{ACTION_TYPE}::"destructive"' in forbid.text
    assert forbid.tools == ("db___run_query", "orders___update_order")
