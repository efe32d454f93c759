"""RESPONSE phase: each caller sees only the tools some call could allow them (AgentCore Policy's listing rule).

The rule, per tool, is Cedar partial evaluation with the arguments (`context`) unknown: the tool stays when a
permit is satisfied or depends only on the arguments and no forbid is satisfied whatever the arguments, and
nothing errors or needs an entity outside the store (full evaluation would refuse such calls). A tool the
schema does not know, or that no user can call, is hidden.

Evaluating 500 tools one by one costs ~100 ms, so the same rule is computed per caller from a few evaluations
of the policies that can concern the caller at all: the compiled set says which callers each policy's principal
scope can match (anyone, holders of a role, one user) and which tools its action scope matches. At init the
lister parses each policy's probe form (action scope widened to any action) into one Cedar set per principal
key and evaluation mode: full evaluation for policies that never read the arguments, partial evaluation for the
others. A caller's list evaluates only the sets of its own keys; each tool then combines the answers of its own
policies through the action index, in time linear in the answers. This equals the per-tool evaluation whenever
no condition mentions `action` (such tools, and every tool of a caller whose evaluation reports an error or
unknown entity, are evaluated one by one), and results are cached per caller.

A delegated caller (an agent present, README "Agents") sees the intersection: the tools the user's gate could
allow with `context.agent` known to be that agent, and those the agent's own gate could allow. In the agent modes
the user's context is known but for the arguments (the agent, or that there is none), so rules on
`context.agent` are decided, not left open.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from interceptor.agents import Agent
from interceptor.contract import TOOLS_CALL, McpRequest
from interceptor.errors import Refusal
from interceptor.lru import LRUDict
from interceptor.policy import (
    TOOL_SEPARATOR,
    PolicyEngine,
    PolicyGroup,
    Principal,
    agent_principal,
    user_principal,
)
from interceptor.reasons import Reason
from interceptor.tokens import Identity

TOOLS_LIST = "tools/list"
SEARCH_TOOL = "x_amz_bedrock_agentcore_search"
UNNAMED = "<unnamed>"


def _unfilterable(why: str) -> Refusal:
    """A response that should carry tools but whose tool list cannot be read: it must not reach the caller."""
    return Refusal(Reason.INTERNAL_ERROR, f"tool list response cannot be filtered: {why}")


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
    satisfied, possible = _outcomes(result)
    permits = {pid for pid, effect in effects.items() if effect == "permit"}
    forbids = {pid for pid, effect in effects.items() if effect == "forbid"}
    return not permits.isdisjoint(possible) and forbids.isdisjoint(satisfied)


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
        """Who-saw-what for the audit record: counts, the hidden names (capped with the record, `audit.py`), the
        policy set's digest."""
        return {
            "tools_kept": len(self.kept),
            "tools_hidden": len(self.hidden),
            "hidden_tools": self.hidden,
            "content_dropped": self.dropped_items,
            "policy_set": policy_set,
        }


def filter_response(body: Any, visible: frozenset[str]) -> Filtered:
    """Keep only the `visible` tools in `result.tools`, `result.structuredContent.tools` and the JSON tool lists
    in `result.content[].text`; everything else (nextCursor, annotations, order, other keys) is kept. A content
    item that may name a gateway tool but holds no readable tool list is dropped. The input is not modified.
    A list that cannot be read is refused (`internal_error`)."""
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            raise _unfilterable("response body is not JSON") from None
        out = filter_response(parsed, visible)
        out.body = json.dumps(out.body)
        return out
    if not isinstance(body, Mapping):
        raise _unfilterable("response body is not a JSON-RPC object")
    out = Filtered(body)
    if "result" not in body:
        return out
    result = body["result"]
    if not isinstance(result, Mapping):
        raise _unfilterable("result is not an object")
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
        raise _unfilterable("a tools value is not a list")
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
        raise _unfilterable("result.content is not a list")
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


