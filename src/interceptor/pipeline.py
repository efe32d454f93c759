"""The pipeline: REQUEST events -> parse -> authenticate -> authorize -> stamp -> respond; RESPONSE events ->
parse -> (tool lists only) authenticate -> filter -> respond; plus one audit record (carrying the metrics) per
event.

`handle` never raises: every step returns an `Outcome` or raises a `Refusal` (`errors.py`), and the handler's
single exit turns either into the gateway's answer and fills in the audit record's outcome, once. A container
that cannot serve is a `BrokenInterceptor` (built by `wiring.py`), which refuses every event with its reason.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from aws_lambda_powertools import Logger

from interceptor import contract, listing, protocol
from interceptor.agents import Agent, AgentCredentials
from interceptor.audit import Auditor, AuditRecord, Verdict
from interceptor.aws_session import SessionBroker
from interceptor.config import Mode
from interceptor.contract import MalformedEvent, McpRequest, McpResponse
from interceptor.errors import Refusal
from interceptor.listing import ToolLister
from interceptor.logs import SERVICE
from interceptor.policy import Decision, PolicyEngine
from interceptor.reasons import ANSWERS, Reason, message
from interceptor.stamping import split_reserved, stamp, without_reserved
from interceptor.tokens import Identity, TokenVerifier, bearer_token
from tool_identity import SESSION_ARG

logger = Logger(service=SERVICE, child=True)

_POLICY_REASONS = frozenset({Reason.POLICY_DENIED, Reason.AGENT_DENIED, Reason.TOOL_UNKNOWN, Reason.POLICY_ERROR})


class Outcome(NamedTuple):
    """What one event came to: the answer, and how its audit record states it."""

    output: dict[str, Any]
    reason: Reason
    decision: Verdict = "deny"
    forwarded: bool = False
    detail: str | None = None
    # Built only from parts proven strict JSON where they were made (the body at parse, the identity at
    # verification), so the exit does not encode it again; every other answer is proven there.
    proven: bool = False


class Handler(ABC):
    """What `wiring.build` returns: a serving `Interceptor` or a `BrokenInterceptor`. The frame both share: parse
    the event, check its method and headers, then `_request` / `_response`; the single exit answers and audits."""

    def __init__(self, mode: Mode, auditor: Auditor, forward_uncovered: frozenset[str]) -> None:
        self._mode = mode
        self._mode_name = mode.value  # as the audit record states it (read once, not per request)
        self._auditor = auditor
        self._forward_uncovered = forward_uncovered  # FORWARD_UNCOVERED_METHODS

    def handle(self, event: Any, lambda_request_id: str | None = None) -> dict[str, Any]:
        """Answer one interceptor event; always a valid interceptor output, never an exception."""
        started = time.perf_counter_ns()
        record = AuditRecord(phase="REQUEST", mode=self._mode_name, lambda_request_id=lambda_request_id)
        try:
            outcome = self._handle(event, record)
        except MalformedEvent as exc:  # the id it could read, the key to answer under
            record.rpc_id = exc.rpc_id
            outcome = _refused(exc.reason, exc.detail, exc.rpc_id, exc.target_kind)
        except Refusal as exc:
            outcome = _refused(exc.reason, exc.detail, record.rpc_id, hint=exc.hint)
        except Exception:
            logger.exception("unexpected error; request refused")
            outcome = _refused(Reason.INTERNAL_ERROR, None, record.rpc_id)
        if not outcome.proven and not contract.encodable(outcome.output):  # else the gateway could not read it
            rpc_id = record.rpc_id if contract.encodable(record.rpc_id) else None
            kind = "http" if "http" in outcome.output else "mcp"
            outcome = _refused(Reason.OUTPUT_INVALID, "answer is not strict JSON in UTF-8", rpc_id, kind)
        record.conclude(outcome.decision, outcome.reason, outcome.forwarded, outcome.detail)
        record.latency_us = (time.perf_counter_ns() - started) // 1000
        self._auditor.write(record)
        return outcome.output

    def _handle(self, event: Any, record: AuditRecord) -> Outcome:
        if isinstance(event, dict) and contract.is_response_phase(event):
            record.phase = "RESPONSE"
            response = contract.parse_response(event)
            self._admit(response.request, record)
            return self._response(response, record)
        request = contract.parse_request(event)
        self._admit(request, record)
        return self._request(request, record)

    def _admit(self, request: McpRequest, record: AuditRecord) -> None:
        """Describe the request in the record, then refuse a method or headers the contract does not let through
        (both phases, before any token or policy)."""
        record.method, record.rpc_id, record.tool = request.method, request.rpc_id, request.tool
        record.mcp_session_id = request.session_id
        contract.check_method(request, self._forward_uncovered)
        contract.check_headers(request)

    @abstractmethod
    def _request(self, request: McpRequest, record: AuditRecord) -> Outcome: ...

    @abstractmethod
    def _response(self, response: McpResponse, record: AuditRecord) -> Outcome: ...


class BrokenInterceptor(Handler):
    """A container that cannot serve (bad settings or policy set; the problems are logged at init). Events are
    still parsed and their method and headers checked, so the answer echoes the id and a malformed event is
    still called one; everything else is refused with `reason`, on both phases, whatever it carries."""

    def __init__(self, reason: Reason, mode: Mode, auditor: Auditor) -> None:
        super().__init__(mode, auditor, frozenset())
        self.reason = reason

    def _request(self, request: McpRequest, record: AuditRecord) -> Outcome:
        raise Refusal(self.reason, "interceptor cannot serve (see init logs)")

    def _response(self, response: McpResponse, record: AuditRecord) -> Outcome:
        return self._request(response.request, record)


class Interceptor(Handler):
    """Serves both interception points for one container's settings, keys and policies."""

    def __init__(
        self,
        verifier: TokenVerifier,
        engine: PolicyEngine,
        mode: Mode,
        auditor: Auditor,
        sessions: SessionBroker | None = None,
        *,
        lister: ToolLister,
        forward_uncovered: frozenset[str] = frozenset(),
        agents: AgentCredentials | None = None,
    ) -> None:
        super().__init__(mode, auditor, forward_uncovered)
        self._verifier = verifier
        self._engine = engine
        self._sessions = sessions
        self._lister = lister
        self._agents = agents  # None: AGENT_MODE off, no agent header is ever read

    def _request(self, request: McpRequest, record: AuditRecord) -> Outcome:
        identity, agent = self._authenticate(request, record)
        if request.tool is None:
            body, spoofed = without_reserved(request.body)
            record.spoofed_arguments = spoofed
            return Outcome(contract.forward_request(body), Reason.ALLOWED, "allow", forwarded=True, proven=True)
        return self._authorize_call(request, request.tool, identity, agent, record)

    def _response(self, response: McpResponse, record: AuditRecord) -> Outcome:
        """Tool lists are filtered for the verified caller; every other response passes unchanged (the REQUEST
        phase decided on it already, and nothing in it depends on who asks)."""
        if not listing.carries_tools(response.request, response.body) or protocol.interim(response.body):
            return Outcome(contract.pass_response(response), Reason.PASSTHROUGH, "allow", forwarded=True)
        identity, agent = self._authenticate(response.request, record)
        filtered = listing.filter_response(response.body, self._lister.visible(identity, agent))
        record.extra.update(filtered.audit_fields(self._lister.policy_set))
        if self._mode is Mode.LOG_ONLY:  # unfiltered: the upstream caching hints still hold
            output = contract.respond(response.status_code, response.body)
        else:
            body = protocol.filtered_result(filtered.body, response.request.method, response.request.modern)
            output = contract.respond(response.status_code, body)
        return Outcome(output, Reason.TOOLS_FILTERED, "filter", forwarded=True)

    def _authenticate(self, request: McpRequest, record: AuditRecord) -> tuple[Identity, Agent | None]:
        """The verified caller, and the verified agent acting for them (agent modes; None without one), recorded
        in the audit record; raises `Refusal`."""
        if request.headers is None:
            raise Refusal(Reason.HEADERS_MISSING, "event has no headers: passRequestHeaders is off")
        identity = self._verifier.verify(bearer_token(request.headers))
        record.user, record.roles, record.bot = identity.user, identity.roles, identity.bot
        if self._agents is None:
            return identity, None
        agent = self._agents.admit(request.headers, identity)
        if agent is not None:
            record.extra["agent"], record.extra["agent_jti"] = agent.spiffe_id, agent.token_id
        return identity, agent

    def _authorize_call(
        self, request: McpRequest, tool: str, identity: Identity, agent: Agent | None, record: AuditRecord
    ) -> Outcome:
        arguments, spoofed = split_reserved(request.arguments, request.body.get("params"))
        record.argument_names, record.spoofed_arguments = sorted(arguments), spoofed
        decision = self._engine.authorize(identity, tool, arguments, agent)
        record.policy_ids = decision.policy_ids
        for gate in decision.gates:
            record.extra[f"{gate.who}_decision"] = "allow" if gate.allowed else "deny"
            record.extra[f"{gate.who}_policy_ids"] = gate.policy_ids
        detail = None
        if decision.errors:
            detail = "; ".join(decision.errors)
            logger.error("policy evaluation errors; call refused", extra={"errors": list(decision.errors)})
        verdict: Verdict = "allow" if decision.allowed else "deny"
        if decision.allowed or (self._mode is Mode.LOG_ONLY and decision.reason in _POLICY_REASONS):
            try:
                # AWS credentials only for calls policy allows: log_only forwards denied calls without them.
                extra = self._session_argument(identity, agent, tool, record) if decision.allowed else {}
            except Refusal as exc:  # session_unavailable: the call is refused like a denial the agent can read
                logger.error("AWS session unavailable; call refused", extra={"problem": exc.detail})
                decision, verdict, detail = Decision(False, exc.reason), "deny", exc.detail
            else:
                output = contract.forward_request(stamp(request.body, arguments, identity, extra, agent))
                # proven: the body and the identity are; an AWS session argument is not (it is encoded at the exit)
                return Outcome(output, decision.reason, verdict, forwarded=True, detail=detail, proven=not extra)
        text = _denial(identity, agent, tool, decision)
        output = contract.respond(200, contract.tool_error(request.rpc_id, text, request.modern))
        return Outcome(output, decision.reason, verdict, detail=detail)

    def _session_argument(
        self, identity: Identity, agent: Agent | None, tool: str, record: AuditRecord
    ) -> dict[str, Any]:
        """The reserved AWS session argument for tools configured to receive one (else nothing)."""
        if self._sessions is None or not self._sessions.wants(tool):
            return {}
        session = self._sessions.session_for(identity, tool, agent.spiffe_id if agent is not None else None)
        record.extra.update(session.audit_fields)
        return {SESSION_ARG: session.argument}


