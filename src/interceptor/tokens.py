"""Bearer extraction and Teleport token verification: the human's OIDC ID token becomes an `Identity`.

The token is decoded once: strict base64url and JSON parsing of header and payload, then the cheap checks (size,
shape, header, issuer) before any key is fetched, then PyJWT's RS256 or ES256 (`cryptography` underneath) over
the exact signing input, tried against every candidate key of the pinned algorithm (Teleport's ID tokens carry no
`kid`), then strict claim checks. Decoding with `jwt.decode` after an unverified peek parsed every token twice and
checked base64 characters in a Python loop; the checks it made are all made here (README "Authentication").

`JwtVerifier` is that one implementation, parameterised by what a token kind must be (`Expected`: issuer,
audience, pinned algorithms, maximum lifetime) and what its claims become (`_result`). `TokenVerifier` is the
human's ID token; `agents.AgentVerifier` is the agent's Workload Identity JWT-SVID.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, Protocol

from jwt.algorithms import Algorithm, ECAlgorithm, RSAAlgorithm

from interceptor.contract import encodable
from interceptor.errors import Refusal
from interceptor.jsontext import STRICT_JSON
from interceptor.keys import ES256, RS256, KeyStore
from interceptor.lru import LRUDict
from interceptor.protocol import Headers
from interceptor.reasons import Reason

MAX_TOKEN_BYTES = 16 * 1024
MAX_KID_CHARS = 128
BOT_PREFIXES = ("bot-", "remote-bot-")  # a bot of a trusted leaf cluster appears as remote-bot-<name>-<cluster>
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")
# RFC 7515 compact serialization: three non-empty base64url segments, no padding or whitespace. PyJWT tolerates
# trailing `=`; one accepted spelling per token keeps the cache key and every check simple.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_VERIFIERS: dict[str, Algorithm] = {RS256: RSAAlgorithm(RSAAlgorithm.SHA256), ES256: ECAlgorithm(ECAlgorithm.SHA256)}


@dataclass(frozen=True)
class Identity:
    """The verified human (or Machine ID bot) behind a request."""

    user: str
    roles: tuple[str, ...]
    traits: Mapping[str, tuple[str, ...]]
    issuer: str
    expires_at: int
    actor: str | None = None  # RFC 8693 `act.sub`: the agent the ID token says acts for the user (agent modes only)

    @cached_property
    def principal_key(self) -> tuple[Any, ...]:
        """Everything the Cedar principal is built from, hashable: the key of per-caller caches (made once per
        verified token, which the token cache then reuses)."""
        return (self.user, self.roles, tuple(self.traits.items()))

    @cached_property
    def bot(self) -> bool:
        """Machine ID bots have usernames `bot-<name>` (`remote-bot-<name>-<cluster>` from a leaf cluster); once
        per verified token, like `principal_key`."""
        return self.user.startswith(BOT_PREFIXES)


def bearer_token(headers: Headers) -> str:
    """The single bearer token in the `Authorization` header (name and scheme case-insensitive)."""
    values = headers.get("authorization")
    if not values:
        raise Refusal(Reason.TOKEN_MISSING, "no Authorization header")
    if len(values) > 1 or not isinstance(values[0], str):
        raise Refusal(Reason.TOKEN_MALFORMED, "more than one Authorization header")
    parts = values[0].split()
    if not parts or parts[0].lower() != "bearer":
        raise Refusal(Reason.TOKEN_MISSING, "Authorization header is not a Bearer credential")
    if len(parts) != 2:
        raise Refusal(Reason.TOKEN_MALFORMED, "Authorization header must hold exactly one token")
    return parts[1]


class Expiring(Protocol):
    """What a verified token becomes: something that knows when the token expires (the cache needs it)."""

    @property
    def expires_at(self) -> int: ...


@dataclass(frozen=True)
class Expected:
    """What one kind of token must be: its exact issuer and audience, the pinned algorithms (never taken from the
    token), a maximum lifetime (`exp - iat`; None: no bound), and the prefix of the settings that name these
    (`TELEPORT`, `AGENT`), for details that say which setting a token disagrees with."""

    issuer: str
    audience: str
    algorithms: frozenset[str] = frozenset({RS256})
    max_lifetime_s: int | None = None
    settings: str = "TELEPORT"


class JwtVerifier[T: Expiring](ABC):
    """Verifies one kind of Teleport JWT (`Expected`): strict parse, cheap checks before any key, the signature
    against the store's keys of the token's pinned algorithm, then the claims every kind shares; `_result` checks
    the kind's own claims and builds what the token proves.

    Results are cached by token digest until the token expires: Teleport re-uses one token per MCP session for up
    to ten minutes, so the warm path skips the signature work without weakening any check (expiry is re-checked on
    every hit).
    """

    def __init__(
        self, expected: Expected, keys: KeyStore, leeway_s: int, cache_size: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._expected = expected
        self._issuer = expected.issuer
        self._audience = expected.audience
        self._keys = keys
        self._leeway_s = leeway_s
        self._clock = clock
        self._cache: LRUDict[bytes, T] = LRUDict(cache_size)  # 0: nothing is kept
        self._algorithms = " or ".join(sorted(expected.algorithms, reverse=True))

    def verify(self, token: str) -> T:
        """Return what the token proves or raise `Refusal` with the reason to report (the only exception it
        raises: an identity provider that cannot be reached is `idp_unavailable`)."""
        if len(token) > MAX_TOKEN_BYTES or not token.isascii():
            raise Refusal(Reason.TOKEN_MALFORMED, "token larger than 16 KiB or not ASCII")
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if self._clock() < cached.expires_at + self._leeway_s:
                return cached
            del self._cache[digest]
            raise Refusal(Reason.TOKEN_EXPIRED, "cached token expired")
        result = self._verify_uncached(token)
        self._cache[digest] = result
        return result

    def _verify_uncached(self, token: str) -> T:
        jws = _Jws.parse(token)  # a cached token passed this when it was verified
        kid, alg = self._precheck(jws)
        self._verify_signature(jws, kid, alg)
        return self._result(self._claims(jws.claims))

    def _precheck(self, jws: _Jws) -> tuple[str | None, str]:
        """Header and issuer checks that need no key, so bad tokens never trigger a JWKS fetch."""
        header = jws.header
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._expected.algorithms:
            raise Refusal(Reason.ALGORITHM_NOT_ALLOWED, f"token alg is not {self._algorithms}")
        if "crit" in header:
            raise Refusal(Reason.TOKEN_MALFORMED, "token has a crit header")
        if str(header.get("cty", "")).upper() == "JWT":
            raise Refusal(Reason.TOKEN_MALFORMED, "nested JWT refused")
        if header.get("b64", True) is not True:
            raise Refusal(Reason.TOKEN_MALFORMED, "unencoded (b64) payloads refused")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_CHARS):
            raise Refusal(Reason.TOKEN_MALFORMED, "token kid is not a short string")
        if jws.claims.get("iss") != self._issuer:
            raise Refusal(Reason.ISSUER_MISMATCH, f"token iss differs from {self._expected.settings}_ISSUER")
        return kid, alg

    def _verify_signature(self, jws: _Jws, kid: str | None, alg: str) -> None:
        """The pinned algorithm over the exact signing input with each candidate key of that algorithm (the key's
        type decides which algorithm it verifies); one JWKS refresh (rate-limited) on a miss."""
        verifier = _VERIFIERS[alg]
        for attempt in range(2):
            for candidate in self._keys.candidates(kid, alg):
                if verifier.verify(jws.signing_input, candidate.key, jws.signature):
                    return
            if attempt == 0 and not self._keys.refresh_after_miss():
                break
        raise Refusal(Reason.SIGNATURE_INVALID, "no Teleport key verifies the token signature")

    def _claims(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The claims every kind shares, strictly: what `jwt.decode` checked (required, time, audience) and more."""
        if any(claims.get(c) is None for c in REQUIRED_CLAIMS):
            raise Refusal(Reason.CLAIMS_INVALID, "iss, aud, exp, iat and sub are required")
        if any(not _is_int(claims[c]) for c in ("exp", "iat", "nbf") if c in claims):
            raise Refusal(Reason.CLAIMS_INVALID, "exp, iat and nbf must be integers")
        now = self._clock()
        if claims["iat"] > now + self._leeway_s or claims.get("nbf", 0) > now + self._leeway_s:
            raise Refusal(Reason.TOKEN_NOT_YET_VALID, "iat or nbf is in the future")
        if claims["exp"] <= now - self._leeway_s:
            raise Refusal(Reason.TOKEN_EXPIRED, "token expired")
        aud = claims["aud"]
        if aud not in (self._audience, [self._audience]):
            raise Refusal(Reason.AUDIENCE_MISMATCH, f"token audience is not exactly {self._expected.settings}_AUDIENCE")
        lifetime = self._expected.max_lifetime_s
        if lifetime is not None and claims["exp"] - claims["iat"] > lifetime:
            raise Refusal(
                Reason.CLAIMS_INVALID, f"token lifetime exceeds {self._expected.settings}_MAX_LIFETIME_SECONDS"
            )
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise Refusal(Reason.CLAIMS_INVALID, "sub is not a non-empty string")
        return claims

    @abstractmethod
    def _result(self, claims: dict[str, Any]) -> T:
        """What a signed token with valid shared claims proves; raises `Refusal` for this kind's own claims."""


