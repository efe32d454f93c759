"""Policy tests: Cedar's `run-tests` JSON format on disk, a compact YAML form to write them in.

YAML (`policies/tests/*.yaml`), one list item per case:

    - name: developer reads an order
      user: alice
      roles: [developer]
      traits: {logins: [alice]}
      tool: orders___get_order_tool
      arguments: {order_id: "42"}
      expect: allow                       # or deny
      policies: [developers-read-orders]  # determining policies (@id), optional (subset check)
      num_errors: 0                       # evaluation errors expected, optional

A delegated call (README "Agents") names the agent and says what each of its two gates decides; it is stored as
two run-tests cases, `<name> [user gate]` (principal the user) and `<name> [agent gate]` (principal the agent),
both with `context.agent`:

    - name: the orders assistant may not update an order, even for an order admin
      user: carol
      roles: [order-admin]
      agent: spiffe://example.teleport.sh/agents/orders-assistant
      tool: orders___update_order
      arguments: {order_id: "42", status: shipped}
      expect: {user: allow, agent: deny}  # `allow` alone: both gates allow
      policies: {user: [order-admins-manage-orders], agent: [no-destructive-tools-for-agents]}

`teleport-policy expand` writes each YAML file's cases as `<name>.cedartests.json` in Cedar's format
(`{"name", "request": {principal, action, resource, context}, "entities", "decision", "reason", "num_errors"}`)
so the Cedar CLI's `run-tests` reads the same cases: `context.input` is the arguments as the engine hands them to
Cedar (`cedar_input`: null optional arguments left out, decimals as Cedar's `__extn` JSON), or as written when the
engine refuses them. Cases run through `PolicyEngine.authorize`, the code path of the deployed interceptor; a gate
case is judged on its own gate's answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from interceptor import spiffe
from interceptor.agents import Agent
from interceptor.contract import json_problem
from interceptor.policy import (
    ACTION_TYPE,
    AGENT_TYPE,
    GATEWAY,
    USER_TYPE,
    Decision,
    PolicyEngine,
    Shape,
    Untypable,
    cedar_input,
    principal_entities,
)
from interceptor.reasons import Reason
from interceptor.tokens import Identity
from tool_identity import tool_arguments

JSON_SUFFIX = ".cedartests.json"
GATES = ("user", "agent")


class CaseError(Exception):
    """A test file is malformed; the message names the file and case."""


@dataclass(frozen=True)
class Case:
    """One authorization question and the expected answer."""

    name: str
    source: str
    identity: Identity
    tool: str
    arguments: Mapping[str, Any]  # the agent's own: reserved names were removed where the case was read
    expect_allow: bool
    policies: tuple[str, ...]
    num_errors: int = 0
    agent: Agent | None = None  # a delegated call: the agent acting for the user
    gate: str | None = None  # with an agent: the gate this case judges ("user" or "agent")

    def run(self, engine: PolicyEngine) -> Decision:
        """The engine's decision; for a gate case, that gate's answer as a decision of its own."""
        decision = engine.authorize(self.identity, self.tool, self.arguments, self.agent)
        gate = next((g for g in decision.gates if g.who == self.gate), None)
        if gate is None:  # no gate case, or refused before the gates (an unknown tool, untypable arguments)
            return decision
        reason = Reason.POLICY_ERROR if gate.errors else Reason.ALLOWED if gate.allowed else _DENIED[gate.who]
        return Decision(gate.allowed, reason, gate.policy_ids, gate.errors)

    def to_cedar(self, inputs: Mapping[str, Shape]) -> dict[str, Any]:
        """This case in Cedar's run-tests format; `inputs` are the schema's tool input types."""
        context: dict[str, Any] = {"input": self._cedar_input(inputs)}
        principal = {"type": USER_TYPE, "id": self.identity.user}
        if self.agent is not None:
            uid = {"type": AGENT_TYPE, "id": self.agent.spiffe_id}
            context["agent"] = {"__entity": uid}
            principal = uid if self.gate == "agent" else principal
        return {
            "name": self.name,
            "request": {
                "principal": principal,
                "action": {"type": ACTION_TYPE, "id": self.tool},
                "resource": GATEWAY,
                "context": context,
            },
            "entities": [
                *principal_entities(self.identity, self.agent),
                {"uid": GATEWAY, "attrs": {}, "parents": []},
            ],
            "decision": "allow" if self.expect_allow else "deny",
            "reason": list(self.policies),
            "num_errors": self.num_errors,
        }

    def _cedar_input(self, inputs: Mapping[str, Shape]) -> Any:
        """The arguments as Cedar receives them from the engine; as written when the engine refuses them (the
        Cedar CLI then refuses them too) or does not know the tool."""
        try:
            return cedar_input(self.arguments, inputs[self.tool])
        except (KeyError, Untypable):
            return dict(self.arguments)


def _agent_arguments(value: Any) -> Any:
    """A case's arguments as policy sees them at the gateway: without reserved names (a value that is not a
    mapping is kept as written, and refused when the case runs)."""
    return tool_arguments(value) if isinstance(value, Mapping) else value


def _from_cedar_value(value: Any) -> Any:
    """Cedar's JSON for a decimal read back as an exact number (what `cedar_input` wrote it from)."""
    if isinstance(value, Mapping):
        extension = value.get("__extn")
        if len(value) == 1 and isinstance(extension, Mapping) and extension.get("fn") == "decimal":
            return Decimal(str(extension.get("arg")))
        return {key: _from_cedar_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_cedar_value(item) for item in value]
    return value


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_DENIED = {"user": Reason.POLICY_DENIED, "agent": Reason.AGENT_DENIED}


