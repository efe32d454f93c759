"""A local stand-in for Teleport's OIDC identity provider, for tests, the demo and sample events.

It serves `/.well-known/openid-configuration` and `/.well-known/jwks-oidc` over HTTP on 127.0.0.1 and
mints ID tokens shaped exactly like Teleport's (RS256, no `kid` header, `aud` the MCP app URI, `nbf` =
`iat` - 10 s, `username`, `roles`, `traits`). On the same server, under `/workload-identity`, it is Teleport's
Workload Identity issuer too (`Issuer.workload`): its own discovery document and JWKS (`/jwt-jwks.json`) with
separate keys (ES256 as on Teleport's `balanced-v1` suite, or RS256 as on `legacy`; EC coordinates published
without leading zero bytes, as Teleport does), minting JWT-SVIDs (`sub` a SPIFFE ID, `aud`, `exp` 5 minutes,
`iat`, `jti`, a `kid` header). DEVELOPMENT ONLY: nothing trusts its keys unless configured to.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from devtools import loopback

DEFAULT_AUDIENCE = "mcp+https://gateway.example.com/mcp"
WORKLOAD_PATH = "/workload-identity"
TRUST_DOMAIN = "example.teleport.sh"
DEFAULT_AGENT = f"spiffe://{TRUST_DOMAIN}/agents/hr-assistant"
type SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key (Teleport's OIDC CA uses RSA 2048)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (Teleport's SPIFFE CA JWT key on the balanced-v1, fips-v1 and hsm-v1 suites)."""
    return ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(key: SigningKey) -> str:
    """Teleport's kid: base64url SHA-256 of the public key (DER)."""
    public = key.public_key()
    der = (
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        if isinstance(public, rsa.RSAPublicKey)
        else public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return _b64(hashlib.sha256(der).digest())


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The JWKS entry Teleport publishes: kid = base64url SHA-256 of the public key, use sig, alg RS256 (RSA) or
    ES256 (EC P-256, coordinates as minimal big-endian bytes: Teleport does not left-pad them)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        x, y = (n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big") for n in (numbers.x, numbers.y))
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(x),
            "y": _b64(y),
            "kid": key_id(key),
            "use": "sig",
            "alg": "ES256",
        }
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=key_id(key), use="sig", alg="RS256")
    return jwk


class _Ca:
    """What one Teleport CA publishes: its signing keys (JWKS) and an OIDC discovery document pointing at them.
    Subclasses say where (`_issuer`, `JWKS_PATH`), what the document lists, and which keys they make."""

    JWKS_PATH = ""
    CLAIMS: tuple[str, ...] = ()
    ALGORITHMS: tuple[str, ...] = ()
    SUBJECT_TYPES: tuple[str, ...] = ()

    signing_key: SigningKey
    published: list[SigningKey]
    discovery_overrides: dict[str, Any]

    def _issuer(self) -> str:
        raise NotImplementedError

    def _new_key(self) -> SigningKey:
        raise NotImplementedError

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(k) for k in self.published]}

    def discovery(self) -> dict[str, Any]:
        doc = {
            "issuer": self._issuer(),
            "jwks_uri": self._issuer() + self.JWKS_PATH,
            "claims": list(self.CLAIMS),
            "id_token_signing_alg_values_supported": list(self.ALGORITHMS),
            "response_types_supported": ["id_token"],
            "scopes_supported": ["openid"],
            "subject_types_supported": list(self.SUBJECT_TYPES),
        }
        doc.update(self.discovery_overrides)
        return doc

    def rotate(self, *, finish: bool = False) -> SigningKey:
        """Start a CA rotation: a new signing key, both keys published; `finish=True` drops the old key."""
        old, self.signing_key = self.signing_key, self._new_key()
        self.published = [self.signing_key] if finish else [self.signing_key, old]
        return old


