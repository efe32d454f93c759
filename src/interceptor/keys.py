"""Teleport's signing keys: fetched over hardened HTTP, cached per container, refreshed with a cooldown.

Layers, each adding one concern: `HttpFetcher` (bytes from a URL, no redirects, capped), key sources
(`DiscoverySource` reads the OIDC discovery document then its JWKS; `PinnedSource` reads configured JSON),
and `KeyStore` (TTL cache, last-good keys on failure, one refresh per cooldown window).
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
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from interceptor.config import check_fetch_url
from interceptor.errors import InterceptorError, Refusal
from interceptor.logs import SERVICE
from interceptor.reasons import Reason

logger = Logger(service=SERVICE, child=True)

MIN_RSA_BITS = 2048
DISCOVERY_MAX_BYTES = 64 * 1024
JWKS_MAX_BYTES = 256 * 1024
PINNED_ALG = "RS256"
READ_CHUNK = 16 * 1024

Clock = Callable[[], float]


class FetchError(InterceptorError):
    """The identity provider could not be read; the message is for logs (no secrets in it). Internal: a failed
    load keeps the last-good keys, and no keys at all is the refusal `idp_unavailable`."""


@dataclass(frozen=True)
class VerificationKey:
    """One RSA public key from the JWKS; `kid` as published (Teleport tokens carry none)."""

    kid: str | None
    key: RSAPublicKey


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


def parse_jwks(document: Any) -> list[VerificationKey]:
    """RSA signing keys usable with RS256 and at least 2048 bits; anything else is skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("JWKS is not an object with a 'keys' list")
    keys: list[VerificationKey] = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", PINNED_ALG) != PINNED_ALG:
            continue
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (InvalidKeyError, ValueError, TypeError):
            logger.warning("skipping an unparseable JWKS entry")
            continue
        if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            logger.warning("skipping a JWKS key under 2048 bits")
            continue
        kid = jwk.get("kid")
        keys.append(VerificationKey(kid=kid if isinstance(kid, str) else None, key=key))
    return keys


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError(f"{what} is not JSON (or nested too deeply)") from None


class DiscoverySource:
    """Reads `<issuer>/.well-known/openid-configuration`, checks its issuer, then fetches its `jwks_uri`.

    Only `issuer` and `jwks_uri` are read: Teleport's document lacks the endpoints a full OIDC client wants.
    """

    def __init__(self, issuer: str, discovery_url: str, fetch: Fetcher) -> None:
        self._issuer = issuer
        self._discovery_url = discovery_url
        self._fetch = fetch

    def load(self) -> list[VerificationKey]:
        discovery = _json(self._fetch(self._discovery_url, DISCOVERY_MAX_BYTES), "discovery document")
        if not isinstance(discovery, dict):
            raise FetchError("discovery document is not an object")
        if discovery.get("issuer") != self._issuer:
            raise FetchError("discovery issuer differs from TELEPORT_ISSUER")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError("discovery document has no jwks_uri")
        if _origin(jwks_uri) != _origin(self._issuer):
            raise FetchError("jwks_uri is not on the issuer's origin")
        return parse_jwks(_json(self._fetch(jwks_uri, JWKS_MAX_BYTES), "JWKS"))


class PinnedSource:
    """Keys from a JWKS given in configuration (no network)."""

    def __init__(self, jwks_text: str) -> None:
        self._jwks_text = jwks_text

    def load(self) -> list[VerificationKey]:
        return parse_jwks(_json(self._jwks_text.encode(), "TELEPORT_JWKS"))


class KeySource(Protocol):
    """Where keys come from; raises FetchError when they cannot be had."""

    def load(self) -> list[VerificationKey]: ...


class KeyStore:
    """Per-container key cache.

    Keys are loaded on first use and again after `ttl_s`; a failed load keeps the last-good keys. Refreshes
    (scheduled or forced by an unknown key) happen at most once per `cooldown_s`, one at a time, so random
    `kid`s or garbage signatures cannot turn into a fetch storm against Teleport.
    """

    def __init__(self, source: KeySource, ttl_s: float, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._keys: list[VerificationKey] = []
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def candidates(self, kid: str | None) -> Sequence[VerificationKey]:
        """Keys that may have signed a token: the one named by `kid`, or all of them when there is no `kid`;
        `Refusal` (`idp_unavailable`) when no key is known and none could be fetched."""
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._ttl_s:
            self._refresh()
        if not self._keys:
            raise Refusal(Reason.IDP_UNAVAILABLE, "no verification keys")
        if kid is None:
            return self._keys
        return [k for k in self._keys if k.kid == kid]

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
                logger.warning("JWKS refresh failed; keeping last-good keys", extra={"problem": str(exc)})
                return False
            except Exception:  # a hostile document must never turn into more than a failed refresh
                logger.exception("JWKS refresh failed unexpectedly; keeping last-good keys")
                return False
            if not keys:
                logger.warning("JWKS has no usable RS256 key of 2048+ bits; keeping last-good keys")
                return False
            self._keys, self._loaded_at = keys, now
            logger.info("JWKS loaded", extra={"key_count": len(keys)})
            return True


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        return parts.scheme, parts.hostname, parts.port
    except ValueError:
        raise FetchError("jwks_uri has an invalid port") from None
