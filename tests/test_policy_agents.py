"""The policy toolkit and the Cedar model with agents (README "Agents", docs/policies.md): the generated schema's
Agent type and the agent gate's scope, test cases and `explain` with an agent, and the demo's agent policies
(devtools/agents/) run through `teleport-policy` next to the repository's own."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cedarpy
import pytest

from interceptor.agents import Agent
from interceptor.listing import ToolLister
from interceptor.policy import AGENT_TYPE, PolicyEngine, PolicySource, cedar_extension, compile_policies, parse_schema
from interceptor.reasons import Reason
from interceptor.tokens import Identity
from policy_toolkit import cases as tc
from policy_toolkit.cli import main
from policy_toolkit.schema import render

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "devtools" / "agents"
ORDERS = "spiffe://example.teleport.sh/agents/orders-assistant"
HR = "spiffe://example.teleport.sh/agents/hr-assistant"

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """The repository's policies and tests plus the demo's agent policies and agent test cases."""
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    (folder / "policies.bundle.json").unlink(missing_ok=True)
    shutil.copy(AGENTS / "agents.cedar", folder / "agents.cedar")
    shutil.copy(AGENTS / "agents.yaml", folder / "tests" / "agents.yaml")
    return folder


@pytest.fixture
def cli(policies: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--dir", str(policies), *argv])
        return code, capsys.readouterr().out

    return run


def agent(spiffe_id: str = ORDERS) -> Agent:
    return Agent(spiffe_id, "example.teleport.sh", spiffe_id.split("example.teleport.sh", 1)[1], "jti", 0)


def test_every_generated_tool_applies_to_users_and_agents() -> None:
    source = PolicySource.read(ROOT / "policies")
    compiled = compile_policies(source, parse_schema(source))
    assert compiled.callable == compiled.agent_callable == frozenset(compiled.tools)
    text = render({"t": [{"name": "x", "inputSchema": {"type": "object"}}]})
    assert "entity Agent = {" in text and "principal: [User, Agent]," in text and "agent?: Agent," in text


def test_the_agent_entity_validates_policies_written_for_users_and_for_agents() -> None:
    schema = (ROOT / "policies" / "schema.cedarschema").read_text(encoding="utf-8")
    for policy in (
        "forbid (principal, action, resource) when { principal.bot };",
        'forbid (principal, action, resource) when { principal.name like "remote-*" };',
        'permit (principal, action, resource) when { principal.hasTag("t") && principal.getTag("t").contains("x") };',
        'permit (principal is Teleport::Agent, action, resource) when { principal.trust_domain == "x" };',
        f'permit (principal == Teleport::Agent::"{ORDERS}", action, resource);',
        'permit (principal, action, resource) when { context has agent && context.agent.path like "/agents/*" };',
    ):
        result = cedarpy.validate_policies(policy, schema)
        assert result.validation_passed, (policy, [str(e) for e in result.errors])


def test_the_demo_agent_policies_are_formatted_and_valid(cli: Run, policies: Path) -> None:
    assert cli("format", "--check") == (0, "")
    code, out = cli("validate", "--strict")
    assert code == 0, out
    assert "8 policies in 4 files" in out


def test_agent_cases_expand_to_one_run_tests_case_per_gate(cli: Run, policies: Path) -> None:
    assert cli("expand")[0] == 0
    entries = json.loads((policies / "tests" / "agents.cedartests.json").read_text(encoding="utf-8"))
    assert (AGENTS / "agents.cedartests.json").read_text(encoding="utf-8") == json.dumps(
        entries, indent=2, sort_keys=True
    ) + "\n"
    names = [entry["name"] for entry in entries]
    assert names[:2] == [
        "the orders assistant reads an order for a developer [user gate]",
        "the orders assistant reads an order for a developer [agent gate]",
    ]
    for entry in entries:
        request = entry["request"]
        gate = "agent" if entry["name"].endswith("[agent gate]") else "user"
        assert request["principal"]["type"] == ("Teleport::Agent" if gate == "agent" else "Teleport::User")
        assert request["context"]["agent"]["__entity"]["type"] == AGENT_TYPE
        types = sorted(e["uid"]["type"] for e in entry["entities"])
        assert "Teleport::User" in types and "Teleport::Agent" in types


def test_agent_cases_pass_with_coverage(cli: Run) -> None:
    assert cli("expand")[0] == 0
    code, out = cli("test", "--coverage")
    assert code == 0, out
    assert "PASS agents.cedartests.json: the orders assistant may not update an order, even for an order admin" in out
    assert "coverage: 8/8 policies determine a decision" in out
    assert "27 passed, 0 failed" in out


def test_agent_run_tests_json_means_the_same_to_plain_cedar(cli: Run, policies: Path) -> None:
    assert cli("expand")[0] == 0
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(policies.glob("*.cedar")))
    as_json = json.loads(cedarpy.policies_to_json_str(text))
    as_json["staticPolicies"] = {p["annotations"]["id"]: p for p in as_json["staticPolicies"].values()}
    policy_set = cedarpy.PolicySet.from_json_str(json.dumps(as_json))
    schema = cedarpy.Schema.from_str((policies / "schema.cedarschema").read_text(encoding="utf-8"))
    for entry in json.loads((policies / "tests" / "agents.cedartests.json").read_text(encoding="utf-8")):
        result = cedarpy.is_authorized(entry["request"], policy_set, entry["entities"], schema)
        assert result.allowed == (entry["decision"] == "allow"), entry["name"]
        assert set(entry["reason"]) <= set(result.diagnostics.reasons), entry["name"]


def test_agent_cases_round_trip_through_run_tests_json(policies: Path) -> None:
    engine = PolicyEngine.load(policies)
    cases = tc.load_yaml(policies / "tests" / "agents.yaml")
    assert {case.gate for case in cases} == {"user", "agent"}
    for case in cases:
        back = tc.from_cedar(json.loads(json.dumps(case.to_cedar(engine.compiled.inputs))), case.source)
        assert back == case
        assert back.run(engine) == case.run(engine)


def test_a_wrong_gate_expectation_fails(cli: Run, policies: Path) -> None:
    path = policies / "tests" / "agents.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("expect: {user: allow, agent: deny}", "expect: {user: allow, agent: allow}", 1))
    assert cli("expand")[0] == 0
    code, out = cli("test")
    assert code == 1
    assert "FAIL agents.cedartests.json: the orders assistant may not update an order, even for an order admin " in out
    assert "got      deny (agent_denied) by ['no-destructive-tools-for-agents']" in out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("agent: alice\n  expect: allow", "agent must be a workload's SPIFFE ID"),
        (f"agent: {ORDERS}\n  expect: deny", "with an agent, expect must give each gate's"),
        (f"agent: {ORDERS}\n  expect: {{user: deny}}", "with an agent, expect must give each gate's"),
        (f"agent: {ORDERS}\n  expect: {{user: deny, agent: maybe}}", "expect must be allow or deny"),
        (f"agent: {ORDERS}\n  expect: allow\n  policies: [x]", "with an agent, policies must give each gate's"),
        ("expect: {user: allow, agent: allow}", "expect must be allow or deny"),
    ],
)
def test_malformed_agent_cases_are_usage_errors(cli: Run, policies: Path, case: str, message: str) -> None:
    (policies / "tests" / "broken.yaml").write_text(
        f"- name: broken\n  user: alice\n  tool: orders___get_order_tool\n  {case}\n", encoding="utf-8"
    )
    code, out = cli("expand")
    assert code == 2
    assert message in out


def test_explain_with_an_agent_shows_both_gates(cli: Run) -> None:
    base = ["explain", "--user", "carol", "--roles", "order-admin", "--tool", "orders___update_order"]
    arguments = ["--args", '{"order_id": "42", "status": "shipped"}']
    code, out = cli(*base, *arguments, "--agent", ORDERS)
    assert code == 0
    assert out.splitlines() == [
        f"user carol (roles ['order-admin'], bot False) through agent {ORDERS} -> orders___update_order",
        "decision: DENY (agent_denied)",
        "determining policies: ['no-destructive-tools-for-agents']",
        "  user gate: allow by ['order-admins-manage-orders']",
        "  agent gate: deny by ['no-destructive-tools-for-agents']",
    ]
    assert cli(*base, *arguments)[1].splitlines()[1] == "decision: ALLOW (allowed)"
    assert cli(*base, "--agent", "not-a-spiffe-id") == (
        2,
        "--agent must be a workload's SPIFFE ID (spiffe://<trust domain>/<path>)\n",
    )


def test_the_engine_decides_both_gates_in_one_batch(policies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = PolicyEngine.load(policies)
    carol = Identity("carol", ("order-admin",), {}, "iss", 0)
    batches: list[int] = []
    original = cedar_extension.is_authorized_batch

    def counting(requests: list[dict[str, object]], *args: object) -> object:
        batches.append(len(requests))
        return original(requests, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(cedar_extension, "is_authorized_batch", counting)
    decision = engine.authorize(carol, "orders___update_order", {"order_id": "42", "status": "shipped"}, agent())
    assert batches == [2]
    assert (decision.allowed, decision.reason) == (False, Reason.AGENT_DENIED)
    assert [(g.who, g.allowed) for g in decision.gates] == [("user", True), ("agent", False)]
    hr = engine.authorize(carol, "orders___get_order_tool", {"order_id": "42"}, agent(HR))
    assert (hr.reason, hr.policy_ids) == (Reason.AGENT_DENIED, ())


def test_a_gate_error_refuses_and_names_the_gate(policies: Path) -> None:
    (policies / "zz-errors.cedar").write_text(
        '@id("agents-overflow")\n'
        "forbid (principal is Teleport::Agent, action, resource)\n"
        "when { 9223372036854775807 + 1 > 0 };\n",
        encoding="utf-8",
    )
    engine = PolicyEngine.load(policies)
    carol = Identity("carol", ("order-admin",), {}, "iss", 0)
    decision = engine.authorize(carol, "orders___get_order_tool", {"order_id": "42"}, agent())
    assert (decision.allowed, decision.reason) == (False, Reason.POLICY_ERROR)
    assert decision.errors == ("agent gate: policy agents-overflow failed to evaluate",)
    alone = engine.authorize(carol, "orders___get_order_tool", {"order_id": "42"})
    assert alone.allowed  # without an agent the agent-only policy never applies


AGENT_ONLY_SCHEMA = """namespace Teleport {
  entity Role;
  entity User in [Role] = { name: String, bot: Bool } tags Set<String>;
  entity Agent = { name: String, bot: Bool, trust_domain: String, path: String };
  entity Gateway;
  action "t";
  action "t___both" in [Action::"t"]
    appliesTo { principal: [User, Agent], resource: [Gateway], context: { agent?: Agent, input: {} } };
  action "t___agentonly" in [Action::"t"]
    appliesTo { principal: [Agent], resource: [Gateway], context: { agent?: Agent, input: {} } };
}"""


@pytest.mark.parametrize("known_context", [False, True])
def test_a_tool_users_cannot_call_is_never_listed_to_a_user(known_context: bool) -> None:
    # a policy reading `action` is listed tool by tool; the schema lets only agents call t___agentonly
    policy = '@id("all-in-t") permit(principal, action, resource) when { action in Teleport::Action::"t" };'
    engine = PolicyEngine(PolicySource({"p.cedar": policy}, AGENT_ONLY_SCHEMA))
    lister = ToolLister(engine, "x", known_context=known_context)
    alice = Identity("alice", ("dev",), {}, "https://t", 2**40)
    assert lister.visible(alice) == {"t___both"}
    assert not engine.authorize(alice, "t___agentonly", {}).allowed