class Issuer(_Ca):
    """Holds the signing keys and mints tokens; `serve()` publishes them over HTTP."""

    JWKS_PATH = "/.well-known/jwks-oidc"
    CLAIMS = ("iss", "sub", "obo", "aud", "jti", "iat", "exp", "nbf")
    ALGORITHMS = ("RS256",)
    SUBJECT_TYPES = ("public", "pair-wise")
    signing_key: rsa.RSAPrivateKey  # Teleport's OIDC CA: RSA 2048

    def __init__(self, issuer_url: str = "", audience: str = DEFAULT_AUDIENCE, key: rsa.RSAPrivateKey | None = None):
        self.url = issuer_url
        self.audience = audience
        self.signing_key = key or new_key()
        self.published = [self.signing_key]
        self.down = False
        self.requests: list[str] = []
        self.discovery_overrides: dict[str, Any] = {}
        self.workload = WorkloadIssuer(self)

    def _issuer(self) -> str:
        return self.url

    def _new_key(self) -> rsa.RSAPrivateKey:
        return new_key()

    def claims(
        self,
        user: str = "alice",
        roles: list[str] | None = None,
        traits: dict[str, list[str]] | None = None,
        ttl: int = 600,
        now: float | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Teleport ID token claims for `user`; `overrides` replace or (with value ...) remove claims."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": user,
            "aud": self.audience,
            "exp": issued + ttl,
            "nbf": issued - 10,
            "iat": issued,
            "jti": hashlib.sha256(f"{user}{issued}{time.perf_counter_ns()}".encode()).hexdigest()[:32],
            "username": user,
            "roles": ["developer"] if roles is None else roles,
            "traits": {"logins": [user]} if traits is None else traits,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not ...}

    def mint(
        self, key: rsa.RSAPrivateKey | None = None, headers: dict[str, Any] | None = None, **claim_args: Any
    ) -> str:
        """A signed ID token like Teleport's (header `{"alg": "RS256", "typ": "JWT"}`, no kid)."""
        return jwt.encode(
            self.claims(**claim_args), key or self.signing_key, algorithm="RS256", headers=headers or None
        )

    @contextmanager
    def serve(self) -> Iterator[Issuer]:
        """Publish discovery and JWKS on 127.0.0.1 (random port) for the duration of the block."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                workload = issuer.workload
                routes = {
                    "/.well-known/openid-configuration": issuer.discovery,
                    "/.well-known/jwks-oidc": issuer.jwks,
                    WORKLOAD_PATH + "/.well-known/openid-configuration": workload.discovery,
                    WORKLOAD_PATH + "/jwt-jwks.json": workload.jwks,
                }
                down = workload.down if self.path.startswith(WORKLOAD_PATH + "/") else issuer.down
                if down or self.path not in routes:
                    self.send_response(503 if down else 404)
                    self.end_headers()
                    return
                body = json.dumps(routes[self.path]()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        with loopback.serve(Handler) as address:
            self.url = f"http://{address}"
            yield self


class WorkloadIssuer(_Ca):
    """Teleport Workload Identity on the same proxy: issuer `<proxy>/workload-identity`, its own keys (separate
    from the OIDC ones), JWT-SVIDs for agents. `alg` is ES256 (Teleport's balanced-v1 suite) or RS256 (legacy)."""

    JWKS_PATH = "/jwt-jwks.json"
    CLAIMS = ("iss", "sub", "jti", "aud", "exp", "iat")
    ALGORITHMS = ("RS256", "ES256")
    SUBJECT_TYPES = ("public",)

    def __init__(self, proxy: Issuer, alg: str = "ES256") -> None:
        self._proxy = proxy
        self.use(alg)

    def use(self, alg: str) -> None:
        """Start over with one fresh key for `alg`, published, service up, no overrides."""
        self.alg = alg
        self.signing_key = self._new_key()
        self.published = [self.signing_key]
        self.down = False
        self.discovery_overrides = {}

    @property
    def url(self) -> str:
        return self._proxy.url + WORKLOAD_PATH

    def _issuer(self) -> str:
        return self.url

    def _new_key(self) -> SigningKey:
        return new_ec_key() if self.alg == "ES256" else new_key()

    def claims(
        self, agent: str = DEFAULT_AGENT, ttl: int = 300, now: float | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """JWT-SVID claims for the SPIFFE ID `agent`; `overrides` replace or (with value ...) remove claims."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": agent,
            "aud": self._proxy.audience,
            "exp": issued + ttl,
            "iat": issued,
            "jti": hashlib.sha256(f"{agent}{issued}{time.perf_counter_ns()}".encode()).hexdigest()[:32],
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not ...}

    def mint(
        self,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        *,
        kid: bool = True,
        **claim_args: Any,
    ) -> str:
        """A signed JWT-SVID (header `{"alg", "kid", "typ": "JWT"}`; `kid=False` leaves the kid out)."""
        signing = key or self.signing_key
        alg = "ES256" if isinstance(signing, ec.EllipticCurvePrivateKey) else "RS256"
        header = {"kid": key_id(signing)} if kid else {}
        header.update(headers or {})
        return jwt.encode(self.claims(**claim_args), signing, algorithm=alg, headers=header or None)