class TokenVerifier(JwtVerifier[Identity]):
    """Verifies Teleport OIDC ID tokens for one issuer and one exact audience (RS256 only, no lifetime bound:
    Teleport's MCP tokens live ten minutes). With `actor_claims` (an agent mode is on) an RFC 8693 `act` claim is
    read strictly and its `sub` becomes `Identity.actor`; otherwise `act` is ignored, as any unknown claim."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: KeyStore,
        leeway_s: int,
        cache_size: int,
        clock: Callable[[], float] = time.time,
        *,
        actor_claims: bool = False,
    ) -> None:
        super().__init__(Expected(issuer, audience), keys, leeway_s, cache_size, clock)
        self._actor_claims = actor_claims

    def _result(self, claims: dict[str, Any]) -> Identity:
        sub = claims["sub"]
        if "username" in claims and claims["username"] != sub:
            raise Refusal(Reason.CLAIMS_INVALID, "username differs from sub")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise Refusal(Reason.CLAIMS_INVALID, "jti is not a string")
        return Identity(
            user=sub,
            roles=_roles(claims.get("roles")),
            traits=_traits(claims.get("traits")),
            issuer=self._issuer,
            expires_at=claims["exp"],
            actor=_actor(claims["act"]) if self._actor_claims and "act" in claims else None,
        )


class _Jws(NamedTuple):
    """A compact JWS decoded once: header and claims as JSON objects, the signing input and the signature."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, token: str) -> _Jws:
        """Strictly: the exact compact form (three segments: nested JWTs and JWEs refused), canonical unpadded
        base64url, JSON objects (no NaN/Infinity) in the first two; anything else is `token_malformed`."""
        if not _COMPACT_JWS.fullmatch(token):
            raise Refusal(Reason.TOKEN_MALFORMED, "token is not three base64url segments without padding")
        signing_input, _, signature = token.rpartition(".")
        header, _, payload = signing_input.partition(".")
        return cls(_json_object(header), _json_object(payload), signing_input.encode(), _b64url(signature))


