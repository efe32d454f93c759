"""RESPONSE phase: each caller sees only the tools some call could allow them (AgentCore Policy's listing rule).

The rule, per tool, is Cedar partial evaluation with the arguments (`context`) unknown: the tool stays when a
permit is satisfied or depends only on the arguments and no forbid is satisfied whatever the arguments, and
nothing errors or needs an entity outside the store (full evaluation would refuse such calls). A tool the
schema does not know, or that no user can call, is hidden.

Evaluating 500 tools one by one costs ~100 ms, so the same rule is computed with ONE partial evaluation per
caller: at init, every policy is copied with its action scope widened to any action (the per-tool groups say
which tools each policy applies to), so one evaluation tells which policies are satisfied, which depend on the
arguments and which cannot apply; each tool then combines the answers of its own group. This equals the
per-tool evaluation whenever no condition mentions `action` (such tools, and every tool of a caller whose
evaluation reports an error or unknown entity, are evaluated one by one), and results are cached per caller.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cedarpy
from aws_lambda_powertools import Logger
from cedarpy import pst

from interceptor.contract import TOOLS_CALL, McpRequest
from interceptor.logs import SERVICE
from interceptor.policy import ENTITY_CACHE_SIZE, TOOL_SEPARATOR, PolicyEngine
from interceptor.tokens import Identity

logger = Logger(service=SERVICE, child=True)

TOOLS_LIST = "tools/list"
SEARCH_TOOL = "x_amz_bedrock_agentcore_search"
HIDDEN_NAMES_AUDITED = 100
UNNAMED = "<unnamed>"


class Unfilterable(Exception):
    """A response that should carry tools but whose tool list cannot be read: it must not reach the caller."""


def lists_tools(request: McpRequest) -> bool:
    """Whether the answer to `request` is a tool list: `tools/list`, or a call of the semantic search tool."""
    return request.method == TOOLS_LIST or (request.method == TOOLS_CALL and request.tool == SEARCH_TOOL)


def carries_tools(request: McpRequest, body: Any) -> bool:
    """Whether a response needs filtering. Only a JSON-RPC object without `result` (an error, e.g. a REQUEST
    short-circuit) or no body at all is known to hold no tools; anything else is filtered or refused."""
    no_result = body is None or (isinstance(body, Mapping) and "result" not in body)
    return lists_tools(request) and not no_result


def could_allow(result: cedarpy.PartialAuthzResult) -> bool:
    """The listing rule on one tool's partial evaluation (every policy of the group is in `residuals`)."""
    if not _usable(result):
        return False
    effects = {pid: residual.get("effect") for pid, residual in result.residuals.items()}
    group = _Group(
        frozenset(pid for pid, effect in effects.items() if effect == "permit"),
        frozenset(pid for pid, effect in effects.items() if effect == "forbid"),
    )
    return group.may_allow(*_outcomes(result))


def _usable(result: cedarpy.PartialAuthzResult) -> bool:
    """An evaluation that errored or needed an entity outside the store says nothing a full evaluation would
    agree with (it refuses such calls): it cannot show a tool."""
    return not (result.diagnostics.errors or result.diagnostics.unknown_entities)


def _outcomes(result: cedarpy.PartialAuthzResult) -> tuple[frozenset[str], frozenset[str]]:
    """(policies satisfied whatever the arguments, policies that are or may be satisfied)."""
    satisfied = frozenset(result.diagnostics.reasons)
    return satisfied, satisfied | frozenset(result.diagnostics.nontrivial_residuals)


@dataclass
class Filtered:
    """A tool-carrying response after filtering: `body` is what enforce mode returns."""

    body: Any
    kept: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    dropped_items: int = 0

    def audit_fields(self, policy_set: str) -> dict[str, Any]:
        """Who-saw-what for the audit record: counts, the hidden names (capped), the policy set's digest."""
        return {
            "tools_kept": len(self.kept),
            "tools_hidden": len(self.hidden),
            "hidden_tools": self.hidden[:HIDDEN_NAMES_AUDITED],
            "content_dropped": self.dropped_items,
            "policy_set": policy_set,
        }


def filter_response(body: Any, visible: frozenset[str]) -> Filtered:
    """Keep only the `visible` tools in `result.tools`, `result.structuredContent.tools` and the JSON tool lists
    in `result.content[].text`; everything else (nextCursor, annotations, order, other keys) is kept. A content
    item that may name a gateway tool but holds no readable tool list is dropped. The input is not modified."""
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            raise Unfilterable("response body is not JSON") from None
        out = filter_response(parsed, visible)
        out.body = json.dumps(out.body)
        return out
    if not isinstance(body, Mapping):
        raise Unfilterable("response body is not a JSON-RPC object")
    out = Filtered(body)
    if "result" not in body:
        return out
    result = body["result"]
    if not isinstance(result, Mapping):
        raise Unfilterable("result is not an object")
    filtered = dict(result)
    if "tools" in result:
        filtered["tools"] = _tools(result["tools"], visible, out)
    structured = result.get("structuredContent")
    if isinstance(structured, Mapping) and "tools" in structured:
        filtered["structuredContent"] = {**structured, "tools": _tools(structured["tools"], visible, out)}
    if "content" in result:
        filtered["content"] = _content(result["content"], visible, out)
    out.body = {**body, "result": filtered}
    return out


