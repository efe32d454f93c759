"""Generated gateways of 1,000 policies (benchmarks/generate.py: the README's Cedar model, plus forms the generator
does not write): each tool's slice of the action index decides every call exactly as Cedar does over the whole
set, the tool lister equals one partial evaluation per tool, and a built bundle holds the same compiled set."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from benchmarks.generate import definitions, generate
from interceptor.listing import ToolLister, could_allow
from interceptor.policy import GATEWAY, PolicyEngine, PolicySource, compile_policies, parse_schema, principal_entities
from interceptor.tokens import Identity
from policy_toolkit.cli import main

POLICIES = 1000
TOOLS = 100  # strict validation costs policies x tools: enough tools for four targets, small enough for seconds


def extra_policies(tools: list[str]) -> str:
    """Scopes and conditions the generator never writes: user principals, `is ... in`, `in User`, a condition on
    the action, a forbid on every tool, a runtime error for bots of one role."""
    first, second = tools[0], tools[1]
    return f"""
@id("x-user") permit (principal == Teleport::User::"u7", action in Teleport::Action::"target00", resource);
@id("x-is-in") permit (principal is Teleport::User in Teleport::Role::"r3", action == Teleport::Action::"{second}",
  resource) when {{ principal.hasTag("team") }};
@id("x-no-target02-for-carol") forbid (principal == Teleport::User::"carol", action in Teleport::Action::"target02",
  resource);
@id("x-in-user") forbid (principal in Teleport::User::"alice", action == Teleport::Action::"{first}", resource)
  when {{ context.input has limit && context.input.limit > 50 }};
@id("x-reads-action") permit (principal in Teleport::Role::"r5", action in Teleport::Action::"target01", resource)
  when {{ action != Teleport::Action::"{tools[30]}" }};
@id("x-everywhere") forbid (principal, action, resource)
  when {{ principal.hasTag("team") && principal.getTag("team").contains("team13") }};
@id("x-overflow") permit (principal in Teleport::Role::"r7", action == Teleport::Action::"{tools[3]}", resource)
  when {{ 9223372036854775807 + (if principal.bot then 1 else 0) > 0 }};
"""


class Gateway:
    """One generated policy folder, its engine (loaded from a built bundle), shapes and the whole set for Cedar."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.tools = generate(folder, POLICIES, TOOLS, seed)
        (folder / "extra.cedar").write_text(extra_policies(self.tools), encoding="utf-8")
        self.shapes = {
            f"{target}___{d['name']}": d["inputSchema"] for target, ds in definitions(TOOLS).items() for d in ds
        }
        assert main(["build", str(folder)]) == 0
        self.engine = PolicyEngine.load(folder)
        source = PolicySource.read(folder)
        self.schema = parse_schema(source)
        text = "\n".join(source.files.values())
        whole = json.loads(cedarpy.policies_to_json_str(text))
        whole["staticPolicies"] = {p["annotations"]["id"]: p for p in whole["staticPolicies"].values()}
        self.whole = cedarpy.PolicySet.from_json_str(json.dumps(whole))
        self.source = source


@pytest.fixture(scope="module", params=[0, 1], ids=lambda seed: f"seed{seed}")
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return Gateway(tmp_path_factory.mktemp("gateway"), request.param)


def random_caller(rnd: random.Random) -> Identity:
    user = rnd.choice(["alice", "bot-ci", "u7", "carol"])
    roles = tuple(f"r{i}" for i in rnd.sample(range(50), rnd.randint(0, 12)))
    traits = {"team": tuple(f"team{i}" for i in rnd.sample(range(20), rnd.randint(0, 4)))} if rnd.random() < 0.7 else {}
    return Identity(user, roles, traits, "iss", 0)


def random_arguments(rnd: random.Random, shape: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool's input schema: required ones, optional ones half the time, now and then a wrong type."""
    values = {
        "id": lambda: f"x{rnd.randrange(3)}",
        "limit": lambda: rnd.randrange(120),
        "env": lambda: f"env{rnd.randrange(1, 100)}",
        "tags": lambda: [f"tag{rnd.randrange(1, 100)}" for _ in range(rnd.randint(0, 30))],
        "query": lambda: "select 1",
        "dry_run": lambda: rnd.random() < 0.5,
    }
    required = set(shape.get("required", []))
    arguments = {name: values[name]() for name in shape["properties"] if name in required or rnd.random() < 0.5}
    if rnd.random() < 0.05:
        arguments[next(iter(shape["properties"]))] = 1.5  # no Cedar type: the request cannot be built
    return arguments


def test_a_bundle_holds_the_set_compiled_at_init(gateway: Gateway) -> None:
    assert gateway.engine.bundle_status == "loaded"
    source = PolicySource(gateway.source.files, gateway.source.schema)
    assert gateway.engine.compiled == compile_policies(source, gateway.schema)
    assert len(gateway.engine.policy_ids) == POLICIES + 7


def test_each_tools_slice_decides_like_the_whole_set(gateway: Gateway) -> None:
    rnd = random.Random(7)
    outcomes: set[str] = set()
    for _ in range(400):
        identity, tool = random_caller(rnd), rnd.choice(gateway.tools)
        arguments = random_arguments(rnd, gateway.shapes[tool])
        decision = gateway.engine.authorize(identity, tool, arguments)
        request = {
            "principal": {"type": "Teleport::User", "id": identity.user},
            "action": {"type": "Teleport::Action", "id": tool},
            "resource": GATEWAY,
            "context": {"input": arguments},
        }
        entities = [*principal_entities(identity), {"uid": GATEWAY, "attrs": {}, "parents": []}]
        expected = cedarpy.is_authorized(request, gateway.whole, entities, gateway.schema)
        assert decision.allowed == (expected.allowed and not expected.diagnostics.errors), (identity, tool, arguments)
        assert sorted(decision.policy_ids) == sorted(expected.diagnostics.reasons), (identity, tool, arguments)
        assert len(decision.errors) == len(expected.diagnostics.errors), (identity, tool, arguments)
        outcomes.add(decision.reason.value)
    assert outcomes == {"allowed", "policy_denied", "policy_error"}, "the sample must exercise every outcome"


def test_the_lister_equals_one_partial_evaluation_per_tool(gateway: Gateway) -> None:
    lister = ToolLister(gateway.engine, "x")
    rnd = random.Random(11)
    sizes = set()
    for _ in range(12):
        caller = random_caller(rnd)
        reference = frozenset(t for t in gateway.tools if could_allow(gateway.engine.partially_evaluate(caller, t)))
        assert lister.visible(caller) == reference, caller
        sizes.add(len(reference))
    assert len(sizes) > 3, "callers must see different lists"


def test_a_tools_slice_evaluates_partially_like_the_whole_set(gateway: Gateway) -> None:
    """The reference above evaluates each tool's slice; Cedar over the whole set agrees tool by tool."""
    rnd = random.Random(13)
    for _ in range(4):
        caller = random_caller(rnd)
        for tool in rnd.sample(gateway.tools, 25):
            sliced = gateway.engine.partially_evaluate(caller, tool)
            whole = gateway.engine.partially_evaluate(caller, tool, gateway.whole)
            assert could_allow(sliced) == could_allow(whole), (caller, tool)