class ToolLister:
    """Which tools each caller may see, per container: indexed at init, computed once per caller and cached."""

    def __init__(self, engine: PolicyEngine, policy_set: str, *, known_context: bool = False) -> None:
        self.policy_set = policy_set
        self._engine = engine
        self._known_context = known_context  # agent modes: the user's `context.agent` is known (README "Agents")
        compiled = engine.compiled
        self._policies = compiled.policies
        one_by_one: set[str] = set()
        for policy in self._policies:
            if policy.probe is None:  # reads `action`: its tools are evaluated on their own
                one_by_one.update(compiled.tools if policy.tools is None else policy.tools)
        self._one_by_one = frozenset(one_by_one)
        self._grouped = compiled.callable - self._one_by_one  # decided by the evaluations per principal key
        self._targets: dict[int, frozenset[str] | None] = {}  # listable policy -> its grouped tools (None: all)
        chosen: dict[tuple[tuple[str, str] | None, bool], tuple[list[str], list[int]]] = {}
        for index, policy in enumerate(self._policies):
            targets = None if policy.tools is None else self._grouped.intersection(policy.tools)
            probe = policy.probe
            if probe is None or not (self._grouped if targets is None else targets):
                continue
            self._targets[index] = targets
            texts, members = chosen.setdefault((policy.principal, policy.reads_arguments), ([], []))
            texts.append(probe)
            members.append(index)
        self._sets = {key: PolicyGroup.parse(texts, members) for key, (texts, members) in chosen.items()}
        # grouped tools with some permit: what the rule shows if every permit may hold and no forbid surely does
        self._permitted = self._decide(set(), {i for i in self._targets if self._policies[i].effect == "permit"})
        self._probe_tool = min(self._grouped, default="")  # any grouped tool: probe forms ignore the action
        self._cache: LRUDict[tuple[Any, ...], frozenset[str]] = LRUDict(engine.caller_cache_size)

    def visible(self, identity: Identity, agent: Agent | None = None) -> frozenset[str]:
        """The tools `identity` may see, through `agent` when one acts for them: the intersection of both gates
        (callers repeat: Teleport reuses a token per MCP session)."""
        key = identity.principal_key
        if self._known_context:
            key += (agent.spiffe_id if agent is not None else None,)
        tools = self._cache.get(key)
        if tools is None:
            principal = user_principal(identity, agent, known_context=self._known_context)
            # only tools the schema lets a User call: a tool evaluated on its own without the schema (known
            # context) would otherwise show although every call of the user's fails to build
            tools = self._compute(principal) & self._engine.compiled.callable
            self._cache[key] = tools
        if agent is not None:
            tools &= self._visible_to_agent(agent)
        return tools

    def _visible_to_agent(self, agent: Agent) -> frozenset[str]:
        """What the agent's own gate could allow, whoever it acts for (only tools the schema lets agents call)."""
        key = ("agent", agent.spiffe_id)
        tools = self._cache.get(key)
        if tools is None:
            tools = self._compute(agent_principal(agent)) & self._engine.compiled.agent_callable
            self._cache[key] = tools
        return tools

    def _compute(self, principal: Principal) -> frozenset[str]:
        """A full and a partial evaluation per principal key of the caller; per tool only where they cannot say."""
        satisfied: set[int] = set()  # policies satisfied whatever the arguments
        possible: set[int] = set()  # policies that are or may be satisfied
        for key in principal.keys:
            for reads_arguments in (False, True):
                group = self._sets.get((key, reads_arguments))
                if group is None:
                    continue
                if reads_arguments:
                    partial = self._engine.partially_evaluate(principal, self._probe_tool, group.policies)
                    if not _usable(partial):  # only per-tool evaluation says which tools it concerns
                        return self._each(principal, self._permitted | self._one_by_one)
                    sure, maybe = _outcomes(partial)
                else:
                    full = self._engine.probe(principal, self._probe_tool, group.policies)
                    if full.diagnostics.errors:
                        return self._each(principal, self._permitted | self._one_by_one)
                    sure = maybe = frozenset(full.diagnostics.reasons)
                satisfied.update(group.member(cedar_id) for cedar_id in sure)
                possible.update(group.member(cedar_id) for cedar_id in maybe)
        return frozenset(self._decide(satisfied, possible)) | self._each(principal, self._one_by_one)

    def _decide(self, satisfied: set[int], possible: set[int]) -> set[str]:
        """The listing rule for every grouped tool at once: a tool of some possible permit, of no sure forbid."""
        shown: set[str] = set()
        for index in possible:
            if self._policies[index].effect == "permit":
                targets = self._targets[index]
                if targets is None:
                    shown = set(self._grouped)
                    break
                shown.update(targets)
        for index in satisfied:
            if self._policies[index].effect == "forbid":
                targets = self._targets[index]
                if targets is None:
                    return set()
                shown.difference_update(targets)
        return shown

    def _each(self, principal: Principal, tools: Iterable[str]) -> frozenset[str]:
        """The rule by one partial evaluation per tool, over the tool's own policies."""
        return frozenset(tool for tool in tools if could_allow(self._engine.partially_evaluate(principal, tool)))
