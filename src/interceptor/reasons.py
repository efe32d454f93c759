"""The fixed set of reason codes shared by client-facing messages and audit records.

One code per thing a person can act on; the message says what to do, never echoes input.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a request was allowed or refused."""

    ALLOWED = "allowed"
    # Configuration and server-side state (the caller cannot fix these).
    MISCONFIGURED = "misconfigured"
    POLICY_SET_INVALID = "policy_set_invalid"
    IDP_UNAVAILABLE = "idp_unavailable"
    INTERNAL_ERROR = "internal_error"
    # The gateway event itself.
    HEADERS_MISSING = "headers_missing"
    REQUEST_MALFORMED = "request_malformed"
    UNSUPPORTED_TARGET = "unsupported_target"
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
    # Authorization.
    TOOL_UNKNOWN = "tool_unknown"
    POLICY_DENIED = "policy_denied"
    POLICY_ERROR = "policy_error"
    # AWS identity.
    SESSION_UNAVAILABLE = "session_unavailable"


MESSAGES: dict[Reason, str] = {
    Reason.ALLOWED: "allowed by policy",
    Reason.MISCONFIGURED: "the interceptor is misconfigured; an administrator must check its settings and logs",
    Reason.POLICY_SET_INVALID: "policy set invalid; an administrator must fix the Cedar policies (see the logs)",
    Reason.IDP_UNAVAILABLE: "identity provider unavailable: Teleport's signing keys could not be fetched; "
    "retry shortly",
    Reason.INTERNAL_ERROR: "internal error in the interceptor; the request was refused",
    Reason.HEADERS_MISSING: "no request headers reached the interceptor: enable passRequestHeaders on the "
    "gateway's interceptor configuration",
    Reason.REQUEST_MALFORMED: "malformed MCP request",
    Reason.UNSUPPORTED_TARGET: "this interceptor only serves MCP targets",
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
    Reason.TOOL_UNKNOWN: "unknown tool: the policy schema does not know this tool",
    Reason.POLICY_DENIED: "no policy allows this call",
    Reason.POLICY_ERROR: "the call could not be evaluated (the arguments may not match the tool's input schema)",
    Reason.SESSION_UNAVAILABLE: "no AWS session could be created for you (STS refused or is unreachable); "
    "an administrator must check the session role and its trust policy",
}


def message(reason: Reason) -> str:
    """The client-facing text for a reason."""
    return MESSAGES[reason]
