"""Cedar authorization of gateway tool calls: policies and schema parsed once, one decision per call.

The model (documented in the README): principal `Teleport::User::"<username>"` in one `Teleport::Role` per
Teleport role, with attributes `name` and `bot` and one `Set<String>` tag per trait; action
`Teleport::Action::"<target>___<tool>"` inside the action group `Teleport::Action::"<target>"`; resource
`Teleport::Gateway::"agentcore"`; `context.input` = the tool arguments, typed by the schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

from interceptor.reasons import Reason
from interceptor.tokens import Identity

NAMESPACE = "Teleport"
USER_TYPE = f"{NAMESPACE}::User"
ROLE_TYPE = f"{NAMESPACE}::Role"
ACTION_TYPE = f"{NAMESPACE}::Action"
GATEWAY = {"type": f"{NAMESPACE}::Gateway", "id": "agentcore"}
SCHEMA_FILE = "schema.cedarschema"
TOOL_SEPARATOR = "___"
# Cedar prints canonical schemas one `action "<name>" ... appliesTo {` per line; only tools have appliesTo.
_TOOL_ACTION = re.compile(r'^\s*action "((?:[^"\\]|\\.)*)"(?: in \[[^\]]*\])? appliesTo \{', re.MULTILINE)


class PolicySetInvalid(Exception):
    """Policies or schema failed to load or validate; `problems` says where and why (for the logs)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Decision:
    """The outcome of one authorization: only `allowed` True lets a call through."""

    allowed: bool
    reason: Reason
    policy_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySource:
    """The raw text of a policy folder: every `*.cedar` file (name -> text, in name order) and the schema."""

    files: Mapping[str, str]
    schema: str

    @classmethod
    def read(cls, folder: Path) -> PolicySource:
        schema_path = folder / SCHEMA_FILE
        if not schema_path.is_file():
            raise PolicySetInvalid([f"{schema_path}: schema file missing"])
        files = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.cedar"))}
        return cls(files, schema_path.read_text(encoding="utf-8"))


def policy_set_json(source: PolicySource, schema: cedarpy.Schema) -> str:
    """Validate each file strictly and merge them into one policy set whose ids are the policies' `@id`
    (or `<file>#<n>` without one), so audit records and errors name policies the way authors do."""
    problems: list[str] = []
    merged: dict[str, Any] = {}
    for name, text in source.files.items():
        result = cedarpy.validate_policies(text, schema)
        if not result.validation_passed:
            problems.extend(f"{name}: {e.policy_id}: {e.error}" for e in result.errors)
            continue
        for index, policy in enumerate(json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"].values()):
            policy_id = policy.get("annotations", {}).get("id") or f"{name}#{index}"
            if policy_id in merged:
                problems.append(f"{name}: policy id {policy_id!r} is used twice")
            merged[policy_id] = policy
    if problems:
        raise PolicySetInvalid(problems)
    return json.dumps({"staticPolicies": merged, "templates": {}, "templateLinks": []})


class PolicyEngine:
    """Parsed policy set, schema and static entities for one container; `authorize` is the hot path."""

    def __init__(self, source: PolicySource) -> None:
        try:
            self._schema = cedarpy.Schema.from_str(source.schema)
        except ValueError as exc:
            raise PolicySetInvalid([f"schema: {exc}"]) from None
        self._policies = cedarpy.PolicySet.from_json_str(policy_set_json(source, self._schema))
        self._static = cedarpy.Entities.from_json_str(
            json.dumps([{"uid": GATEWAY, "attrs": {}, "parents": []}]), self._schema
        )
        self.tools: frozenset[str] = frozenset(json.loads(f'"{m}"') for m in _TOOL_ACTION.findall(str(self._schema)))
        self.files = tuple(source.files)

    @classmethod
    def load(cls, folder: Path) -> PolicyEngine:
        """Read, parse and strictly validate the policies in `folder` against its schema."""
        return cls(PolicySource.read(folder))

    def authorize(self, identity: Identity, tool: str, arguments: Mapping[str, Any]) -> Decision:
        """Decide whether `identity` may call `tool` with `arguments`; anything but Allow is a deny."""
        if tool not in self.tools:
            return Decision(False, Reason.TOOL_UNKNOWN)
        entities = self._static.with_added_json_str(json.dumps(principal_entities(identity)))
        request = {
            "principal": {"type": USER_TYPE, "id": identity.user},
            "action": {"type": ACTION_TYPE, "id": tool},
            "resource": GATEWAY,
            "context": {"input": dict(arguments)},
        }
        result = cedarpy.is_authorized(request, self._policies, entities, self._schema)
        diagnostics = result.diagnostics
        ids = tuple(diagnostics.reasons)
        errors = tuple(diagnostics.errors)
        if errors:
            # A policy whose condition errors is skipped; a skipped forbid would loosen access: refuse.
            return Decision(False, Reason.POLICY_ERROR, ids, errors)
        if result.allowed:
            return Decision(True, Reason.ALLOWED, ids)
        return Decision(False, Reason.POLICY_DENIED, ids)


def principal_entities(identity: Identity) -> list[dict[str, Any]]:
    """The request's entities as `{"type", "id"}` dicts: the user, in one Role per Teleport role."""
    roles = [{"type": ROLE_TYPE, "id": role} for role in identity.roles]
    user = {
        "uid": {"type": USER_TYPE, "id": identity.user},
        "attrs": {"name": identity.user, "bot": identity.bot},
        "parents": roles,
        "tags": {name: list(values) for name, values in identity.traits.items()},
    }
    return [user, *({"uid": role, "attrs": {}, "parents": []} for role in roles)]