def _b64url(segment: str) -> bytes:
    """Canonical unpadded base64url only: other alphabets, padding and non-zero trailing bits are refused, so
    one token has exactly one spelling (the cache key) and no decoder leniency can be played on."""
    if len(segment) % 4 == 1:  # the alphabet was checked with the compact form
        raise Refusal(Reason.TOKEN_MALFORMED, "token segment is not base64url")
    standard = (segment + "=" * (-len(segment) % 4)).encode().translate(_TO_STANDARD)
    try:
        raw = binascii.a2b_base64(standard, strict_mode=True)
    except binascii.Error:
        raise Refusal(Reason.TOKEN_MALFORMED, "token segment is not base64url") from None
    if binascii.b2a_base64(raw, newline=False) != standard:
        raise Refusal(Reason.TOKEN_MALFORMED, "token segment is not canonical base64url")
    return raw


def _json_object(segment: str) -> dict[str, Any]:
    """A JSON object that is strict JSON in UTF-8 once read: an escaped lone surrogate (`\\ud800`) is refused, so
    every claim stamped into a forwarded call or written in an answer is proven here, once per token."""
    try:
        text = _b64url(segment).decode()
        value = STRICT_JSON.decode(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Refusal(Reason.TOKEN_MALFORMED, "token header or payload is not JSON") from None
    if not isinstance(value, dict):
        raise Refusal(Reason.TOKEN_MALFORMED, "token header or payload is not a JSON object")
    if "\\u" in text and not encodable(value):  # only an escape can spell a lone surrogate
        raise Refusal(Reason.TOKEN_MALFORMED, "token header or payload holds text that is not valid Unicode")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _actor(value: Any) -> str:
    """RFC 8693 `act`: an object whose `sub` names the current actor (an `act` nested in it names earlier actors
    in a chain and is not read)."""
    sub = value.get("sub") if isinstance(value, dict) else None
    if not isinstance(sub, str) or not sub:
        raise Refusal(Reason.CLAIMS_INVALID, "act is not an object with a non-empty string sub")
    return sub


def _roles(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise Refusal(Reason.CLAIMS_INVALID, "roles is not a list of strings")
    return tuple(dict.fromkeys(value))


def _traits(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refusal(Reason.CLAIMS_INVALID, "traits is not a map")
    traits: dict[str, tuple[str, ...]] = {}
    for name, values in value.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise Refusal(Reason.CLAIMS_INVALID, "a trait is not a list of strings")
        traits[name] = tuple(values)
    return traits