def _denial(identity: Identity, agent: Agent | None, tool: str, decision: Decision) -> str:
    """What the agent reads when a call is refused: who may not call what, and why. On a delegated call each gate
    that refused says so ("Teleport user 'alice' ...", "the agent 'spiffe://...' ...")."""
    reason = f"(reason: {decision.reason.value})."
    refusing = [gate for gate in decision.gates if not gate.allowed]
    if agent is None or decision.reason not in {Reason.POLICY_DENIED, Reason.AGENT_DENIED} or not refusing:
        through = "" if agent is None else f" through agent '{agent.spiffe_id}'"
        why = _why(decision.reason, decision.policy_ids)
        return f"Teleport user '{identity.user}'{through} may not call tool '{tool}': {why} {reason}"
    said = [
        f"Teleport user '{identity.user}' may not call tool '{tool}' through agent '{agent.spiffe_id}': "
        + _why(Reason.POLICY_DENIED, gate.policy_ids)
        if gate.who == "user"
        else f"the agent '{agent.spiffe_id}' may not call tool '{tool}' for Teleport user '{identity.user}': "
        + _why(Reason.AGENT_DENIED, gate.policy_ids)
        for gate in refusing
    ]
    return "; ".join(said) + f" {reason}"


def _why(reason: Reason, policy_ids: tuple[str, ...]) -> str:
    if reason in {Reason.POLICY_DENIED, Reason.AGENT_DENIED} and policy_ids:
        return "forbidden by policy " + ", ".join(repr(p) for p in policy_ids)
    return message(reason)


def _refused(
    reason: Reason, detail: str | None, rpc_id: Any, target_kind: str = "mcp", hint: str | None = None
) -> Outcome:
    """The refusal for `reason` with its status and JSON-RPC code from `ANSWERS` (an `isError` tool result for
    reasons the agent can explain); a refusal's `hint` (which check failed, in fixed words) follows the message."""
    status, code = ANSWERS[reason]
    text = f"{message(reason)}{f'; {hint}' if hint else ''} (reason: {reason.value})"
    body = contract.tool_error(rpc_id, text) if code is None else contract.rpc_error(rpc_id, code, text)
    return Outcome(contract.respond(status, body, target_kind), reason, detail=detail)
