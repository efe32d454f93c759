"""Cedar authorization of gateway tool calls: policies validated and indexed once, one decision per call.

The model (documented in the README): principal `Teleport::User::"<username>"` in one `Teleport::Role` per
Teleport role, with attributes `name` and `bot` and one `Set<String>` tag per trait; action
`Teleport::Action::"<target>___<tool>"` inside the action group `Teleport::Action::"<target>"`; resource
`Teleport::Gateway::"agentcore"`; `context.input` = the tool arguments, typed by the schema.

A policy set is compiled once (`compile_policies`): validated strictly against the schema, then indexed by action
(which tools each policy's action scope matches, from Cedar's own action hierarchy) and by principal (which
callers its principal scope can match, for tool listing). `teleport-policy build` writes the compiled set next to
the policies (`policies.bundle.json`) under a digest of the policy files, the schema, the cedarpy version, the
bundle format and this module's source. The engine loads a bundle only when the digest of what it reads matches;
otherwise it compiles at init (strict validation: slower, never an unvalidated set). A tool's policies are parsed
into a Cedar set on the tool's first call.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
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
BUNDLE_FILE = "policies.bundle.json"
BUNDLE_FORMAT = 1
TOOL_SEPARATOR = "___"
ENTITY_CACHE_SIZE = 256
# Cedar prints a canonical schema with one `action "<name>" [in [<parents>]] (appliesTo {|;)` per line;
# tools are the actions with `appliesTo`. (Which groups a tool is in is read from Cedar's entity store.)
_ACTION = re.compile(r'^\s*action "((?:[^"\\]|\\.)*)"(?: in \[[^\]]*\])?( appliesTo \{|;)', re.MULTILINE)
_NO_TEMPLATES: dict[str, Any] = {"templates": {}, "templateLinks": []}
_WIDENED = {"op": "All"}


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
    """The raw text of a policy folder: every `*.cedar` file (name -> text, in name order), the schema, and the
    compiled bundle if the folder has a readable one (used only when its digest matches the rest)."""

    files: Mapping[str, str]
    schema: str
    bundle: str | None = None

    @classmethod
    def read(cls, folder: Path) -> PolicySource:
        schema_path = folder / SCHEMA_FILE
        if not schema_path.is_file():
            raise PolicySetInvalid([f"{schema_path}: schema file missing"])
        try:
            files = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.cedar"))}
            schema = schema_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicySetInvalid([f"{folder}: unreadable policy or schema file: {type(exc).__name__}"]) from None
        try:
            bundle: str | None = (folder / BUNDLE_FILE).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # none, or unusable: the set is validated at init instead
            bundle = None
        return cls(files, schema, bundle)


# ---------------------------------------------------------------------------------------------------------------
# Compiling: strict validation, then the indexes by action and by principal


@dataclass(frozen=True)
class CompiledPolicy:
    """One strictly validated policy and what the indexes need. `text` and `probe` are Cedar's own printing,
    checked at compile time to parse back to exactly the validated policy (resp. its probe form)."""

    id: str
    effect: str  # "permit" or "forbid"
    text: str
    # For tool listing: the policy with its action scope widened to any action and as a permit (listing asks only
    # which policies are or may be satisfied); None when a condition reads `action` (its tools are listed one by one).
    probe: str | None
    reads_arguments: bool  # a condition reads `context`: listing needs partial evaluation, else full evaluation
    principal: tuple[str, str] | None  # ("role", r) or ("user", u): the only callers its scope matches; None: any
    tools: tuple[str, ...] | None  # the tools its action scope matches, sorted; None: every tool


@dataclass(frozen=True)
class CompiledSet:
    """A validated, indexed policy set; `digest` names what it was compiled from (see `bundle_digest`)."""

    digest: str
    files: tuple[str, ...]
    tools: tuple[str, ...]
    callable: frozenset[str]  # tools the schema lets a User call at the Gateway (others always fail to build)
    policies: tuple[CompiledPolicy, ...]

    def to_json(self) -> str:
        """The bundle file's text: deterministic, so `teleport-policy build --check` can compare it."""
        body = {
            "format": BUNDLE_FORMAT,
            "digest": self.digest,
            "files": list(self.files),
            "tools": list(self.tools),
            "callable": sorted(self.callable),
            "policies": [asdict(policy) for policy in self.policies],
        }
        return json.dumps(body, indent=0) + "\n"

    @classmethod
    def from_bundle(cls, text: str, digest: str) -> CompiledSet | None:
        """The compiled set in a bundle, when the bundle was compiled from exactly what `digest` names; None for
        any other bundle, including one that cannot be read."""
        try:
            body = json.loads(text)
            if body["format"] != BUNDLE_FORMAT or body["digest"] != digest:
                return None
            policies = tuple(
                CompiledPolicy(
                    **{
                        **policy,
                        "principal": tuple(policy["principal"]) if policy["principal"] else None,
                        "tools": None if policy["tools"] is None else tuple(policy["tools"]),
                    }
                )
                for policy in body["policies"]
            )
            return cls(digest, tuple(body["files"]), tuple(body["tools"]), frozenset(body["callable"]), policies)
        except (ValueError, KeyError, TypeError):
            return None


