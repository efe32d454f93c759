"""Bearer extraction and Teleport OIDC ID token verification, turning a token into an `Identity`.

Cheap checks (size, shape, header, issuer) run before any key is fetched; then the signature is tried
against every candidate key (Teleport's tokens carry no `kid`), then claims are checked strictly.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from interceptor.keys import PINNED_ALG, KeyStore
from interceptor.reasons import Reason

MAX_TOKEN_BYTES = 16 * 1024
MAX_KID_CHARS = 128
BOT_PREFIXES = ("bot-", "remote-bot-")  # a bot of a trusted leaf cluster appears as remote-bot-<name>-<cluster>
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub"]


class AuthError(Exception):
    """Authentication refused; `detail` is for logs and never contains the token."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Identity:
    """The verified human (or Machine ID bot) behind a request."""

    user: str
    roles: tuple[str, ...]
    traits: Mapping[str, tuple[str, ...]]
    issuer: str
    expires_at: int

    @property
    def bot(self) -> bool:
        """Machine ID bots have usernames `bot-<name>` (`remote-bot-<name>-<cluster>` from a leaf cluster)."""
        return self.user.startswith(BOT_PREFIXES)


def bearer_token(headers: Mapping[str, Any]) -> str:
    """The single bearer token in the `Authorization` header (name and scheme case-insensitive)."""
    values = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == "authorization"]
    if not values:
        raise AuthError(Reason.TOKEN_MISSING, "no Authorization header")
    if len(values) > 1 or not isinstance(values[0], str):
        raise AuthError(Reason.TOKEN_MALFORMED, "more than one Authorization header")
    parts = values[0].split()
    if not parts or parts[0].lower() != "bearer":
        raise AuthError(Reason.TOKEN_MISSING, "Authorization header is not a Bearer credential")
    if len(parts) != 2:
        raise AuthError(Reason.TOKEN_MALFORMED, "Authorization header must hold exactly one token")
    return parts[1]


class TokenVerifier:
    """Verifies Teleport OIDC ID tokens for one issuer and one exact audience.

    Verified identities are cached by token digest until the token expires: Teleport re-uses one token per
    MCP session for up to ten minutes, so the warm path skips the RSA work without weakening any check.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: KeyStore,
        leeway_s: int,
        cache_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._keys = keys
        self._leeway_s = leeway_s
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[bytes, Identity] = OrderedDict()

    def verify(self, token: str) -> Identity:
        """Return the token's identity or raise AuthError with the reason to report."""
        if len(token) > MAX_TOKEN_BYTES or not token.isascii():
            raise AuthError(Reason.TOKEN_MALFORMED, "token larger than 16 KiB or not ASCII")
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if self._clock() < cached.expires_at + self._leeway_s:
                self._cache.move_to_end(digest)
                return cached
            del self._cache[digest]
            raise AuthError(Reason.TOKEN_EXPIRED, "cached token expired")
        identity = self._verify_uncached(token)
        if self._cache_size:
            self._cache[digest] = identity
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity

    def _verify_uncached(self, token: str) -> Identity:
        kid = self._precheck(token)
        claims = self._verify_signature_and_claims(token, kid)
        return self._identity(claims)

    def _precheck(self, token: str) -> str | None:
        """Shape, header and issuer checks that need no key, so bad tokens never trigger a JWKS fetch."""
        if token.count(".") != 2:
            raise AuthError(Reason.TOKEN_MALFORMED, "not a three-part JWS (nested JWT or JWE refused)")
        try:
            unverified = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except jwt_errors.InvalidTokenError:
            raise AuthError(Reason.TOKEN_MALFORMED, "token cannot be decoded") from None
        header = unverified["header"]
        if header.get("alg") != PINNED_ALG:
            raise AuthError(Reason.ALGORITHM_NOT_ALLOWED, "token alg is not RS256")
        if "crit" in header:
            raise AuthError(Reason.TOKEN_MALFORMED, "token has a crit header")
        if str(header.get("cty", "")).upper() == "JWT":
            raise AuthError(Reason.TOKEN_MALFORMED, "nested JWT refused")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_CHARS):
            raise AuthError(Reason.TOKEN_MALFORMED, "token kid is not a short string")
        if unverified["payload"].get("iss") != self._issuer:
            raise AuthError(Reason.ISSUER_MISMATCH, "token iss differs from TELEPORT_ISSUER")
        return kid

    def _verify_signature_and_claims(self, token: str, kid: str | None) -> dict[str, Any]:
        for attempt in range(2):
            for candidate in self._keys.candidates(kid):
                try:
                    claims: dict[str, Any] = jwt.decode(
                        token,
                        candidate.key,
                        algorithms=[PINNED_ALG],
                        audience=self._audience,
                        issuer=self._issuer,
                        leeway=self._leeway_s,
                        options={"require": REQUIRED_CLAIMS},
                    )
                except (jwt_errors.InvalidSignatureError, jwt_errors.InvalidKeyError):
                    continue
                except jwt_errors.InvalidTokenError as exc:
                    raise _classify(exc) from None
                return claims
            if attempt == 0 and not self._keys.refresh_after_miss():
                break
        raise AuthError(Reason.SIGNATURE_INVALID, "no Teleport key verifies the token signature")

    def _identity(self, claims: dict[str, Any]) -> Identity:
        aud = claims["aud"]
        if aud not in (self._audience, [self._audience]):
            raise AuthError(Reason.AUDIENCE_MISMATCH, "token is also valid for other audiences")
        if any(not _is_int(claims[c]) for c in ("exp", "iat", "nbf") if c in claims):
            raise AuthError(Reason.CLAIMS_INVALID, "exp, iat and nbf must be integers")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthError(Reason.CLAIMS_INVALID, "sub is not a non-empty string")
        if "username" in claims and claims["username"] != sub:
            raise AuthError(Reason.CLAIMS_INVALID, "username differs from sub")
        return Identity(
            user=sub,
            roles=_roles(claims.get("roles")),
            traits=_traits(claims.get("traits")),
            issuer=self._issuer,
            expires_at=int(claims["exp"]),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _roles(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise AuthError(Reason.CLAIMS_INVALID, "roles is not a list of strings")
    return tuple(dict.fromkeys(value))


def _traits(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AuthError(Reason.CLAIMS_INVALID, "traits is not a map")
    traits: dict[str, tuple[str, ...]] = {}
    for name, values in value.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise AuthError(Reason.CLAIMS_INVALID, "a trait is not a list of strings")
        traits[name] = tuple(values)
    return traits


_CLASSIFIED: tuple[tuple[type[Exception], Reason], ...] = (
    (jwt_errors.ExpiredSignatureError, Reason.TOKEN_EXPIRED),
    (jwt_errors.ImmatureSignatureError, Reason.TOKEN_NOT_YET_VALID),
    (jwt_errors.InvalidAudienceError, Reason.AUDIENCE_MISMATCH),
    (jwt_errors.InvalidIssuerError, Reason.ISSUER_MISMATCH),
    (jwt_errors.InvalidAlgorithmError, Reason.ALGORITHM_NOT_ALLOWED),
    (jwt_errors.DecodeError, Reason.TOKEN_MALFORMED),
)


def _classify(exc: jwt_errors.InvalidTokenError) -> AuthError:
    for kind, reason in _CLASSIFIED:
        if isinstance(exc, kind):
            return AuthError(reason, type(exc).__name__)
    return AuthError(Reason.CLAIMS_INVALID, type(exc).__name__)
