"""A local stand-in for Teleport's OIDC identity provider, for tests, the demo and sample events.

It serves `/.well-known/openid-configuration` and `/.well-known/jwks-oidc` over HTTP on 127.0.0.1 and
mints ID tokens shaped exactly like Teleport's (RS256, no `kid` header, `aud` the MCP app URI, `nbf` =
`iat` - 10 s, `username`, `roles`, `traits`). DEVELOPMENT ONLY: nothing trusts its keys unless configured to.
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
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devtools import loopback

DEFAULT_AUDIENCE = "mcp+https://gateway.example.com/mcp"


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key (Teleport's OIDC CA uses RSA 2048)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The JWKS entry Teleport publishes: kid = base64url SHA-256 of the public key, use sig, alg RS256."""
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    jwk.update(
        kid=base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode(),
        use="sig",
        alg="RS256",
    )
    return jwk


class Issuer:
    """Holds the signing keys and mints tokens; `serve()` publishes them over HTTP."""

    def __init__(self, issuer_url: str = "", audience: str = DEFAULT_AUDIENCE, key: rsa.RSAPrivateKey | None = None):
        self.url = issuer_url
        self.audience = audience
        self.signing_key = key or new_key()
        self.published = [self.signing_key]
        self.down = False
        self.requests: list[str] = []
        self.discovery_overrides: dict[str, Any] = {}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(k) for k in self.published]}

    def discovery(self) -> dict[str, Any]:
        doc = {
            "issuer": self.url,
            "jwks_uri": self.url + "/.well-known/jwks-oidc",
            "claims": ["iss", "sub", "obo", "aud", "jti", "iat", "exp", "nbf"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"],
            "scopes_supported": ["openid"],
            "subject_types_supported": ["public", "pair-wise"],
        }
        doc.update(self.discovery_overrides)
        return doc

    def rotate(self, *, finish: bool = False) -> rsa.RSAPrivateKey:
        """Start a CA rotation: a new signing key, both keys published; `finish=True` drops the old key."""
        old, self.signing_key = self.signing_key, new_key()
        self.published = [self.signing_key] if finish else [self.signing_key, old]
        return old

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
                routes = {
                    "/.well-known/openid-configuration": issuer.discovery,
                    "/.well-known/jwks-oidc": issuer.jwks,
                }
                if issuer.down or self.path not in routes:
                    self.send_response(503 if issuer.down else 404)
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