def bundle_digest(source: PolicySource) -> str:
    """SHA-256 over everything a compiled set depends on: policy files (names and text), schema, cedarpy's version
    (its validator and printer), the bundle format and this module's source (the compiler)."""
    try:
        compiler = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    except OSError:
        compiler = "unreadable"  # no bundle built from readable source matches: the set is validated at init
    content = json.dumps(
        [BUNDLE_FORMAT, _cedarpy_version(), compiler, source.schema, sorted(source.files.items())],
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode()).hexdigest()


def _cedarpy_version() -> str:
    """The installed cedarpy's version, from its dist-info folder (a metadata search costs ~50 ms at init)."""
    site = Path(cedarpy.__file__).resolve().parent.parent
    found = [path.name[len("cedarpy-") : -len(".dist-info")] for path in site.glob("cedarpy-*.dist-info")]
    return found[0] if len(found) == 1 else importlib.metadata.version("cedarpy")


def parse_schema(source: PolicySource) -> cedarpy.Schema:
    """The schema as Cedar's handle; needed at every init (requests and the action hierarchy are checked with it)."""
    try:
        return cedarpy.Schema.from_str(source.schema)
    except ValueError as exc:
        raise PolicySetInvalid([f"schema: {exc}"]) from None


def static_entities(schema: cedarpy.Schema) -> cedarpy.Entities:
    """The gateway, plus the action entities Cedar derives from the schema (what `action in ...` evaluates)."""
    return cedarpy.Entities.from_json_str(json.dumps([{"uid": GATEWAY, "attrs": {}, "parents": []}]), schema)


def load_compiled(source: PolicySource, schema: cedarpy.Schema) -> tuple[CompiledSet, str]:
    """The compiled set for `source` and where it came from: its bundle when the bundle's digest names exactly
    these files ("loaded"), else compiled now with full strict validation ("absent" or "stale")."""
    if source.bundle is not None:
        bundled = CompiledSet.from_bundle(source.bundle, bundle_digest(source))
        if bundled is not None:
            return bundled, "loaded"
    return compile_policies(source, schema), "absent" if source.bundle is None else "stale"


def compile_policies(source: PolicySource, schema: cedarpy.Schema) -> CompiledSet:
    """Validate every file strictly against the schema and index the set (ignores any bundle in `source`).
    Strict validation costs Cedar time in policies x tools: this is build-time work, or init without a bundle."""
    policies = validated_policies(source, schema)
    tools = schema_tools(schema)
    static = static_entities(schema)
    members = tool_members(static, tools)
    return CompiledSet(
        bundle_digest(source),
        tuple(source.files),
        tuple(sorted(tools)),
        frozenset(tool for tool in tools if _callable_by_users(tool, schema, static)),
        tuple(_compiled(policy_id, policy, tools, members) for policy_id, policy in policies.items()),
    )


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
        for index, policy in enumerate(_parsed(text).values()):
            policy_id = policy.get("annotations", {}).get("id") or f"{name}#{index}"
            if policy_id in merged:
                problems.append(f"{name}: policy id {policy_id!r} is used twice")
            merged[policy_id] = policy
    if problems:
        raise PolicySetInvalid(problems)
    return merged