def from_yaml_item(item: Any, source: str) -> list[Case]:
    """The cases of one YAML item: one, or with an `agent` one per gate."""
    if not isinstance(item, Mapping) or not {"name", "user", "tool", "expect"} <= item.keys():
        raise CaseError(f"{source}: each case needs name, user, tool and expect")
    where = f"{source}: {item['name']}"
    roles, traits, arguments = item.get("roles") or [], item.get("traits") or {}, item.get("arguments") or {}
    if not _strings(roles):
        raise CaseError(f"{where}: roles must be a list of strings")
    if not isinstance(traits, Mapping) or not all(_strings(v) for v in traits.values()):
        raise CaseError(f"{where}: traits must map names to lists of strings")
    if not isinstance(arguments, Mapping):
        raise CaseError(f"{where}: arguments must be a mapping")
    problem = json_problem(dict(arguments))
    if problem is not None:
        raise CaseError(
            f"{where}: arguments must be JSON values, as a gateway body holds them ({problem}); quote dates: YAML "
            "reads 2024-01-01 as a date"
        )
    identity = Identity(str(item["user"]), tuple(roles), {k: tuple(v) for k, v in traits.items()}, "policy-tests", 0)
    expect: dict[str | None, Any] = {None: item["expect"]}
    policies: dict[str | None, Any] = {None: item.get("policies")}
    agent: Agent | None = None
    gates: tuple[str | None, ...] = (None,)
    if "agent" in item:
        expect, policies = (
            _per_gate(item["expect"], where, "expect"),
            _per_gate(item.get("policies"), where, "policies"),
        )
        agent, gates = _agent(item["agent"], where), GATES
    return [
        Case(
            str(item["name"]) if gate is None else f"{item['name']} [{gate} gate]",
            source,
            identity,
            str(item["tool"]),
            tool_arguments(arguments),  # reserved names never reach policy, as at the gateway
            _allows(expect[gate], where),
            tuple(policies.get(gate) or ()),
            int(item.get("num_errors", 0)),
            agent,
            gate,
        )
        for gate in gates
    ]


