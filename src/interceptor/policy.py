"""Cedar authorization of gateway tool calls: policies and schema parsed once, one decision per call.

The model (documented in the README): principal `Teleport::User::"<username>"` in one `Teleport::Role` per
Teleport role, with attributes `name` and `bot` and one `Set<String>` tag per trait; action
`Teleport::Action::"<target>___<tool>"` inside the action group `Teleport::Action::"<target>"`; resource
`Teleport::Gateway::"agentcore"`; `context.input` = the tool arguments, typed by the schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

from interceptor.reasons import Reason
from interceptor.tokens import Identity
from tool_identity import tool_arguments

NAMESPACE = "Teleport"
USER_TYPE = f"{NAMESPACE}::User"
ROLE_TYPE = f"{NAMESPACE}::Role"
ACTION_TYPE = f"{NAMESPACE}::Action"
GATEWAY = {"type": f"{NAMESPACE}::Gateway", "id": "agentcore"}
SCHEMA_FILE = "schema.cedarschema"
TOOL_SEPARATOR = "___"
ENTITY_CACHE_SIZE = 256
# Cedar prints a canonical schema with one `action "<name>" [in [<parents>]] (appliesTo {|;)` per line;
# tools are the actions with `appliesTo`. (Which groups a tool is in is asked of Cedar, not read here.)
_ACTION = re.compile(r'^\s*action "((?:[^"\\]|\\.)*)"(?: in \[[^\]]*\])?( appliesTo \{|;)', re.MULTILINE)


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
        try:
            files = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.cedar"))}
            return cls(files, schema_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicySetInvalid([f"{folder}: unreadable policy or schema file: {type(exc).__name__}"]) from None


def validated_policies(source: PolicySource, schema: cedarpy.Schema) -> dict[str, dict[str, Any]]:
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
    return merged


def schema_tools(schema: cedarpy.Schema) -> frozenset[str]:
    """The actions that are tools (declared with `appliesTo`), read from Cedar's canonical schema text."""
    try:
        return frozenset(json.loads(f'"{name}"') for name, kind in _ACTION.findall(str(schema)) if kind != ";")
    except ValueError:
        raise PolicySetInvalid(["schema: an action name cannot be read back from Cedar's schema text"]) from None


def group_memberships(tools: frozenset[str], groups: set[str], entities: cedarpy.Entities) -> dict[str, frozenset[str]]:
    """For each tool, which of `groups` it is in (transitively), asked of Cedar itself with one probe policy
    per group, so the grouping of policies by tool never depends on how the schema text is printed."""
    ordered = sorted(tools)
    requests = [
        {"principal": {"type": USER_TYPE, "id": "probe"}, "action": {"type": ACTION_TYPE, "id": t}, "resource": GATEWAY}
        for t in ordered
    ]
    member: dict[str, set[str]] = {tool: set() for tool in ordered}
    for group in sorted(groups):
        probe = {
            "effect": "permit",
            "principal": {"op": "All"},
            "resource": {"op": "All"},
            "conditions": [],
            "action": {"op": "in", "entity": {"type": ACTION_TYPE, "id": group}},
        }
        policy = cedarpy.PolicySet.from_json_str(
            json.dumps({"staticPolicies": {"probe": probe}, "templates": {}, "templateLinks": []})
        )
        for tool, result in zip(ordered, cedarpy.is_authorized_batch(requests, policy, entities), strict=True):
            if result.allowed:
                member[tool].add(group)
    return {tool: frozenset(groups_of_tool) for tool, groups_of_tool in member.items()}