def _parsed(text: str) -> dict[str, Any]:
    """Cedar's JSON form of the static policies in `text`, by Cedar's positional id (`policy0`, ...)."""
    policies: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    return policies


def schema_tools(schema: cedarpy.Schema) -> frozenset[str]:
    """The actions that are tools (declared with `appliesTo`), read from Cedar's canonical schema text."""
    try:
        return frozenset(json.loads(f'"{name}"') for name, kind in _ACTION.findall(str(schema)) if kind != ";")
    except ValueError:
        raise PolicySetInvalid(["schema: an action name cannot be read back from Cedar's schema text"]) from None


def tool_members(static: cedarpy.Entities, tools: frozenset[str]) -> dict[tuple[str, str], set[str]]:
    """For every action (type, id): the tools that are it or are in it, transitively. Read from the action
    entities Cedar itself derived from the schema (what `action in ...` evaluates against), in one pass."""
    try:
        entities = json.loads(str(static))
        parents = {(e["uid"]["type"], e["uid"]["id"]): [(p["type"], p["id"]) for p in e["parents"]] for e in entities}
    except (ValueError, KeyError, TypeError):
        raise PolicySetInvalid(["schema: Cedar's action hierarchy cannot be read"]) from None
    members: dict[tuple[str, str], set[str]] = {}
    for tool in tools:
        if (ACTION_TYPE, tool) not in parents:
            raise PolicySetInvalid([f"schema: tool {tool!r} is missing from Cedar's action hierarchy"])
        seen = {(ACTION_TYPE, tool)}
        pending = [(ACTION_TYPE, tool)]
        while pending:
            for parent in parents.get(pending.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    pending.append(parent)
        for action in seen:
            members.setdefault(action, set()).add(tool)
    return members


def _callable_by_users(tool: str, schema: cedarpy.Schema, static: cedarpy.Entities) -> bool:
    """Whether the schema lets a `User` call `tool` on the `Gateway` at all; if not, every call fails to build
    and is refused (`policy_error`), whatever the policies say."""
    request = {
        "principal": cedar_uid(USER_TYPE, "schema-probe"),
        "action": cedar_uid(ACTION_TYPE, tool),
        "resource": cedar_uid(GATEWAY["type"], GATEWAY["id"]),
    }
    return not cedarpy.is_authorized_partial(request, "", static, schema).diagnostics.errors


def _compiled(
    policy_id: str, policy: dict[str, Any], tools: frozenset[str], members: Mapping[tuple[str, str], set[str]]
) -> CompiledPolicy:
    reads_action = _reads(policy["conditions"], "action")
    probe = None if reads_action else _printed(policy_id, {**policy, "effect": "permit", "action": _WIDENED})
    return CompiledPolicy(
        policy_id,
        policy["effect"],
        _printed(policy_id, policy),
        probe,
        _reads(policy["conditions"], "context"),
        _principal(policy["principal"]),
        _matched_tools(policy_id, policy["action"], tools, members),
    )


def _printed(policy_id: str, policy: Mapping[str, Any]) -> str:
    """Cedar's text for one policy, proven to parse back to exactly `policy` (the engine parses this text)."""
    text = cedarpy.policies_from_json_str(json.dumps({"staticPolicies": {"p": policy}, **_NO_TEMPLATES}))
    if list(_parsed(text).values()) != [policy]:
        raise PolicySetInvalid([f"policy {policy_id!r}: Cedar does not print it back exactly"])
    return text


def _reads(node: Any, variable: str) -> bool:
    """Whether a policy's conditions (Cedar JSON) read `variable`."""
    if isinstance(node, dict):
        return node.get("Var") == variable or any(_reads(child, variable) for child in node.values())
    if isinstance(node, list):
        return any(_reads(child, variable) for child in node)
    return False


def _principal(scope: Mapping[str, Any]) -> tuple[str, str] | None:
    """The only callers a principal scope can match. Principals are Users whose only ancestors are their Roles,
    so `in Role::"r"` matches holders of role r and `==`/`in User::"u"` matches u. Any other form: None (evaluated
    for every caller; evaluating a policy that cannot match changes no answer)."""
    op = scope["op"]
    if op == "is" and scope["entity_type"] == USER_TYPE and "in" in scope:
        op, scope = "in", scope["in"]
    entity = scope.get("entity")
    if op not in {"==", "in"} or not isinstance(entity, Mapping):
        return None
    if entity["type"] == ROLE_TYPE and op == "in":
        return ("role", entity["id"])
    if entity["type"] == USER_TYPE:
        return ("user", entity["id"])
    return None


def _matched_tools(
    policy_id: str, scope: Mapping[str, Any], tools: frozenset[str], members: Mapping[tuple[str, str], set[str]]
) -> tuple[str, ...] | None:
    """The tools an action scope matches: `==` names one action, `in` an action and its members (transitively)."""
    if scope["op"] == "All":
        return None
    if scope["op"] == "==":
        entity = scope["entity"]
        return (entity["id"],) if entity["type"] == ACTION_TYPE and entity["id"] in tools else ()
    if scope["op"] == "in":
        named = scope["entities"] if "entities" in scope else [scope["entity"]]
        return tuple(sorted(set().union(*(members.get((e["type"], e["id"]), set()) for e in named))))
    raise PolicySetInvalid([f"policy {policy_id!r}: unsupported action scope {scope['op']!r}"])


# ---------------------------------------------------------------------------------------------------------------
# Evaluating


@dataclass(frozen=True)
class PolicyGroup:
    """Some compiled policies parsed into one Cedar set. Cedar names policies parsed from text by position
    (`policy<n>`); `members` holds each one's index in `CompiledSet.policies`."""

    policies: cedarpy.PolicySet
    members: tuple[int, ...]

    @classmethod
    def parse(cls, texts: Sequence[str], members: Sequence[int]) -> PolicyGroup:
        return cls(cedarpy.PolicySet.from_str("\n".join(texts)), tuple(members))

    def member(self, cedar_id: str) -> int:
        """The compiled-set index of the policy Cedar calls `cedar_id`."""
        return self.members[int(cedar_id.removeprefix("policy"))]


class PolicyEngine:
    """Compiled policies, schema and static entities for one container; `authorize` is the hot path.

    Each tool evaluates only the policies whose action scope can match it (its slice of the action index), which
    gives the same decision as the whole set with less work as policy sets grow.
    """

    def __init__(self, source: PolicySource) -> None:
        self._schema = parse_schema(source)
        self.compiled, self.bundle_status = load_compiled(source, self._schema)
        self.tools: frozenset[str] = frozenset(self.compiled.tools)
        self.files = self.compiled.files
        self.policy_ids: frozenset[str] = frozenset(p.id for p in self.compiled.policies)
        self._static = static_entities(self._schema)
        self._everywhere: list[int] = []  # policies whose action scope matches every tool
        self._own: dict[str, list[int]] = {tool: [] for tool in self.compiled.tools}
        for index, policy in enumerate(self.compiled.policies):
            if policy.tools is None:
                self._everywhere.append(index)
            else:
                for tool in policy.tools:
                    self._own[tool].append(index)
        self._groups: dict[str, PolicyGroup] = {}
        self._principals: OrderedDict[tuple[Any, ...], cedarpy.Entities] = OrderedDict()

    @classmethod
    def load(cls, folder: Path) -> PolicyEngine:
        """The policies in `folder`: from its bundle when that matches the files, else read and strictly validated."""
        return cls(PolicySource.read(folder))

    def authorize(self, identity: Identity, tool: str, arguments: Mapping[str, Any]) -> Decision:
        """Decide whether `identity` may call `tool` with `arguments`; anything but Allow is a deny."""
        group = self._group(tool)
        if group is None:
            return Decision(False, Reason.TOOL_UNKNOWN)
        request = {
            "principal": {"type": USER_TYPE, "id": identity.user},
            "action": {"type": ACTION_TYPE, "id": tool},
            "resource": GATEWAY,
            "context": {"input": tool_arguments(arguments)},  # policies never see reserved names
        }
        result = cedarpy.is_authorized(request, group.policies, self._entities(identity), self._schema)
        diagnostics = result.diagnostics
        ids = self.named(group, diagnostics.reasons)
        errors = tuple(self._describe_error(e, group) for e in diagnostics.errors)
        if errors:
            # A policy whose condition errors is skipped; a skipped forbid would loosen access: refuse.
            return Decision(False, Reason.POLICY_ERROR, ids, errors)
        if result.allowed:
            return Decision(True, Reason.ALLOWED, ids)
        return Decision(False, Reason.POLICY_DENIED, ids)

    def named(self, group: PolicyGroup, cedar_ids: Iterable[str]) -> tuple[str, ...]:
        """The authors' ids of the policies Cedar names by position in `group`, sorted."""
        return tuple(sorted(self.compiled.policies[group.member(cedar_id)].id for cedar_id in cedar_ids))

    def _group(self, tool: str) -> PolicyGroup | None:
        """The tool's policy slice as a Cedar set, parsed on the tool's first call; None for an unknown tool."""
        group = self._groups.get(tool)
        if group is None and tool in self._own:
            members = sorted((*self._everywhere, *self._own[tool]))
            group = PolicyGroup.parse([self.compiled.policies[i].text for i in members], members)
            self._groups[tool] = group
        return group

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

    def _describe_error(self, error: str, group: PolicyGroup) -> str:
        """Cedar's error text quotes argument values; keep only what kind of error it was, and which policy."""
        if error.startswith("failed to build request"):
            return "the arguments do not match the tool's input schema"
        match = re.search(r"policy `?(policy\d+)`?", error)
        if match is None:
            return "a policy failed to evaluate"
        return f"policy {self.named(group, [match.group(1)])[0]} failed to evaluate"

    def _listing_request(self, identity: Identity, tool: str) -> dict[str, Any]:
        """Uids in Cedar syntax, the only form partial evaluation takes; full probes use the same form, so a
        caller whose name Cedar cannot read fails both the same way."""
        return {
            "principal": cedar_uid(USER_TYPE, identity.user),
            "action": cedar_uid(ACTION_TYPE, tool),
            "resource": cedar_uid(GATEWAY["type"], GATEWAY["id"]),
        }

    def partially_evaluate(
        self, identity: Identity, tool: str, policies: cedarpy.PolicySet | None = None
    ) -> cedarpy.PartialAuthzResult:
        """Cedar partial evaluation of `identity` calling `tool` with the arguments (context) unknown, over
        `policies` (by default the tool's own slice). For listing only: it is never an authorization decision."""
        if policies is None:
            group = self._group(tool)
            if group is None:
                raise KeyError(tool)
            policies = group.policies
        return cedarpy.is_authorized_partial(
            self._listing_request(identity, tool), policies, self._entities(identity), self._schema
        )

    def probe(self, identity: Identity, tool: str, policies: cedarpy.PolicySet) -> cedarpy.AuthzResult:
        """Cedar full evaluation of `identity` over `policies` that never read the arguments (no context, so no
        schema check of the request). For listing only: it is never an authorization decision."""
        return cedarpy.is_authorized(self._listing_request(identity, tool), policies, self._entities(identity))


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