def _allows(expect: Any, where: str) -> bool:
    if not isinstance(expect, str) or expect not in {"allow", "deny"}:
        raise CaseError(f"{where}: expect must be allow or deny")
    return bool(expect == "allow")


def _per_gate(value: Any, where: str, field: str) -> dict[str | None, Any]:
    """An agent case's `expect` or `policies` by gate: `{user: ..., agent: ...}` (`expect: allow` alone means both
    gates allow; a bare `deny` cannot say which gate refuses)."""
    if field == "expect" and value == "allow":
        return dict.fromkeys(GATES, "allow")
    if value is None and field == "policies":
        return {}
    if not isinstance(value, Mapping) or not set(value) <= set(GATES) or (field == "expect" and set(value) != {*GATES}):
        raise CaseError(f"{where}: with an agent, {field} must give each gate's: {{user: ..., agent: ...}}")
    return dict(value)


def _agent(value: Any, where: str) -> Agent:
    parsed = spiffe.parse_id(value) if isinstance(value, str) else None
    if parsed is None:
        raise CaseError(f"{where}: agent must be a workload's SPIFFE ID (spiffe://<trust domain>/<path>)")
    return Agent(value, parsed[0], parsed[1], "policy-tests", 0)


def from_cedar(entry: Mapping[str, Any], source: str) -> Case:
    """Read a run-tests case back into the interceptor's terms (user, roles, traits, agent, tool, arguments); a case
    whose context names an agent is the gate of its principal's type."""
    try:
        request = entry["request"]
        principal = request["principal"]
        agent_uid = request["context"].get("agent", {}).get("__entity")
        user_uid = principal if agent_uid is None or principal["type"] == USER_TYPE else None
        user_entity = next(
            e for e in entry["entities"] if e["uid"] == user_uid or (user_uid is None and e["uid"]["type"] == USER_TYPE)
        )
        identity = Identity(
            user_entity["uid"]["id"],
            tuple(p["id"] for p in user_entity.get("parents", [])),
            {k: tuple(v) for k, v in user_entity.get("tags", {}).items()},
            "policy-tests",
            0,
        )
        agent, gate = None, None
        if agent_uid is not None:
            agent = _agent(agent_uid["id"], f"{source}: {entry.get('name', '?')}")
            gate = "agent" if principal["type"] == AGENT_TYPE else "user"
        return Case(
            entry["name"],
            source,
            identity,
            request["action"]["id"],
            _agent_arguments(_from_cedar_value(_json_input(request["context"].get("input", {})))),
            entry["decision"] == "allow",
            tuple(entry.get("reason", [])),
            int(entry.get("num_errors", 0)),
            agent,
            gate,
        )
    except (KeyError, TypeError, AttributeError, StopIteration, ArithmeticError) as exc:
        raise CaseError(f"{source}: case {entry.get('name', '?')!r} is not a run-tests case ({exc})") from None


def _json_input(value: Any) -> Any:
    """A run-tests case's `context.input` as a gateway body could hold it (`json.loads` also reads NaN)."""
    problem = json_problem(value)
    if problem is not None:
        raise TypeError(f"context.input is not strict JSON: {problem}")
    return value


def load_yaml(path: Path) -> list[Case]:
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as exc:
        raise CaseError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(items, list):
        raise CaseError(f"{path}: expected a list of cases")
    return [case for item in items for case in from_yaml_item(item, path.name)]


def load_json(path: Path) -> list[Case]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise CaseError(f"{path}: expected a JSON array of run-tests cases")
    return [from_cedar(entry, path.name) for entry in entries]


def cedar_text(cases: list[Case], inputs: Mapping[str, Shape]) -> str:
    return json.dumps([c.to_cedar(inputs) for c in cases], indent=2, sort_keys=True) + "\n"


def json_path(yaml_path: Path) -> Path:
    return yaml_path.with_name(yaml_path.stem + JSON_SUFFIX)
