"""The agent's own credential (AGENT_MODE optional or required): a Teleport Workload Identity JWT-SVID in its own
header, verified with the same code and rigour as the human's ID token, turned into an `Agent`.

`AgentVerifier` is `tokens.JwtVerifier` for the Workload Identity issuer (`<proxy>/workload-identity`, its own
discovery and JWKS, RS256 or ES256, a maximum lifetime), plus the JWT-SVID's own claims: `sub` a workload's SPIFFE
ID that AGENT_ID_PATTERNS admits, `jti` required. Every refusal of the agent token is `agent_token_invalid` (its
detail keeps the underlying check's reason code, its hint says which check failed), except an unreachable issuer,
which stays `idp_unavailable`.

`AgentCredentials` is the pipeline's step: read the header, verify, and hold the pair together: when the user's
ID token names an acting agent (RFC 8693 `act`), the agent token must be that agent's. Nothing binds the two tokens
cryptographically: the pair proves that each party authenticated, not that the user chose this agent (README
"Agents").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interceptor import spiffe
from interceptor.config import AgentMode, AgentSettings
from interceptor.errors import Refusal
from interceptor.keys import ES256, RS256, KeyStore
from interceptor.protocol import Headers
from interceptor.reasons import Reason
from interceptor.tokens import Expected, Identity, JwtVerifier

ALGORITHMS = frozenset({RS256, ES256})  # Teleport's SPIFFE CA JWT key: RS256 on `legacy`, ES256 on the other suites
# What the caller reads after the reason's message: which check failed, in fixed words (never input).
_HINTS = {
    Reason.TOKEN_MALFORMED: "this one is not one compact JWT",
    Reason.ALGORITHM_NOT_ALLOWED: "this one is not signed with RS256 or ES256",
    Reason.SIGNATURE_INVALID: "this one is not signed by the cluster's Workload Identity CA",
    Reason.TOKEN_EXPIRED: "this one expired (tbot renews it)",
    Reason.TOKEN_NOT_YET_VALID: "this one is not valid yet (check the clocks)",
    Reason.ISSUER_MISMATCH: "this one comes from another issuer than AGENT_ISSUER",
    Reason.AUDIENCE_MISMATCH: "this one was issued for another audience than AGENT_AUDIENCE",
    Reason.CLAIMS_INVALID: "its claims are missing or malformed, or it lives longer than AGENT_MAX_LIFETIME_SECONDS",
}
NOT_A_WORKLOAD = "its sub is not the SPIFFE ID of a workload"
NOT_ADMITTED = "AGENT_ID_PATTERNS does not admit this agent"
OTHER_ACTOR = "the user's ID token names another agent in its act claim"
ONE_HEADER = "send exactly one agent token header, 'Bearer <jwt>' or the bare JWT"


@dataclass(frozen=True)
class Agent:
    """The verified agent (workload) acting for the human: its SPIFFE ID and the JWT-SVID's `jti`."""

    spiffe_id: str
    trust_domain: str
    path: str
    token_id: str  # the JWT-SVID's jti: Teleport's audit log records its issuance under it
    expires_at: int


def _invalid(detail: str, hint: str | None) -> Refusal:
    return Refusal(Reason.AGENT_TOKEN_INVALID, detail, hint)


class AgentVerifier(JwtVerifier[Agent]):
    """Verifies Teleport Workload Identity JWT-SVIDs for one issuer, one exact audience and the admitted IDs."""

    def __init__(
        self,
        settings: AgentSettings,
        keys: KeyStore,
        leeway_s: int,
        cache_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        expected = Expected(settings.issuer, settings.audience, ALGORITHMS, settings.max_lifetime_s, "AGENT")
        super().__init__(expected, keys, leeway_s, cache_size, clock)
        self._admitted = spiffe.compile_patterns(settings.id_patterns)

    def verify(self, token: str) -> Agent:
        """The agent, or `Refusal`: `agent_token_invalid` for every check (`idp_unavailable` when no key can be
        had). The reason code of the check that failed stays in the detail, for the audit record."""
        try:
            return super().verify(token)
        except Refusal as exc:
            if exc.reason is Reason.AGENT_TOKEN_INVALID:
                raise
            if exc.reason is Reason.IDP_UNAVAILABLE:
                raise Refusal(Reason.IDP_UNAVAILABLE, f"agent token: {exc.detail}") from None
            raise _invalid(f"{exc.reason.value}: {exc.detail}", _HINTS.get(exc.reason)) from None

    def _result(self, claims: dict[str, Any]) -> Agent:
        sub = claims["sub"]
        parsed = spiffe.parse_id(sub)
        if parsed is None:
            raise _invalid("sub is not a workload's SPIFFE ID", NOT_A_WORKLOAD)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _invalid("claims_invalid: jti is required (a non-empty string)", _HINTS[Reason.CLAIMS_INVALID])
        if self._admitted.fullmatch(sub) is None:
            raise _invalid("SPIFFE ID not admitted by AGENT_ID_PATTERNS", NOT_ADMITTED)
        trust_domain, path = parsed
        return Agent(sub, trust_domain, path, jti, claims["exp"])


def agent_token(headers: Headers, name: str) -> str | None:
    """The token in the agent token header `name` (any letter case; `Bearer <jwt>` or the bare JWT); None when
    there is no such header. Two headers, a non-string, an empty value or more than one token are refused."""
    values = headers.get(name.lower())
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str):
        raise _invalid("more than one agent token header, or not a string", ONE_HEADER)
    parts = values[0].split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    if len(parts) != 1 or parts[0].lower() == "bearer":
        raise _invalid("agent token header is not 'Bearer <jwt>' or one bare JWT", ONE_HEADER)
    return parts[0]


class AgentCredentials:
    """The agent step of authentication: the verified agent of a request (None: none was sent, in optional mode),
    or `Refusal`. A header that is sent is verified or refused, never ignored and never trusted unverified."""

    def __init__(self, settings: AgentSettings, verifier: AgentVerifier) -> None:
        self._required = settings.mode is AgentMode.REQUIRED
        self._header = settings.header
        self._verifier = verifier

    def admit(self, headers: Headers, identity: Identity) -> Agent | None:
        token = agent_token(headers, self._header)
        if token is None:
            if self._required:
                raise Refusal(Reason.AGENT_TOKEN_MISSING, "no agent token header (AGENT_MODE=required)")
            if identity.actor is not None:
                raise Refusal(Reason.AGENT_TOKEN_MISSING, "the ID token names an acting agent (act) but no agent token")
            return None
        agent = self._verifier.verify(token)
        if identity.actor is not None and identity.actor != agent.spiffe_id:
            raise _invalid("act.sub of the ID token differs from the agent token's sub", OTHER_ACTOR)
        return agent