def _tools(tools: Any, visible: frozenset[str], out: Filtered) -> list[Any]:
    if not isinstance(tools, list):
        raise Unfilterable("a tools value is not a list")
    kept = []
    for tool in tools:
        name = tool.get("name") if isinstance(tool, Mapping) else None
        if isinstance(name, str) and name in visible:
            kept.append(tool)
            out.kept.append(name)
        else:
            out.hidden.append(name if isinstance(name, str) else UNNAMED)
    return kept


def _content(items: Any, visible: frozenset[str], out: Filtered) -> list[Any]:
    """Semantic search answers with tool JSON in text items; filter those, drop what cannot be read."""
    if not isinstance(items, list):
        raise Unfilterable("result.content is not a list")
    kept = []
    for item in items:
        parsed = _json_object(item.get("text")) if isinstance(item, Mapping) else None
        if parsed is not None and "tools" in parsed:
            kept.append({**item, "text": json.dumps({**parsed, "tools": _tools(parsed["tools"], visible, out)})})
        elif TOOL_SEPARATOR in json.dumps(item, ensure_ascii=False):  # may name a tool: cannot be filtered
            out.dropped_items += 1
        else:
            kept.append(item)
    return kept


def _json_object(text: Any) -> Mapping[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, Mapping) else None


@dataclass(frozen=True)
class _Group:
    """One tool's policy group, reduced to what the rule needs: which ids permit and which forbid."""

    permits: frozenset[str]
    forbids: frozenset[str]

    def may_allow(self, satisfied: frozenset[str], possible: frozenset[str]) -> bool:
        """Some permit is or may be satisfied, and no forbid is satisfied whatever the arguments."""
        return not self.permits.isdisjoint(possible) and self.forbids.isdisjoint(satisfied)


@dataclass
class _Plan:
    """How each tool is decided; a tool in neither set is never visible (no permit, or no user can call it)."""

    groups: dict[str, _Group] = field(default_factory=dict)  # by the one evaluation per caller
    policies: dict[str, pst.Template] = field(default_factory=dict)  # the grouped tools' policies, by id
    one_by_one: set[str] = field(default_factory=set)  # a condition reads `action`: evaluated on their own


def _plan(engine: PolicyEngine) -> _Plan:
    """Sort the tools at init. Raises ValueError when cedarpy cannot model a construct in the policies."""
    plan = _Plan()
    reads_action: dict[str, bool] = {}
    for tool, tree in sorted(engine.policy_trees().items()):
        group = tree.static_policies
        for pid, policy in group.items():
            if pid not in reads_action:
                reads_action[pid] = _mentions_action(policy.clauses)
        if any(reads_action[pid] for pid in group):
            plan.one_by_one.add(tool)
            continue
        permits = frozenset(pid for pid, policy in group.items() if policy.effect == "permit")
        if permits and engine.callable_by_users(tool):
            plan.groups[tool] = _Group(permits, frozenset(group.keys() - permits))
            plan.policies.update(group)
    return plan


def _widen(policies: Mapping[str, pst.Template]) -> cedarpy.PolicySet:
    """The policies with their action scope widened to any action, so one evaluation answers for every tool."""
    widened = {pid: dataclasses.replace(policy, action=pst.ScopeAny()) for pid, policy in policies.items()}
    return cedarpy.PolicySet.from_pst(
        pst.PolicySet(templates=pst.FrozenMap(), static_policies=pst.FrozenMap(widened), template_links=())
    )


class ToolLister:
    """Which tools each caller may see, per container: analysed at init, computed once per caller and cached."""

    def __init__(self, engine: PolicyEngine, policy_set: str) -> None:
        self.policy_set = policy_set
        self._engine = engine
        try:
            plan = _plan(engine)
            widened = _widen(plan.policies) if plan.policies else None
        except ValueError as exc:  # every tool is evaluated on its own: slower, same answers
            logger.warning("tools/list filtering evaluates tool by tool", extra={"problem": str(exc)})
            plan, widened = _Plan(one_by_one=set(engine.tools)), None
        self._groups = plan.groups
        self._widened = widened
        self._one_by_one = frozenset(plan.one_by_one)
        self._probe = min(self._groups, default="")  # any grouped tool: widened policies ignore the action
        self._cache: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()

    def visible(self, identity: Identity) -> frozenset[str]:
        """The tools `identity` may see (callers repeat: Teleport reuses a token per MCP session)."""
        key = (identity.user, identity.roles, tuple(identity.traits.items()))
        tools = self._cache.get(key)
        if tools is None:
            tools = self._compute(identity)
            self._cache[key] = tools
            if len(self._cache) > ENTITY_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return tools

    def _compute(self, identity: Identity) -> frozenset[str]:
        visible: set[str] = set()
        one_by_one = self._one_by_one
        if self._widened is not None:
            result = self._engine.partially_evaluate(identity, self._probe, self._widened)
            if _usable(result):
                outcomes = _outcomes(result)
                visible.update(tool for tool, group in self._groups.items() if group.may_allow(*outcomes))
            else:
                one_by_one = one_by_one | self._groups.keys()  # only per-tool evaluation says which tools it hits
        visible.update(tool for tool in one_by_one if could_allow(self._engine.partially_evaluate(identity, tool)))
        return frozenset(visible)


def _mentions_action(node: object) -> bool:
    """Whether a policy syntax tree reads the `action` variable anywhere."""
    if isinstance(node, pst.Var):
        return node.name == "action"
    if isinstance(node, tuple):
        return any(_mentions_action(child) for child in node)
    if isinstance(node, Mapping):
        return any(_mentions_action(child) for child in node.values())
    if dataclasses.is_dataclass(node):
        return any(_mentions_action(getattr(node, f.name)) for f in dataclasses.fields(node))
    return False