def scope_groups(policies: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Every action named in an `action in ...` scope."""
    groups: set[str] = set()
    for policy in policies.values():
        scope = policy["action"]
        if scope["op"] == "in":
            groups.update(e["id"] for e in scope.get("entities") or [scope["entity"]])
    return groups


def applies_to(policy: Mapping[str, Any], tool: str, scope_ids: frozenset[str]) -> bool:
    """Whether a policy's action scope (Cedar JSON form) can match `tool`; `scope_ids` = the groups it is in."""
    scope = policy["action"]
    if scope["op"] == "All":
        return True
    if scope["op"] == "==":
        return bool(scope["entity"]["id"] == tool)
    entities = scope.get("entities") or [scope["entity"]]
    return any(entity["id"] in scope_ids for entity in entities)


class PolicyEngine:
    """Parsed policies, schema and static entities for one container; `authorize` is the hot path.

    Policies are grouped by the tools their action scope can match, so a call evaluates only the policies
    that can apply to its tool (same decision as the whole set, less work as policy sets grow).
    """

    def __init__(self, source: PolicySource) -> None:
        try:
            self._schema = cedarpy.Schema.from_str(source.schema)
        except ValueError as exc:
            raise PolicySetInvalid([f"schema: {exc}"]) from None
        policies = validated_policies(source, self._schema)
        self.tools: frozenset[str] = schema_tools(self._schema)
        self._static = cedarpy.Entities.from_json_str(
            json.dumps([{"uid": GATEWAY, "attrs": {}, "parents": []}]), self._schema
        )
        memberships = group_memberships(self.tools, scope_groups(policies), self._static)
        self._by_tool: dict[str, cedarpy.PolicySet] = {}
        for tool in self.tools:
            subset = {pid: p for pid, p in policies.items() if applies_to(p, tool, memberships[tool])}
            self._by_tool[tool] = cedarpy.PolicySet.from_json_str(
                json.dumps({"staticPolicies": subset, "templates": {}, "templateLinks": []})
            )
        self._principals: OrderedDict[tuple[Any, ...], cedarpy.Entities] = OrderedDict()
        self.files = tuple(source.files)
        self.policy_ids: frozenset[str] = frozenset(policies)

    @classmethod
    def load(cls, folder: Path) -> PolicyEngine:
        """Read, parse and strictly validate the policies in `folder` against its schema."""
        return cls(PolicySource.read(folder))

    def authorize(self, identity: Identity, tool: str, arguments: Mapping[str, Any]) -> Decision:
        """Decide whether `identity` may call `tool` with `arguments`; anything but Allow is a deny."""
        policies = self._by_tool.get(tool)
        if policies is None:
            return Decision(False, Reason.TOOL_UNKNOWN)
        request = {
            "principal": {"type": USER_TYPE, "id": identity.user},
            "action": {"type": ACTION_TYPE, "id": tool},
            "resource": GATEWAY,
            "context": {"input": tool_arguments(arguments)},  # policies never see reserved names
        }
        result = cedarpy.is_authorized(request, policies, self._entities(identity), self._schema)
        diagnostics = result.diagnostics
        ids = tuple(diagnostics.reasons)
        errors = tuple(_describe_error(e) for e in diagnostics.errors)
        if errors:
            # A policy whose condition errors is skipped; a skipped forbid would loosen access: refuse.
            return Decision(False, Reason.POLICY_ERROR, ids, errors)
        if result.allowed:
            return Decision(True, Reason.ALLOWED, ids)
        return Decision(False, Reason.POLICY_DENIED, ids)

    def _entities(self, identity: Identity) -> cedarpy.Entities:
        """Static entities plus this principal, kept for the principals seen recently (tokens are reused)."""
        key = (identity.user, identity.roles, tuple(identity.traits.items()))
        entities = self._principals.get(key)
        if entities is None:
            entities = self._static.with_added_json_str(json.dumps(principal_entities(identity)))
            self._principals[key] = entities
            if len(self._principals) > ENTITY_CACHE_SIZE:
                self._principals.popitem(last=False)
        else:
            self._principals.move_to_end(key)
        return entities

    def partially_evaluate(
        self, identity: Identity, tool: str, policies: cedarpy.PolicySet | None = None
    ) -> cedarpy.PartialAuthzResult:
        """Cedar partial evaluation of `identity` calling `tool` with the arguments (context) unknown, over
        `policies` (by default the tool's own group). For listing only: it is never an authorization decision."""
        request = {
            "principal": cedar_uid(USER_TYPE, identity.user),
            "action": cedar_uid(ACTION_TYPE, tool),
            "resource": cedar_uid(GATEWAY["type"], GATEWAY["id"]),
        }
        group = self._by_tool[tool] if policies is None else policies
        return cedarpy.is_authorized_partial(request, group, self._entities(identity), self._schema)

    def callable_by_users(self, tool: str) -> bool:
        """Whether the schema lets a `User` call `tool` on the `Gateway` at all; if not, every call fails to
        build and is refused (`policy_error`), whatever the policies say."""
        request = {
            "principal": cedar_uid(USER_TYPE, "schema-probe"),
            "action": cedar_uid(ACTION_TYPE, tool),
            "resource": cedar_uid(GATEWAY["type"], GATEWAY["id"]),
        }
        return not cedarpy.is_authorized_partial(request, "", self._static, self._schema).diagnostics.errors

    def policy_trees(self) -> dict[str, cedarpy.pst.PolicySet]:
        """Each tool's policy group as Cedar's syntax tree, for analyses that must see exactly what `authorize`
        evaluates. Raises ValueError if this cedarpy cannot model a construct in the set."""
        return {tool: policies.to_pst() for tool, policies in self._by_tool.items()}


def _describe_error(error: str) -> str:
    """Cedar's error text quotes argument values; keep only what kind of error it was."""
    if error.startswith("failed to build request"):
        return "the arguments do not match the tool's input schema"
    match = re.search(r"policy `?([^`\s:]+)`?", error)
    return f"policy {match.group(1)} failed to evaluate" if match else "a policy failed to evaluate"


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


def cedar_uid(entity_type: str, entity_id: str) -> str:
    """An entity uid in Cedar syntax for the one API that takes no JSON uids (partial evaluation). Cedar accepts
    only its own rendering (Rust's `escape_debug`), reproduced here; an id Cedar would render otherwise fails to
    parse, and a failed evaluation shows nothing (fail closed), so a wrong rendering never names another user."""
    chars = []
    for index, char in enumerate(entity_id):
        if char in _RUST_ESCAPES:
            chars.append(_RUST_ESCAPES[char])
        elif char.isprintable() and not (index == 0 and unicodedata.category(char) in {"Mn", "Me"}):
            chars.append(char)
        else:
            chars.append(f"\\u{{{ord(char):x}}}")
    return f'{entity_type}::"{"".join(chars)}"'


_RUST_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"', "'": "\\'", "\0": "\\0"}


def policy_set_digest(source: PolicySource) -> str:
    """A short content hash of a policy folder (file names, policies and schema): names the set in audit records."""
    content = json.dumps([source.schema, sorted(source.files.items())])
    return hashlib.sha256(content.encode()).hexdigest()[:12]
