"""The pipeline: REQUEST events -> parse -> authenticate -> authorize -> stamp -> respond; RESPONSE events ->
parse -> (tool lists only) authenticate -> filter -> respond; plus one audit record (carrying the metrics) per
event.

`Interceptor.handle` never raises: every failure becomes a refusal in the gateway's contract.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from interceptor import contract, listing, protocol
from interceptor.audit import Auditor, AuditRecord
from interceptor.aws_session import SessionBroker, SessionUnavailable
from interceptor.config import Mode
from interceptor.contract import MalformedEvent, McpRequest, McpResponse
from interceptor.keys import IdpUnavailable
from interceptor.listing import ToolLister
from interceptor.logs import SERVICE
from interceptor.policy import Decision, PolicyEngine
from interceptor.reasons import ANSWERS, Reason, message
from interceptor.stamping import split_reserved, stamp, without_reserved
from interceptor.tokens import AuthError, Identity, TokenVerifier, bearer_token
from tool_identity import SESSION_ARG

logger = Logger(service=SERVICE, child=True)

_POLICY_REASONS = frozenset({Reason.POLICY_DENIED, Reason.TOOL_UNKNOWN, Reason.POLICY_ERROR})


class Refusal(Exception):
    """Stop the pipeline and answer with `reason`; `detail` goes to the logs only."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Broken:
    """A container that cannot serve: every request is refused with `reason` (problems are logged at init)."""

    reason: Reason


