"""The fixed set of reason codes shared by client-facing messages, answers and audit records.

One code per thing a person can act on; the message says what to do, never echoes input. Each code has an
explicit HTTP status and JSON-RPC error code (`ANSWERS`): a new code without one fails the tests, it is never
silently answered as something else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Reason(StrEnum):
    """Why a request was allowed or refused."""

    # Not refusals: the request goes on, or the target's answer comes back.
    ALLOWED = "allowed"
    PASSTHROUGH = "passthrough"  # RESPONSE phase: an answer that holds no tool list, returned unchanged
    TOOLS_FILTERED = "tools_filtered"  # RESPONSE phase: a tool list, filtered for the verified caller
    # Configuration and server-side state (the caller cannot fix these).
    MISCONFIGURED = "misconfigured"
    POLICY_SET_INVALID = "policy_set_invalid"
    IDP_UNAVAILABLE = "idp_unavailable"
    INTERNAL_ERROR = "internal_error"
    OUTPUT_INVALID = "output_invalid"
    # The gateway event itself.
    HEADERS_MISSING = "headers_missing"
    REQUEST_MALFORMED = "request_malformed"
    UNSUPPORTED_TARGET = "unsupported_target"
    METHOD_UNKNOWN = "method_unknown"
    METHOD_NOT_COVERED = "method_not_covered"
    HEADER_MISMATCH = "header_mismatch"
    # The bearer token.
    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    SIGNATURE_INVALID = "signature_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    ISSUER_MISMATCH = "issuer_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    CLAIMS_INVALID = "claims_invalid"
    # The agent credential (AGENT_MODE optional or required).
    AGENT_TOKEN_MISSING = "agent_token_missing"
    AGENT_TOKEN_INVALID = "agent_token_invalid"
    # Authorization.
    TOOL_UNKNOWN = "tool_unknown"
    POLICY_DENIED = "policy_denied"
    POLICY_ERROR = "policy_error"
    AGENT_DENIED = "agent_denied"
    # AWS identity.
    SESSION_UNAVAILABLE = "session_unavailable"


MESSAGES: dict[Reason, str] = {
    Reason.ALLOWED: "allowed by policy",
    Reason.PASSTHROUGH: "the target's answer, returned unchanged",
    Reason.TOOLS_FILTERED: "the tool list, filtered to the tools this caller may call",
    Reason.MISCONFIGURED: "the interceptor is misconfigured; an administrator must check its settings and logs",
    Reason.POLICY_SET_INVALID: "policy set invalid; an administrator must fix the Cedar policies (see the logs)",
    Reason.IDP_UNAVAILABLE: "identity provider unavailable: Teleport's signing keys could not be fetched; "
    "retry shortly",
    Reason.INTERNAL_ERROR: "internal error in the interceptor; the request was refused",
    Reason.OUTPUT_INVALID: "the answer could not be encoded as strict JSON (a non-finite number or invalid "
    "Unicode); the request was refused",
    Reason.HEADERS_MISSING: "no request headers reached the interceptor: enable passRequestHeaders on the "
    "gateway's interceptor configuration",
    Reason.REQUEST_MALFORMED: "malformed MCP request",
    Reason.UNSUPPORTED_TARGET: "this interceptor only serves MCP targets",
    Reason.METHOD_UNKNOWN: "unknown MCP method: names must match exactly (letter case, spaces and characters "
    "count), and methods only a server sends are never accepted from a client",
    Reason.METHOD_NOT_COVERED: "this MCP method reaches data the Teleport policies do not cover, so it is refused; "
    "an administrator can forward it without a policy decision by adding it to the interceptor's "
    "FORWARD_UNCOVERED_METHODS setting",
    Reason.HEADER_MISMATCH: "MCP request headers disagree with the request body: MCP-Protocol-Version, Mcp-Method "
    "and Mcp-Name must repeat the body's protocol version, method and name or URI (2026-07-28 requests must send "
    "them), each once and validly encoded; list the tools again and retry",
    Reason.TOKEN_MISSING: "no bearer token: connect through Teleport (tsh mcp connect) and make sure the app "
    "rewrites 'Authorization: Bearer {{internal.id_token}}'",
    Reason.TOKEN_MALFORMED: "bearer token malformed: expected one Teleport OIDC ID token",
    Reason.ALGORITHM_NOT_ALLOWED: "token algorithm not allowed: only RS256 Teleport ID tokens are accepted",
    Reason.SIGNATURE_INVALID: "token signature invalid: it was not signed by the configured Teleport cluster",
    Reason.TOKEN_EXPIRED: "token expired: reconnect with tsh to get a fresh one",
    Reason.TOKEN_NOT_YET_VALID: "token not yet valid: check the clocks of Teleport and AWS",
    Reason.ISSUER_MISMATCH: "token issuer mismatch: it comes from another Teleport cluster",
    Reason.AUDIENCE_MISMATCH: "audience mismatch: the token was issued for another app; the Teleport app URI "
    "must equal the gateway's configured audience",
    Reason.CLAIMS_INVALID: "token claims invalid: user, roles or traits are missing or malformed",
    Reason.AGENT_TOKEN_MISSING: "no agent token: this gateway requires the calling agent's own Teleport Workload "
    "Identity JWT-SVID in the agent token header (a tbot workload-identity-jwt output), next to the user's token",
    Reason.AGENT_TOKEN_INVALID: "agent token invalid: the agent token header must hold one current Teleport Workload "
    "Identity JWT-SVID issued for this gateway's audience, naming an agent this gateway admits",
    Reason.TOOL_UNKNOWN: "unknown tool: the policy schema does not know this tool",
    Reason.POLICY_DENIED: "no policy allows this call",
    Reason.POLICY_ERROR: "the call could not be evaluated (the arguments may not match the tool's input schema)",
    Reason.AGENT_DENIED: "no policy allows this agent this call",
    Reason.SESSION_UNAVAILABLE: "no AWS session could be created for you (STS refused or is unreachable); "
    "an administrator must check the session role and its trust policy",
}


# JSON-RPC error codes of the answers: JSON-RPC's own, MCP's HeaderMismatch, and ours outside the reserved range.
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL = -32603
HEADER_MISMATCH = -32020  # MCP 2026-07-28 `HeaderMismatch`
# Authentication failed (with HTTP 401). MCP defines no code for it; -32000..-32099 are legacy or reserved to the
# spec and -32001 is the SDK's local request timeout, so ours lies outside JSON-RPC's reserved -32768..-32000.
UNAUTHORIZED = -31001


class Answer(NamedTuple):
    """How a reason is answered: the HTTP status, and the JSON-RPC error code (None: not a JSON-RPC error but
    an `isError` tool result the agent can explain, or, for the reasons that are not refusals, the forwarded call
    or the target's own answer with its own status)."""

    status: int
    rpc_code: int | None


_THROUGH = Answer(200, None)
_TOOL_RESULT = Answer(200, None)
_UNAUTHORIZED = Answer(401, UNAUTHORIZED)

ANSWERS: dict[Reason, Answer] = {
    Reason.ALLOWED: _THROUGH,
    Reason.PASSTHROUGH: _THROUGH,
    Reason.TOOLS_FILTERED: _THROUGH,
    Reason.MISCONFIGURED: Answer(500, INTERNAL),
    Reason.POLICY_SET_INVALID: Answer(500, INTERNAL),
    Reason.IDP_UNAVAILABLE: Answer(503, INTERNAL),
    Reason.INTERNAL_ERROR: Answer(500, INTERNAL),
    Reason.OUTPUT_INVALID: Answer(500, INTERNAL),
    Reason.HEADERS_MISSING: Answer(500, INTERNAL),
    Reason.REQUEST_MALFORMED: Answer(400, INVALID_REQUEST),
    Reason.UNSUPPORTED_TARGET: Answer(400, INVALID_REQUEST),
    Reason.METHOD_UNKNOWN: Answer(400, METHOD_NOT_FOUND),
    Reason.METHOD_NOT_COVERED: Answer(403, METHOD_NOT_FOUND),
    Reason.HEADER_MISMATCH: Answer(400, HEADER_MISMATCH),
    Reason.TOKEN_MISSING: _UNAUTHORIZED,
    Reason.TOKEN_MALFORMED: _UNAUTHORIZED,
    Reason.ALGORITHM_NOT_ALLOWED: _UNAUTHORIZED,
    Reason.SIGNATURE_INVALID: _UNAUTHORIZED,
    Reason.TOKEN_EXPIRED: _UNAUTHORIZED,
    Reason.TOKEN_NOT_YET_VALID: _UNAUTHORIZED,
    Reason.ISSUER_MISMATCH: _UNAUTHORIZED,
    Reason.AUDIENCE_MISMATCH: _UNAUTHORIZED,
    Reason.CLAIMS_INVALID: _UNAUTHORIZED,
    Reason.AGENT_TOKEN_MISSING: _UNAUTHORIZED,
    Reason.AGENT_TOKEN_INVALID: _UNAUTHORIZED,
    Reason.TOOL_UNKNOWN: _TOOL_RESULT,
    Reason.POLICY_DENIED: _TOOL_RESULT,
    Reason.POLICY_ERROR: _TOOL_RESULT,
    Reason.AGENT_DENIED: _TOOL_RESULT,
    Reason.SESSION_UNAVAILABLE: _TOOL_RESULT,
}


def message(reason: Reason) -> str:
    """The client-facing text for a reason."""
    return MESSAGES[reason]
