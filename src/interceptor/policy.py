"""Cedar authorization of gateway tool calls: policies validated and indexed once, one decision per call.

The model (documented in the README): principal `Teleport::User::"<username>"` in one `Teleport::Role` per
Teleport role, with attributes `name` and `bot` and one `Set<String>` tag per trait; or, for the agent gate of a
delegated call, `Teleport::Agent::"<spiffe id>"` (attributes `name`, `bot` false, `trust_domain`, `path`), with
`context.agent` naming that agent in both gates' requests (README "Agents"); action
`Teleport::Action::"<target>___<tool>"` inside the action group `Teleport::Action::"<target>"`; resource
`Teleport::Gateway::"agentcore"`; `context.input` = the tool arguments, typed by the schema (`cedar_input`: a
null optional argument is absent, JSON numbers become `Long` or `decimal` when exact, anything else is refused).

A policy set is compiled once (`compile_policies`): validated strictly against the schema, then indexed by action
(which tools each policy's action scope matches, from Cedar's own action hierarchy) and by principal (which
callers its principal scope can match, for tool listing), and each tool's input type is read from Cedar's schema
(what `cedar_input` types arguments by). `teleport-policy build` writes the compiled set next to
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import cedarpy
import orjson
from cedarpy import _internal as cedar_extension

from interceptor import jsontext
from interceptor.agents import Agent
from interceptor.errors import Problems, Refusal
from interceptor.lru import LRUDict
from interceptor.reasons import Reason
from interceptor.tokens import Identity
from tool_identity import RESERVED_PREFIX, is_reserved

NAMESPACE = "Teleport"
USER_TYPE = f"{NAMESPACE}::User"
AGENT_TYPE = f"{NAMESPACE}::Agent"
ROLE_TYPE = f"{NAMESPACE}::Role"
ACTION_TYPE = f"{NAMESPACE}::Action"
GATEWAY = {"type": f"{NAMESPACE}::Gateway", "id": "agentcore"}
SCHEMA_FILE = "schema.cedarschema"
BUNDLE_FILE = "policies.bundle.json"
BUNDLE_FORMAT = 3
TOOL_SEPARATOR = "___"
ENTITY_CACHE_SIZE = 256  # callers whose entities (and visible tools) a container keeps, at most
ENTITY_CACHE_ACTIONS = 500_000  # and tools x callers at most: each caller's entity set copies every tool's action
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1  # Cedar's Long; its decimal is a Long count of 1/10,000ths
DECIMAL_SCALE = 10_000
_MAX_EXPONENT = 40  # beyond 10**40 or below 10**-40: no Long or decimal (a Long has 19 digits, a decimal 4 places)
# Cedar prints a canonical schema with one `action "<name>" [in [<parents>]] (appliesTo {|;)` per line;
# tools are the actions with `appliesTo`. (Which groups a tool is in is read from Cedar's entity store.)
_ACTION = re.compile(r'^\s*action ("(?:[^"\\]|\\.)*")(?: in \[[^\]]*\])?( appliesTo \{|;)', re.MULTILINE)
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|::|[A-Za-z_][A-Za-z0-9_]*|\S)')
_RUST_UNESCAPE = re.compile(r"\\(u\{([0-9a-fA-F]{1,6})\}|.)", re.DOTALL)
_NO_TEMPLATES: dict[str, Any] = {"templates": {}, "templateLinks": []}
_WIDENED = {"op": "All"}
_UNKNOWN_INPUT = {"__extn": {"fn": "unknown", "arg": "input"}}  # partial evaluation: the arguments are not known

# A Cedar type as `cedar_input` needs it, in JSON (bundles hold one per tool): a type name ("Long", "decimal",
# "String", ...), {"set": <element>} or {"attrs": {<name>: <type>}, "optional": [<names>]}. OPAQUE: a type the
# schema names but this reader does not resolve (an alias, an entity); its values reach Cedar unchanged.
type Shape = str | dict[str, Any]
OPAQUE = "opaque"


class PolicySetInvalid(Problems):
    """Policies or schema failed to load or validate; `problems` says where and why (for the logs)."""

    reason = Reason.POLICY_SET_INVALID


class Gate(NamedTuple):
    """One gate's answer on a delegated call: `who` is "user" (principal the user, `context.agent` set) or "agent"
    (principal the agent); `policy_ids` are its determining policies."""

    who: str
    allowed: bool
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...]


class Decision(NamedTuple):
    """The outcome of one authorization: only `allowed` True lets a call through. A delegated call (an agent
    present) also carries both gates' answers in `gates` (user, agent); a call without an agent carries none."""

    allowed: bool
    reason: Reason
    policy_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = ()


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
    inputs: Mapping[str, Shape]  # every tool -> the Cedar type of its `context.input` (see `cedar_input`)
    callable: frozenset[str]  # tools the schema lets a User call at the Gateway (others always fail to build)
    policies: tuple[CompiledPolicy, ...]
    agent_callable: frozenset[str] = frozenset()  # tools the schema lets an Agent call (the agent gate's scope)

    @property
    def tools(self) -> tuple[str, ...]:
        """Every tool the schema declares, sorted."""
        return tuple(sorted(self.inputs))

    def to_json(self) -> str:
        """The bundle file's text: deterministic, so `teleport-policy build --check` can compare it."""
        body = {
            "format": BUNDLE_FORMAT,
            "digest": self.digest,
            "files": list(self.files),
            "inputs": dict(sorted(self.inputs.items())),
            "callable": sorted(self.callable),
            "agent_callable": sorted(self.agent_callable),
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
            inputs = body["inputs"]
            if not isinstance(inputs, dict):
                return None
            return cls(
                digest,
                tuple(body["files"]),
                inputs,
                frozenset(body["callable"]),
                policies,
                frozenset(body["agent_callable"]),
            )
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
    inputs = tool_inputs(schema)
    tools = frozenset(inputs)
    static = static_entities(schema)
    members = tool_members(static, tools)
    return CompiledSet(
        bundle_digest(source),
        tuple(source.files),
        inputs,
        frozenset(tool for tool in tools if _callable_by(USER_TYPE, tool, schema, static)),
        tuple(_compiled(policy_id, policy, tools, members) for policy_id, policy in policies.items()),
        frozenset(tool for tool in tools if _callable_by(AGENT_TYPE, tool, schema, static)),
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


def tool_inputs(schema: cedarpy.Schema) -> dict[str, Shape]:
    """The actions that are tools (declared with `appliesTo`) and the Cedar type of each one's `context.input`,
    read from Cedar's canonical schema text (cedarpy offers no other view of a schema). A schema that types a
    reserved argument name is refused: no policy can be written to read what only the interceptor sets."""
    text = str(schema)
    inputs: dict[str, Shape] = {}
    for match in _ACTION.finditer(text):
        if match.group(2) == ";":
            continue
        try:
            tool = _unquote(match.group(1))
            applies_to = _SchemaReader(text, match.end()).record()
        except ValueError:
            raise PolicySetInvalid(["schema: a tool's declaration cannot be read from Cedar's schema text"]) from None
        context = applies_to["attrs"].get("context")
        record = context.get("attrs") if isinstance(context, dict) else None
        inputs[tool] = record.get("input", OPAQUE) if record is not None else OPAQUE
    reserved = [
        f"schema: tool {tool!r} declares argument {name!r}: names under {RESERVED_PREFIX!r} belong to the interceptor"
        for tool, shape in inputs.items()
        if isinstance(shape, dict)
        for name in shape.get("attrs", ())
        if is_reserved(name)
    ]
    if reserved:  # no policy may read one: they are removed before policy and stamped after it
        raise PolicySetInvalid(reserved)
    return inputs


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


def _callable_by(principal_type: str, tool: str, schema: cedarpy.Schema, static: cedarpy.Entities) -> bool:
    """Whether the schema lets a principal of `principal_type` (User, Agent) call `tool` on the `Gateway` at all;
    if not, every such call fails to build and is refused (`policy_error`), whatever the policies say."""
    request = {
        "principal": cedar_uid(principal_type, "schema-probe"),
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
    so `in Role::"r"` matches holders of role r and `==`/`in User::"u"` matches u; and Agents, which have no
    ancestors, so `==`/`in Agent::"a"` matches a. Any other form: None (evaluated for every caller; evaluating a
    policy that cannot match changes no answer)."""
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
    if entity["type"] == AGENT_TYPE:
        return ("agent", entity["id"])
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
# Arguments as Cedar sees them


class Untypable(Refusal):
    """An argument Cedar cannot hold as the type the schema gives it (`policy_error`). The message names the
    argument, never its value (it is logged and audited)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.POLICY_ERROR, detail)


def cedar_input(arguments: Mapping[str, Any], shape: Shape) -> Any:
    """`context.input` for a call: the arguments typed by the tool's input type. JSON has null and one kind of
    number, Cedar neither: a null optional argument is absent (how MCP SDKs publish optional arguments); a number
    becomes a `Long` when it is an integer (5.0 too: JSON Schema's `integer` admits it) or a `decimal` when it has
    at most 4 decimal places, both within 64 bits. Anything else raises `Untypable`, or reaches Cedar as sent and
    fails its strict check: policies never see a value they cannot type."""
    return _typed(arguments, shape, "")


def _typed(value: Any, shape: Shape, path: str) -> Any:
    if value is None:
        raise Untypable(f"argument {path!r} is null where the tool's schema requires a value")
    if shape == "Long":
        return _long(value, path)
    if shape == "decimal":
        return _decimal(value, path)
    if isinstance(shape, dict) and "set" in shape and isinstance(value, list):
        return [_typed(item, shape["set"], f"{path}[]") for item in value]
    if isinstance(shape, dict) and "attrs" in shape and isinstance(value, dict):
        attrs, optional = shape["attrs"], shape["optional"]
        return {
            name: _typed(item, attrs[name], f"{path}.{name}" if path else name) if name in attrs else item
            for name, item in value.items()
            if not (item is None and name in optional)  # null = absent, for an attribute that may be absent
        }
    return value  # Cedar checks it against the schema (an undeclared or mistyped value fails to build)


def _long(value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    numerator, denominator = _exact(value, path)
    if denominator != 1 or not LONG_MIN <= numerator <= LONG_MAX:
        raise Untypable(f"argument {path!r} is not an integer a Cedar Long holds (64-bit)")
    return numerator


def _decimal(value: Any, path: str) -> dict[str, Any]:
    """Cedar's JSON for a decimal. Only numbers: Cedar itself would read the string "1.5" as decimal("1.5"), a
    value the tool receives as a string."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise Untypable(f"argument {path!r} is not a number")
    numerator, denominator = _exact(value, path)
    scaled, rest = divmod(numerator * DECIMAL_SCALE, denominator)
    if rest or not LONG_MIN <= scaled <= LONG_MAX:
        raise Untypable(
            f"argument {path!r} is not a number a Cedar decimal holds exactly "
            "(at most 4 decimal places, at most 922337203685477.5807 in size)"
        )
    whole, fraction = divmod(abs(scaled), DECIMAL_SCALE)
    text = f"{'-' if scaled < 0 else ''}{whole}.{f'{fraction:04d}'.rstrip('0') or '0'}"
    return {"__extn": {"fn": "decimal", "arg": text}}


def _exact(value: int | float | Decimal, path: str) -> tuple[int, int]:
    """The number as a fraction in lowest terms. A float is read as the shortest decimal that is that float (its
    `repr`, what the JSON text said), not as its binary value: 0.1 is one tenth."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    # NaN and infinities (strict JSON has none, a Python caller might); no Long or decimal is nearly this long, and
    # an exponent like 1e-999999999 would cost a billion-digit fraction.
    if not number.is_finite() or abs(number.adjusted()) > _MAX_EXPONENT:
        raise Untypable(f"argument {path!r} is not a number Cedar can hold")
    return number.as_integer_ratio()


class _SchemaReader:
    """Types in Cedar's canonical schema text, read from one position: records (`{a: T, "b c"?: T}`), `Set<T>`,
    names; lists of entity types (`[User]`, in `appliesTo`) and annotations are skipped."""

    def __init__(self, text: str, position: int) -> None:
        self._text, self._position = text, position

    def _next(self) -> str:
        match = _TOKEN.match(self._text, self._position)
        if match is None:
            raise ValueError("schema text ends inside a type")
        self._position = match.end()
        return match.group(1)

    def _peek(self) -> str:
        match = _TOKEN.match(self._text, self._position)
        return match.group(1) if match else ""

    def _expect(self, word: str) -> None:
        if self._next() != word:
            raise ValueError(f"expected {word!r} in schema text")

    def record(self) -> dict[str, Any]:
        """A record's attributes, after its opening `{`."""
        attrs: dict[str, Shape] = {}
        optional: list[str] = []
        while (word := self._next()) != "}":
            while word == "@":  # an annotation: @name or @name("text")
                self._next()
                if self._peek() == "(":
                    self._expect("(")
                    self._next()
                    self._expect(")")
                word = self._next()
            name = _unquote(word) if word.startswith('"') else word
            if self._peek() == "?":
                self._next()
                optional.append(name)
            self._expect(":")
            attrs[name] = self.type()
            if self._peek() == ",":
                self._next()
        return {"attrs": attrs, "optional": optional}

    def type(self) -> Shape:
        word = self._next()
        if word == "{":
            return self.record()
        if word == "[":  # entity types a scope applies to
            while self._next() != "]":
                pass
            return OPAQUE
        if not word[0].isalpha() and word[0] != "_":
            raise ValueError(f"unexpected {word!r} in schema text")
        while self._peek() == "::":
            self._next()
            word += "::" + self._next()
        if self._peek() == "<":
            self._next()
            element = self.type()
            self._expect(">")
            return {"set": element} if word in {"Set", "__cedar::Set"} else OPAQUE
        return word.removeprefix("__cedar::")


def _unquote(word: str) -> str:
    """A string as Cedar prints it (Rust's `escape_debug`, the inverse of `cedar_uid`'s rendering)."""
    if len(word) < 2 or word[0] != '"' or word[-1] != '"':
        raise ValueError("not a quoted string")

    def unescape(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            return chr(int(match.group(2), 16))
        if match.group(1) not in _RUST_UNESCAPES:
            raise ValueError("unknown escape in schema text")
        return _RUST_UNESCAPES[match.group(1)]

    return _RUST_UNESCAPE.sub(unescape, word[1:-1])


# ---------------------------------------------------------------------------------------------------------------
# Evaluating


def context_text(context: Mapping[str, Any]) -> str:
    """A request's context as the JSON text `decide` passes Cedar, for JSON values (what `authorize` takes: the
    gateway proves a body holds only those at parse, `teleport-policy` where it reads arguments). orjson writes
    them as cedarpy's wrapper (`json.dumps`) does, but for NaN and infinities (orjson: null; Cedar refuses both
    texts). What orjson refuses is written by the wrapper's encoder, as before: an integer beyond 64 bits (a body
    may hold one; Cedar refuses it), a lone surrogate, a key that is no string, and (`PLAIN_TYPES_ONLY`) a
    subclass, dataclass or datetime a direct caller passes (`json.dumps` writes the first, refuses the others)."""
    try:
        return orjson.dumps(context, option=jsontext.PLAIN_TYPES_ONLY).decode()
    except orjson.JSONEncodeError:
        return json.dumps(context)


def decide(
    requests: list[dict[str, Any]], policies: cedarpy.PolicySet, entities: cedarpy.Entities, schema: cedarpy.Schema
) -> list[dict[str, Any]]:
    """Cedar's answers to `requests` (context as `context_text`), from the extension `cedarpy.is_authorized_batch`
    wraps; the wrapper writes the context and reads every answer with the standard json module and builds result
    objects (26.9 us per decision through it, 22.4 us here: README, Performance). Each answer has `decision` and
    `diagnostics.errors`; `diagnostics.reason` is missing when the request could not be built (NoDecision)."""
    answers = cedar_extension.is_authorized_batch(requests, policies, entities._inner, schema, False)
    return [orjson.loads(answer) for answer in answers]


@dataclass(frozen=True)
class PolicyGroup:
    """Some compiled policies parsed into one Cedar set. Cedar names policies parsed from text by position
    (`policy<n>`); `members` maps each such name to the policy's index in `CompiledSet.policies` (a lookup, not
    a parse of the name, on every decision)."""

    policies: cedarpy.PolicySet
    members: Mapping[str, int]

    @classmethod
    def parse(cls, texts: Sequence[str], members: Sequence[int]) -> PolicyGroup:
        names = {f"policy{position}": index for position, index in enumerate(members)}
        return cls(cedarpy.PolicySet.from_str("\n".join(texts)), names)

    def member(self, cedar_id: str) -> int:
        """The compiled-set index of the policy Cedar calls `cedar_id`."""
        return self.members[cedar_id]


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
        self.caller_cache_size = caller_cache_size(len(self.compiled.tools))
        self._principals: LRUDict[tuple[Any, ...], cedarpy.Entities] = LRUDict(self.caller_cache_size)

    @classmethod
    def load(cls, folder: Path) -> PolicyEngine:
        """The policies in `folder`: from its bundle when that matches the files, else read and strictly validated."""
        return cls(PolicySource.read(folder))

    def authorize(
        self, identity: Identity, tool: str, arguments: Mapping[str, Any], agent: Agent | None = None
    ) -> Decision:
        """Decide whether `identity` may call `tool` with `arguments`, the agent's own: reserved names already
        removed (`stamping.split_reserved`, `tool_identity.tool_arguments`), as every caller does where arguments
        enter. Anything but Allow is a deny. With an `agent`, two gates in one Cedar batch decide, and both must
        allow (`_delegated`)."""
        group = self._group(tool)
        if group is None:
            return Decision(False, Reason.TOOL_UNKNOWN)
        try:
            typed = cedar_input(arguments, self.compiled.inputs[tool])  # policies never see an untypable value
        except Untypable as exc:
            return Decision(False, Reason.POLICY_ERROR, errors=(str(exc),))
        if agent is not None:
            return self._delegated(group, identity, agent, tool, typed)
        request = {
            "principal": {"type": USER_TYPE, "id": identity.user},
            "action": {"type": ACTION_TYPE, "id": tool},
            "resource": GATEWAY,
            "context": context_text({"input": typed}),
        }
        answer = decide([request], group.policies, self._entities(identity), self._schema)[0]
        diagnostics = answer["diagnostics"]  # read here, not through a `Gate`: one gate needs no record of itself
        ids = self.named(group, diagnostics.get("reason", ()))
        if diagnostics["errors"]:
            # A policy whose condition errors is skipped; a skipped forbid would loosen access: refuse.
            return Decision(False, Reason.POLICY_ERROR, ids, self._described(group, diagnostics["errors"]))
        if answer["decision"] == "Allow":
            return Decision(True, Reason.ALLOWED, ids)
        return Decision(False, Reason.POLICY_DENIED, ids)

    def _delegated(self, group: PolicyGroup, identity: Identity, agent: Agent, tool: str, typed: Any) -> Decision:
        """Both gates of a delegated call in one batch: the user (with `context.agent`) and the agent (what this
        agent may ever do, whoever it acts for). An error in either refuses (`policy_error`); a user refusal is
        `policy_denied`, an agent refusal alone `agent_denied`."""
        if tool not in self.compiled.agent_callable:
            problem = "the policy schema does not let agents call this tool (regenerate it: teleport-policy schema)"
            return Decision(False, Reason.POLICY_ERROR, errors=(problem,))
        action = {"type": ACTION_TYPE, "id": tool}
        context = context_text({"input": typed, "agent": {"__entity": {"type": AGENT_TYPE, "id": agent.spiffe_id}}})
        requests = [
            {"principal": {"type": who, "id": name}, "action": action, "resource": GATEWAY, "context": context}
            for who, name in ((USER_TYPE, identity.user), (AGENT_TYPE, agent.spiffe_id))
        ]
        entities = self._entities(identity, agent)
        answers = decide(requests, group.policies, entities, self._schema)
        user, delegate = (
            self._gate(who, group, answer) for who, answer in zip(("user", "agent"), answers, strict=True)
        )
        gates = (user, delegate)
        if user.errors or delegate.errors:
            errors = tuple(f"{gate.who} gate: {error}" for gate in gates for error in gate.errors)
            ids = tuple(sorted({*user.policy_ids, *delegate.policy_ids}))
            return Decision(False, Reason.POLICY_ERROR, ids, errors, gates)
        if not user.allowed:
            return Decision(False, Reason.POLICY_DENIED, user.policy_ids, gates=gates)
        if not delegate.allowed:
            return Decision(False, Reason.AGENT_DENIED, delegate.policy_ids, gates=gates)
        return Decision(True, Reason.ALLOWED, tuple(sorted({*user.policy_ids, *delegate.policy_ids})), gates=gates)

    def _gate(self, who: str, group: PolicyGroup, answer: dict[str, Any]) -> Gate:
        """One gate of a delegated call, as `authorize` reads a single one: errors refuse."""
        diagnostics = answer["diagnostics"]
        ids = self.named(group, diagnostics.get("reason", ()))
        if diagnostics["errors"]:
            return Gate(who, False, ids, self._described(group, diagnostics["errors"]))
        return Gate(who, answer["decision"] == "Allow", ids, ())

    def _described(self, group: PolicyGroup, errors: Iterable[str]) -> tuple[str, ...]:
        return tuple(self._describe_error(error, group) for error in errors)

    def named(self, group: PolicyGroup, cedar_ids: Iterable[str]) -> tuple[str, ...]:
        """The authors' ids of the policies Cedar names by position in `group`, sorted."""
        policies, members = self.compiled.policies, group.members
        return tuple(sorted([policies[members[cedar_id]].id for cedar_id in cedar_ids]))

    def _group(self, tool: str) -> PolicyGroup | None:
        """The tool's policy slice as a Cedar set, parsed on the tool's first call; None for an unknown tool."""
        group = self._groups.get(tool)
        if group is None and tool in self._own:
            members = sorted((*self._everywhere, *self._own[tool]))
            group = PolicyGroup.parse([self.compiled.policies[i].text for i in members], members)
            self._groups[tool] = group
        return group

    def _entities(self, identity: Identity, agent: Agent | None = None) -> cedarpy.Entities:
        """Static entities plus this principal (and agent), kept for those seen recently (tokens are reused)."""
        key = identity.principal_key if agent is None else (*identity.principal_key, agent.spiffe_id)
        entities = self._principals.get(key)  # the warm path: no closure to build on a hit
        return self._store(key, lambda: principal_entities(identity, agent)) if entities is None else entities

    def _store(self, key: tuple[Any, ...], build: Callable[[], list[dict[str, Any]]]) -> cedarpy.Entities:
        entities = self._principals.get(key)
        if entities is None:
            entities = self._static.with_added_json_str(json.dumps(build()))
            self._principals[key] = entities
        return entities

    def _describe_error(self, error: str, group: PolicyGroup) -> str:
        """Cedar's error text quotes argument values; keep only what kind of error it was, and which policy."""
        if error.startswith("failed to build request"):
            return "the arguments do not match the tool's input schema"
        match = re.search(r"policy `?(policy\d+)`?", error)
        if match is None:
            return "a policy failed to evaluate"
        return f"policy {self.named(group, [match.group(1)])[0]} failed to evaluate"

    def _listing_request(self, principal: Principal, tool: str) -> dict[str, Any]:
        """Uids in Cedar syntax, the only form partial evaluation takes; full probes use the same form, so a
        caller whose name Cedar cannot read fails both the same way."""
        return {
            "principal": cedar_uid(principal.type, principal.id),
            "action": cedar_uid(ACTION_TYPE, tool),
            "resource": cedar_uid(GATEWAY["type"], GATEWAY["id"]),
        }

    def partially_evaluate(
        self, who: Identity | Principal, tool: str, policies: cedarpy.PolicySet | None = None
    ) -> cedarpy.PartialAuthzResult:
        """Cedar partial evaluation of `who` (a user, or a `Principal` of either gate) calling `tool` with the
        arguments unknown, over `policies` (by default the tool's own slice). For listing only: it is never an
        authorization decision. A principal whose context is known but for the arguments (agent modes: the agent,
        or that there is none) is evaluated with `context.input` unknown and without the schema, which cannot
        type an unknown; otherwise the whole context is unknown, as always."""
        principal = who if isinstance(who, Principal) else user_principal(who)
        if policies is None:
            group = self._group(tool)
            if group is None:
                raise KeyError(tool)
            policies = group.policies
        request = self._listing_request(principal, tool)
        entities = self._store(principal.cache_key, lambda: list(principal.entities))
        if principal.context is None:
            return cedarpy.is_authorized_partial(request, policies, entities, self._schema)
        request["context"] = {**principal.context, "input": _UNKNOWN_INPUT}
        return cedarpy.is_authorized_partial(request, policies, entities)

    def probe(self, who: Identity | Principal, tool: str, policies: cedarpy.PolicySet) -> cedarpy.AuthzResult:
        """Cedar full evaluation of `who` over `policies` that never read the context (so none is given, and no
        schema check of the request). For listing only: it is never an authorization decision."""
        principal = who if isinstance(who, Principal) else user_principal(who)
        entities = self._store(principal.cache_key, lambda: list(principal.entities))
        return cedarpy.is_authorized(self._listing_request(principal, tool), policies, entities)


@dataclass(frozen=True)
class Principal:
    """Whom one gate asks about, as tool listing needs it: Cedar uid, the principal-index keys its policies can be
    filed under (`CompiledPolicy.principal`), its entities, and the context known besides the arguments (None:
    none, the whole context unknown, as without agents). Built by `user_principal` and `agent_principal`."""

    type: str
    id: str
    keys: tuple[tuple[str, str] | None, ...]
    cache_key: tuple[Any, ...]
    entities: tuple[dict[str, Any], ...]
    context: Mapping[str, Any] | None = None


def user_principal(identity: Identity, agent: Agent | None = None, *, known_context: bool = False) -> Principal:
    """The user gate's principal; with `known_context` (agent modes) `context.agent` is known: the agent, or absent."""
    roles = sorted(set(identity.roles))
    key = identity.principal_key
    context: dict[str, Any] | None = None
    if agent is not None:  # the same key as the entities `PolicyEngine._entities` builds for this pair
        key += (agent.spiffe_id,)
    if known_context:
        context = {} if agent is None else {"agent": {"__entity": {"type": AGENT_TYPE, "id": agent.spiffe_id}}}
    return Principal(
        USER_TYPE,
        identity.user,
        (None, *(("role", role) for role in roles), ("user", identity.user)),
        key,
        tuple(principal_entities(identity, agent)),
        context,
    )


def agent_principal(agent: Agent) -> Principal:
    """The agent gate's principal: the agent, with `context.agent` naming itself, as on its calls."""
    context = {"agent": {"__entity": {"type": AGENT_TYPE, "id": agent.spiffe_id}}}
    return Principal(
        AGENT_TYPE,
        agent.spiffe_id,
        (None, ("agent", agent.spiffe_id)),
        ("agent", agent.spiffe_id),
        (agent_entity(agent),),
        context,
    )


def caller_cache_size(tools: int) -> int:
    """How many callers to keep per container: 256, fewer where each caller's entity set copies thousands of
    actions (~0.75 MB per caller at 5,000 tools, measured), so the caches stay within ~75 MB at any gateway size."""
    return max(16, min(ENTITY_CACHE_SIZE, ENTITY_CACHE_ACTIONS // max(1, tools)))


def principal_entities(identity: Identity, agent: Agent | None = None) -> list[dict[str, Any]]:
    """The request's entities as `{"type", "id"}` dicts: the user, in one Role per Teleport role (and the agent)."""
    roles = [{"type": ROLE_TYPE, "id": role} for role in identity.roles]
    user = {
        "uid": {"type": USER_TYPE, "id": identity.user},
        "attrs": {"name": identity.user, "bot": identity.bot},
        "parents": roles,
        "tags": {name: list(values) for name, values in identity.traits.items()},
    }
    agents = [agent_entity(agent)] if agent is not None else []
    return [user, *({"uid": role, "attrs": {}, "parents": []} for role in roles), *agents]


def agent_entity(agent: Agent) -> dict[str, Any]:
    """`Teleport::Agent::"<spiffe id>"`: `name` (the SPIFFE ID), `bot` (always false: it marks Machine ID users;
    it exists so policies written for users keep validating), `trust_domain` and `path`. No parents, no tags."""
    return {
        "uid": {"type": AGENT_TYPE, "id": agent.spiffe_id},
        "attrs": {"name": agent.spiffe_id, "bot": False, "trust_domain": agent.trust_domain, "path": agent.path},
        "parents": [],
    }


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
_RUST_UNESCAPES = {escaped[1:]: char for char, escaped in _RUST_ESCAPES.items()}


def policy_set_digest(source: PolicySource) -> str:
    """A short content hash of a policy folder (file names, policies and schema): names the set in audit records."""
    content = json.dumps([source.schema, sorted(source.files.items())])
    return hashlib.sha256(content.encode()).hexdigest()[:12]