class Interceptor:
    """Serves both interception points for one container's settings, keys and policies."""

    def __init__(
        self,
        verifier: TokenVerifier | Broken,
        engine: PolicyEngine | Broken,
        mode: Mode,
        auditor: Auditor,
        sessions: SessionBroker | None = None,
        *,
        lister: ToolLister | Broken,
        forward_uncovered: frozenset[str] = frozenset(),
    ) -> None:
        self._verifier = verifier
        self._engine = engine
        self._mode = mode
        self._auditor = auditor
        self._sessions = sessions
        self._lister = lister  # Broken exactly when the engine is
        self._forward_uncovered = forward_uncovered  # FORWARD_UNCOVERED_METHODS

    def handle(self, event: Any, lambda_request_id: str | None = None) -> dict[str, Any]:
        """Answer one interceptor event; always a valid interceptor output, never an exception."""
        started = time.perf_counter_ns()
        record = AuditRecord(phase="REQUEST", mode=self._mode.value, lambda_request_id=lambda_request_id)
        try:
            output = self._handle(event, record)
        except MalformedEvent as exc:
            record.reason, record.detail, record.rpc_id = exc.reason.value, exc.detail, exc.rpc_id
            output = _refuse(exc.reason, exc.rpc_id, exc.target_kind)
        except Refusal as refusal:
            record.reason, record.detail = refusal.reason.value, refusal.detail
            output = _refuse(refusal.reason, record.rpc_id)
        except Exception:
            logger.exception("unexpected error; request refused")
            record.reason, record.forwarded, record.decision = Reason.INTERNAL_ERROR.value, False, "deny"
            output = _refuse(Reason.INTERNAL_ERROR, record.rpc_id)
        if not contract.encodable(output):  # the gateway could not read it (it might then serve the target)
            record.reason, record.forwarded, record.decision = Reason.OUTPUT_INVALID.value, False, "deny"
            record.detail = "answer is not strict JSON in UTF-8"
            rpc_id = record.rpc_id if contract.encodable(record.rpc_id) else None
            output = _refuse(Reason.OUTPUT_INVALID, rpc_id, "http" if "http" in output else "mcp")
        record.latency_us = (time.perf_counter_ns() - started) // 1000
        self._auditor.write(record)
        return output

    def _handle(self, event: Any, record: AuditRecord) -> dict[str, Any]:
        if isinstance(event, Mapping) and contract.is_response_phase(event):
            record.phase = "RESPONSE"
            return self._handle_response(contract.parse_response(event), record)
        request = contract.parse_request(event)
        _describe(record, request)
        contract.check_method(request, self._forward_uncovered)
        contract.check_headers(request)
        identity = self._authenticate(request, record)
        if request.tool is None:
            body, spoofed = without_reserved(request.body)
            record.spoofed_arguments = list(spoofed)
            record.decision, record.forwarded, record.reason = "allow", True, Reason.ALLOWED.value
            return contract.forward_request(body)
        return self._authorize_call(request, request.tool, identity, record)

    def _handle_response(self, response: McpResponse, record: AuditRecord) -> dict[str, Any]:
        """Tool lists are filtered for the verified caller; every other response passes unchanged (the REQUEST
        phase decided on it already, and nothing in it depends on who asks)."""
        _describe(record, response.request)
        contract.check_method(response.request, self._forward_uncovered)
        contract.check_headers(response.request)
        if not listing.carries_tools(response.request, response.body) or protocol.interim(response.body):
            record.decision, record.forwarded, record.reason = "allow", True, "passthrough"
            return contract.pass_response(response)
        identity = self._authenticate(response.request, record)
        assert not isinstance(self._lister, Broken)  # Broken only with a Broken engine: _authenticate refused
        try:
            filtered = listing.filter_response(response.body, self._lister.visible(identity))
        except listing.Unfilterable as exc:
            raise Refusal(Reason.INTERNAL_ERROR, f"tool list response cannot be filtered: {exc}") from None
        record.decision, record.forwarded, record.reason = "filter", True, "tools_filtered"
        record.extra.update(filtered.audit_fields(self._lister.policy_set))
        if self._mode is Mode.LOG_ONLY:  # unfiltered: the upstream caching hints still hold
            return contract.respond(response.status_code, response.body)
        body = protocol.filtered_result(filtered.body, response.request.method, response.request.modern)
        return contract.respond(response.status_code, body)

    def _authenticate(self, request: McpRequest, record: AuditRecord) -> Identity:
        """The verified caller, recorded in the audit record; raises Refusal (a refusal like any other)."""
        if isinstance(self._verifier, Broken):
            raise Refusal(self._verifier.reason, "interceptor cannot serve (see init logs)")
        if isinstance(self._engine, Broken):
            raise Refusal(self._engine.reason, "interceptor cannot serve (see init logs)")
        if request.headers is None:
            raise Refusal(Reason.HEADERS_MISSING, "event has no headers: passRequestHeaders is off")
        try:
            identity = self._verifier.verify(contract.compact_token(bearer_token(request.headers)))
        except AuthError as exc:
            raise Refusal(exc.reason, exc.detail) from None
        except IdpUnavailable as exc:
            raise Refusal(Reason.IDP_UNAVAILABLE, str(exc)) from None
        record.user, record.roles, record.bot = identity.user, list(identity.roles), identity.bot
        return identity

    def _authorize_call(
        self, request: McpRequest, tool: str, identity: Identity, record: AuditRecord
    ) -> dict[str, Any]:
        assert not isinstance(self._engine, Broken)  # _authenticate refused already
        arguments, spoofed = split_reserved(request.arguments, request.body.get("params"))
        record.argument_names, record.spoofed_arguments = sorted(arguments), list(spoofed)
        decision = self._engine.authorize(identity, tool, arguments)
        _record_decision(record, decision)
        if decision.allowed or (self._mode is Mode.LOG_ONLY and decision.reason in _POLICY_REASONS):
            try:
                # AWS credentials only for calls policy allows: log_only forwards denied calls without them.
                extra = self._session_argument(identity, tool, record) if decision.allowed else {}
            except SessionUnavailable as exc:
                logger.error("AWS session unavailable; call refused", extra={"problem": exc.detail})
                record.decision, record.reason, record.detail = "deny", Reason.SESSION_UNAVAILABLE.value, exc.detail
                decision = Decision(False, Reason.SESSION_UNAVAILABLE)
            else:
                record.forwarded = True
                return contract.forward_request(stamp(request.body, arguments, identity, extra))
        why = message(decision.reason)
        if decision.reason is Reason.POLICY_DENIED and decision.policy_ids:
            why = "forbidden by policy " + ", ".join(repr(p) for p in decision.policy_ids)
        text = f"Teleport user '{identity.user}' may not call tool '{tool}': {why} (reason: {decision.reason.value})."
        return contract.respond(200, contract.tool_error(request.rpc_id, text, request.modern))

    def _session_argument(self, identity: Identity, tool: str, record: AuditRecord) -> dict[str, Any]:
        """The reserved AWS session argument for tools configured to receive one (else nothing)."""
        if self._sessions is None or not self._sessions.wants(tool):
            return {}
        session = self._sessions.session_for(identity, tool)
        record.extra.update(session.audit_fields)
        return {SESSION_ARG: session.argument}


def _describe(record: AuditRecord, request: McpRequest) -> None:
    record.method, record.rpc_id, record.tool = request.method, request.rpc_id, request.tool
    record.mcp_session_id = request.session_id


def _record_decision(record: AuditRecord, decision: Decision) -> None:
    record.decision = "allow" if decision.allowed else "deny"
    record.reason = decision.reason.value
    record.policy_ids = list(decision.policy_ids)
    if decision.errors:
        record.detail = "; ".join(decision.errors)
        logger.error("policy evaluation errors; call refused", extra={"errors": list(decision.errors)})


def _refuse(reason: Reason, rpc_id: Any, target_kind: str = "mcp") -> dict[str, Any]:
    """The answer for `reason` with its status and JSON-RPC code from `ANSWERS` (an `isError` tool result for
    reasons the agent can explain)."""
    status, code = ANSWERS[reason]
    text = f"{message(reason)} (reason: {reason.value})"
    body = contract.tool_error(rpc_id, text) if code is None else contract.rpc_error(rpc_id, code, text)
    return contract.respond(status, body, target_kind)
