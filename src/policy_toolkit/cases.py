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

`teleport-policy expand` writes each YAML file's cases as `<name>.cedartests.json` in Cedar's format
(`{"name", "request": {principal, action, resource, context}, "entities", "decision", "reason", "num_errors"}`)
so the Cedar CLI's `run-tests` reads the same cases: `context.input` is the arguments as the engine hands them to
Cedar (`cedar_input`: null optional arguments left out, decimals as Cedar's `__extn` JSON), or as written when the
engine refuses them. Cases run through `PolicyEngine.authorize`, the code path of the deployed interceptor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from interceptor.policy import (
    ACTION_TYPE,
    GATEWAY,
    USER_TYPE,
    Decision,
    PolicyEngine,
    Shape,
    Untypable,
    cedar_input,
    principal_entities,
)
from interceptor.tokens import Identity

JSON_SUFFIX = ".cedartests.json"


class CaseError(Exception):
    """A test file is malformed; the message names the file and case."""


@dataclass(frozen=True)
class Case:
    """One authorization question and the expected answer."""

    name: str
    source: str
    identity: Identity
    tool: str
    arguments: Mapping[str, Any]
    expect_allow: bool
    policies: tuple[str, ...]
    num_errors: int = 0

    def run(self, engine: PolicyEngine) -> Decision:
        return engine.authorize(self.identity, self.tool, self.arguments)

    def to_cedar(self, inputs: Mapping[str, Shape]) -> dict[str, Any]:
        """This case in Cedar's run-tests format; `inputs` are the schema's tool input types."""
        return {
            "name": self.name,
            "request": {
                "principal": {"type": USER_TYPE, "id": self.identity.user},
                "action": {"type": ACTION_TYPE, "id": self.tool},
                "resource": GATEWAY,
                "context": {"input": self._cedar_input(inputs)},
            },
            "entities": [*principal_entities(self.identity), {"uid": GATEWAY, "attrs": {}, "parents": []}],
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


def from_yaml_item(item: Any, source: str) -> Case:
    if not isinstance(item, Mapping) or not {"name", "user", "tool", "expect"} <= item.keys():
        raise CaseError(f"{source}: each case needs name, user, tool and expect")
    if item["expect"] not in {"allow", "deny"}:
        raise CaseError(f"{source}: {item['name']}: expect must be allow or deny")
    where = f"{source}: {item['name']}"
    roles, traits, arguments = item.get("roles") or [], item.get("traits") or {}, item.get("arguments") or {}
    if not _strings(roles):
        raise CaseError(f"{where}: roles must be a list of strings")
    if not isinstance(traits, Mapping) or not all(_strings(v) for v in traits.values()):
        raise CaseError(f"{where}: traits must map names to lists of strings")
    if not isinstance(arguments, Mapping):
        raise CaseError(f"{where}: arguments must be a mapping")
    identity = Identity(str(item["user"]), tuple(roles), {k: tuple(v) for k, v in traits.items()}, "policy-tests", 0)
    return Case(
        str(item["name"]),
        source,
        identity,
        str(item["tool"]),
        dict(arguments),
        item["expect"] == "allow",
        tuple(item.get("policies") or ()),
        int(item.get("num_errors", 0)),
    )


def from_cedar(entry: Mapping[str, Any], source: str) -> Case:
    """Read a run-tests case back into the interceptor's terms (user, roles, traits, tool, arguments)."""
    try:
        request = entry["request"]
        principal = request["principal"]
        user_entity = next(e for e in entry["entities"] if e["uid"] == principal)
        identity = Identity(
            principal["id"],
            tuple(p["id"] for p in user_entity.get("parents", [])),
            {k: tuple(v) for k, v in user_entity.get("tags", {}).items()},
            "policy-tests",
            0,
        )
        return Case(
            entry["name"],
            source,
            identity,
            request["action"]["id"],
            _from_cedar_value(request["context"].get("input", {})),
            entry["decision"] == "allow",
            tuple(entry.get("reason", [])),
            int(entry.get("num_errors", 0)),
        )
    except (KeyError, TypeError, StopIteration, ArithmeticError) as exc:
        raise CaseError(f"{source}: case {entry.get('name', '?')!r} is not a run-tests case ({exc})") from None


def load_yaml(path: Path) -> list[Case]:
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as exc:
        raise CaseError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(items, list):
        raise CaseError(f"{path}: expected a list of cases")
    return [from_yaml_item(item, path.name) for item in items]


def load_json(path: Path) -> list[Case]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise CaseError(f"{path}: expected a JSON array of run-tests cases")
    return [from_cedar(entry, path.name) for entry in entries]


def cedar_text(cases: list[Case], inputs: Mapping[str, Shape]) -> str:
    return json.dumps([c.to_cedar(inputs) for c in cases], indent=2, sort_keys=True) + "\n"


def json_path(yaml_path: Path) -> Path:
    return yaml_path.with_name(yaml_path.stem + JSON_SUFFIX)
