"""Teleport's signing keys: fetched over hardened HTTP, cached per container, refreshed with a cooldown.

Layers, each adding one concern: `HttpFetcher` (bytes from a URL, no redirects, capped), key sources
(`DiscoverySource` reads the OIDC discovery document then its JWKS; `PinnedSource` reads configured JSON),
and `KeyStore` (TTL cache, last-good keys on failure, one refresh per cooldown window).

One implementation serves both token kinds: the human's OIDC ID token (keys at `<proxy>/.well-known/jwks-oidc`,
RS256 only) and the agent's Workload Identity JWT-SVID (keys at `<proxy>/workload-identity/jwt-jwks.json`, RS256 on
Teleport's `legacy` suite, ES256 on the others). Each store is built for its own issuer and pinned algorithms; a
key is used only with the algorithm its type implies (RSA 2048+ bits: RS256; EC P-256: ES256), never one a token
names.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError
from jwt.utils import base64url_decode, base64url_encode

from interceptor.config import check_fetch_url
from interceptor.errors import InterceptorError, Refusal
from interceptor.logs import SERVICE
from interceptor.reasons import Reason

logger = Logger(service=SERVICE, child=True)

MIN_RSA_BITS = 2048
DISCOVERY_MAX_BYTES = 64 * 1024
JWKS_MAX_BYTES = 256 * 1024
RS256, ES256 = "RS256", "ES256"
PINNED_ALG = RS256  # Teleport's OIDC ID tokens
P256_BYTES = 32  # an EC P-256 coordinate
READ_CHUNK = 16 * 1024
# What each pinned algorithm needs of a JWK: its key type, and (EC) its curve.
_KEY_TYPES = {RS256: ("RSA", None), ES256: ("EC", "P-256")}

Clock = Callable[[], float]


class FetchError(InterceptorError):
    """The identity provider could not be read; the message is for logs (no secrets in it). Internal: a failed
    load keeps the last-good keys, and no keys at all is the refusal `idp_unavailable`."""


@dataclass(frozen=True)
class VerificationKey:
    """One public key from the JWKS; `kid` as published (Teleport's ID tokens carry none); `alg` the one algorithm
    it verifies, implied by its type (RSA: RS256, EC P-256: ES256)."""

    kid: str | None
    key: RSAPublicKey | EllipticCurvePublicKey
    alg: str = RS256


def describe_algorithms(algorithms: frozenset[str]) -> str:
    """The keys a set of pinned algorithms admits, for log lines and problems."""
    kinds = {RS256: "RS256 key of 2048+ bits", ES256: "ES256 key on P-256"}
    return " or ".join(kinds[alg] for alg in sorted(algorithms, reverse=True))


class Fetcher(Protocol):
    """Returns the body of a GET, or raises FetchError."""

    def __call__(self, url: str, max_bytes: int) -> bytes: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a JWKS URL that moves is a misconfiguration or an attack."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpFetcher:
    """GET with a total deadline (not just per read), no redirects, no proxies, and a response size cap."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))

    def __call__(self, url: str, max_bytes: int) -> bytes:
        if (why := check_fetch_url(url)) is not None:
            raise FetchError(f"refusing to fetch {url}: {why}")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (checked)
        deadline = time.monotonic() + self._timeout_s
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                if response.status != 200:
                    raise FetchError(f"GET {url}: HTTP {response.status}")
                body = bytearray()
                while len(body) <= max_bytes and (chunk := response.read1(READ_CHUNK)):
                    body += chunk
                    if time.monotonic() > deadline:
                        raise FetchError(f"GET {url}: slower than {self._timeout_s:g} s")
        except urllib.error.HTTPError as exc:
            raise FetchError(f"GET {url}: HTTP {exc.code}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise FetchError(f"GET {url}: {type(exc).__name__}") from None
        if len(body) > max_bytes:
            raise FetchError(f"GET {url}: response larger than {max_bytes} bytes")
        return bytes(body)


def parse_jwks(document: Any, algorithms: frozenset[str] = frozenset({RS256})) -> list[VerificationKey]:
    """The signing keys usable with the pinned `algorithms`: RSA of at least 2048 bits for RS256, EC P-256 for
    ES256 (its coordinates left-padded to 32 bytes: Teleport publishes them without leading zeros). A key whose
    `use` is not `sig`, or whose `alg` names another algorithm, is skipped; so is anything else."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("JWKS is not an object with a 'keys' list")
    keys: list[VerificationKey] = []
    for jwk in document["keys"]:
        alg = _algorithm_of(jwk, algorithms)
        if alg is None:
            continue
        try:
            key = RSAAlgorithm.from_jwk(jwk) if alg == RS256 else ECAlgorithm.from_jwk(_padded_ec(jwk))
        except (InvalidKeyError, ValueError, TypeError):
            logger.warning("skipping an unparseable JWKS entry")
            continue
        if isinstance(key, RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            logger.warning("skipping a JWKS key under 2048 bits")
            continue
        if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey) or (
            isinstance(key, EllipticCurvePublicKey) and not isinstance(key.curve, SECP256R1)
        ):
            continue
        kid = jwk.get("kid")
        keys.append(VerificationKey(kid=kid if isinstance(kid, str) else None, key=key, alg=alg))
    return keys


def _algorithm_of(jwk: Any, algorithms: frozenset[str]) -> str | None:
    """The pinned algorithm a JWK's type implies (None: not usable here). A JWK `alg`, when present, must agree."""
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
        return None
    for alg in algorithms:
        kty, crv = _KEY_TYPES[alg]
        if jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv) and jwk.get("alg", alg) == alg:
            return alg
    return None


def _padded_ec(jwk: dict[str, Any]) -> dict[str, Any]:
    """The JWK with `x` and `y` left-padded to 32 bytes (PyJWT refuses shorter coordinates; a P-256 coordinate
    that starts with zero bytes is published shorter by Teleport). Longer ones are left to be refused."""
    padded = dict(jwk)
    for name in ("x", "y"):
        value = jwk.get(name)
        if isinstance(value, str):
            raw = base64url_decode(value)
            if len(raw) < P256_BYTES:
                padded[name] = base64url_encode(raw.rjust(P256_BYTES, b"\0")).decode()
    return padded


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError(f"{what} is not JSON (or nested too deeply)") from None


class DiscoverySource:
    """Reads `<issuer>/.well-known/openid-configuration`, checks its issuer, then fetches its `jwks_uri`.

    Only `issuer` and `jwks_uri` are read: Teleport's document lacks the endpoints a full OIDC client wants.
    `setting` names the issuer's setting in problems (`TELEPORT_ISSUER`, `AGENT_ISSUER`).
    """

    def __init__(
        self,
        issuer: str,
        discovery_url: str,
        fetch: Fetcher,
        algorithms: frozenset[str] = frozenset({RS256}),
        setting: str = "TELEPORT_ISSUER",
    ) -> None:
        self._issuer = issuer
        self._discovery_url = discovery_url
        self._fetch = fetch
        self.algorithms = algorithms
        self._setting = setting

    def load(self) -> list[VerificationKey]:
        discovery = _json(self._fetch(self._discovery_url, DISCOVERY_MAX_BYTES), "discovery document")
        if not isinstance(discovery, dict):
            raise FetchError("discovery document is not an object")
        if discovery.get("issuer") != self._issuer:
            raise FetchError(f"discovery issuer differs from {self._setting}")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError("discovery document has no jwks_uri")
        if _origin(jwks_uri) != _origin(self._issuer):
            raise FetchError("jwks_uri is not on the issuer's origin")
        return parse_jwks(_json(self._fetch(jwks_uri, JWKS_MAX_BYTES), "JWKS"), self.algorithms)


class PinnedSource:
    """Keys from a JWKS given in configuration (no network); `setting` names it in problems."""

    def __init__(
        self, jwks_text: str, algorithms: frozenset[str] = frozenset({RS256}), setting: str = "TELEPORT_JWKS"
    ) -> None:
        self._jwks_text = jwks_text
        self.algorithms = algorithms
        self._setting = setting

    def load(self) -> list[VerificationKey]:
        return parse_jwks(_json(self._jwks_text.encode(), self._setting), self.algorithms)


class KeySource(Protocol):
    """Where keys come from (usable with `algorithms`); raises FetchError when they cannot be had."""

    algorithms: frozenset[str]

    def load(self) -> list[VerificationKey]: ...


class KeyStore:
    """Per-container key cache.

    Keys are loaded on first use and again after `ttl_s`; a failed load keeps the last-good keys. Refreshes
    (scheduled or forced by an unknown key) happen at most once per `cooldown_s`, one at a time, so random
    `kid`s or garbage signatures cannot turn into a fetch storm against Teleport.
    """

    def __init__(
        self, source: KeySource, ttl_s: float, cooldown_s: float, clock: Clock = time.monotonic, label: str = "JWKS"
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._label = label  # names the key set in log lines ("JWKS", "agent JWKS")
        self._keys: list[VerificationKey] = []
        self._by_alg: dict[str, list[VerificationKey]] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def candidates(self, kid: str | None, alg: str | None = None) -> Sequence[VerificationKey]:
        """Keys that may have signed a token: of those for `alg` (all keys when None), the one named by `kid`, or
        all of them when there is no `kid`; `Refusal` (`idp_unavailable`) when no key is known and none could be
        fetched."""
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._ttl_s:
            self._refresh()
        if not self._keys:
            raise Refusal(Reason.IDP_UNAVAILABLE, "no verification keys")
        keys = self._keys if alg is None else self._by_alg.get(alg, [])
        if kid is None:
            return keys
        return [k for k in keys if k.kid == kid]

    def refresh_after_miss(self) -> bool:
        """Called when no key verified a token; True when a refresh ran and succeeded."""
        return self._refresh()

    def _refresh(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._cooldown_s:
                return False
            self._attempted_at = now
            try:
                keys = self._source.load()
            except FetchError as exc:
                logger.warning(f"{self._label} refresh failed; keeping last-good keys", extra={"problem": str(exc)})
                return False
            except Exception:  # a hostile document must never turn into more than a failed refresh
                logger.exception(f"{self._label} refresh failed unexpectedly; keeping last-good keys")
                return False
            if not keys:
                usable = describe_algorithms(self._source.algorithms)
                logger.warning(f"{self._label} has no usable {usable}; keeping last-good keys")
                return False
            by_alg: dict[str, list[VerificationKey]] = {}
            for key in keys:
                by_alg.setdefault(key.alg, []).append(key)
            self._keys, self._by_alg, self._loaded_at = keys, by_alg, now
            logger.info(f"{self._label} loaded", extra={"key_count": len(keys)})
            return True


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        return parts.scheme, parts.hostname, parts.port
    except ValueError:
        raise FetchError("jwks_uri has an invalid port") from None
