"""Hand-built compact JWS for tests: tokens whose headers or signatures PyJWT would refuse to produce (unknown or
hostile `kid`, `crit`, `cty`, a signature by the wrong kind of key), and a settable clock. Development only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwt.algorithms import ECAlgorithm

Signer = Callable[[bytes], bytes]


class FakeClock:
    """A settable clock for key stores (TTL, cooldown) and verifiers (expiry, the token cache)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], payload: Any, sign: Signer) -> str:
    """`header.payload.signature`; `payload` is JSON-encoded unless given as bytes."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(body)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def rsa_signer(key: rsa.RSAPrivateKey) -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def es256_signer(key: ec.EllipticCurvePrivateKey) -> Signer:
    """ES256 as JWS writes it (raw r || s, not DER)."""
    algorithm = ECAlgorithm(ECAlgorithm.SHA256)
    return lambda data: algorithm.sign(data, key)


def hmac_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()
