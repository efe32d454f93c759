"""Token verification against the real local issuer (discovery + JWKS over HTTP on 127.0.0.1) and real RSA keys.

Every row of the JWT threat table (../shared/reference/jwt-threats.md) that concerns the token itself is covered
here; key fetching and caching are in test_keys.py. Tokens are never printed: leak checks compare booleans.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devtools import loopback
from devtools.gateway import request_event, rpc
from devtools.issuer import Issuer, new_key, public_jwk
from devtools.jws import FakeClock, b64url, compact, hmac_signer, rsa_signer
from interceptor import tokens
from interceptor.config import Settings
from interceptor.contract import header_fields
from interceptor.errors import Refusal
from interceptor.keys import DiscoverySource, HttpFetcher, KeyStore
from interceptor.reasons import Reason
from interceptor.tokens import MAX_TOKEN_BYTES, Identity, TokenVerifier, bearer_token

LEEWAY = 30
WELL_KNOWN = {"/.well-known/openid-configuration", "/.well-known/jwks-oidc"}


# ---------------------------------------------------------------------------------------------------------------
# helpers


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_claims(
    claims: dict[str, Any], key: rsa.RSAPrivateKey, headers: dict[str, Any] | None = None, alg: str = "RS256"
) -> str:
    """Sign arbitrary claims (including nulls the issuer's helper would replace with defaults)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=alg, headers=headers)


def refusal(verifier: TokenVerifier, token: str) -> Reason:
    with pytest.raises(Refusal) as info:
        verifier.verify(token)
    return info.value.reason


@contextmanager
def local_server(routes: dict[str, tuple[int, bytes]]) -> Iterator[tuple[str, list[str]]]:
    """A tiny HTTP server on 127.0.0.1 serving fixed bodies; yields its base URL and the paths it was asked for."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            status, body = routes.get(self.path, (404, b""))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with loopback.serve(Handler) as address:
        yield f"http://{address}", hits


def handler_status(out: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = out["mcp"]["transformedGatewayResponse"]
    return response["statusCode"], response["body"]


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def weak_key() -> rsa.RSAPrivateKey:
    return new_key(1024)


@pytest.fixture
def store(issuer: Issuer, clock: FakeClock, fetcher: HttpFetcher) -> KeyStore:
    """A cold KeyStore reading the served issuer, with a fake clock; the issuer's request log starts empty."""
    issuer.requests.clear()
    discovery_url = Settings(issuer=issuer.url, audience=issuer.audience).discovery_url
    source = DiscoverySource(issuer.url, discovery_url, fetcher)
    return KeyStore(source, ttl_s=3600, cooldown_s=30, clock=clock)


@pytest.fixture
def verifier(issuer: Issuer, store: KeyStore) -> TokenVerifier:
    return TokenVerifier(issuer.url, issuer.audience, store, leeway_s=LEEWAY, cache_size=1024)


@pytest.fixture
def warm_verifier(issuer: Issuer, verifier: TokenVerifier) -> TokenVerifier:
    """A verifier whose keys are already loaded (exactly one discovery + one JWKS request so far)."""
    verifier.verify(issuer.mint())
    assert sorted(issuer.requests) == sorted(WELL_KNOWN)
    return verifier


# ---------------------------------------------------------------------------------------------------------------
# the happy path, as Teleport sends it


def test_teleport_shaped_token_gives_identity(issuer: Issuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(user="alice", roles=["developer", "db-reader"], traits={"logins": ["alice", "ubuntu"]})
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}  # no kid, like Teleport
    identity = verifier.verify(token)
    assert identity.user == "alice"
    assert identity.roles == ("developer", "db-reader")
    assert dict(identity.traits) == {"logins": ("alice", "ubuntu")}
    assert identity.issuer == issuer.url
    assert identity.expires_at == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert identity.bot is False


# ---------------------------------------------------------------------------------------------------------------
# 1, 2, 16: algorithm pinned to RS256; no RS/HS confusion; no token kind confusion


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier, alg: str) -> None:
    header = {"alg": alg, "typ": "JWT"}
    payload = b64url(json.dumps(issuer.claims()).encode())
    # the usual `alg: none` form has an empty signature: not a compact JWS, refused before its header is read
    for token in (f"{b64url(json.dumps(header).encode())}.{payload}.", compact(header, issuer.claims(), lambda _: b"")):
        assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    signed = compact(header, issuer.claims(), lambda _: b"sig")
    assert refusal(verifier, signed) is Reason.ALGORITHM_NOT_ALLOWED
    assert issuer.requests == []


def test_hs256_signed_with_public_key_pem_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    """RS/HS confusion: the attacker HMACs with the (public) PEM, hoping the verifier uses it as an HMAC secret."""
    pem = public_pem(issuer.signing_key)
    jwk_text = json.dumps(public_jwk(issuer.signing_key)).encode()
    for secret in (pem, pem.strip(), jwk_text):
        for alg in ("HS256", "HS384", "HS512"):
            token = compact({"alg": alg, "typ": "JWT"}, issuer.claims(), hmac_signer(secret))
            assert refusal(verifier, token) is Reason.ALGORITHM_NOT_ALLOWED
    assert issuer.requests == []


def test_hmac_signature_under_rs256_header_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    """Same confusion with the header lying about the algorithm: the RSA verification simply fails."""
    token = compact({"alg": "RS256", "typ": "JWT"}, issuer.claims(), hmac_signer(public_pem(issuer.signing_key)))
    assert refusal(verifier, token) is Reason.SIGNATURE_INVALID


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_rsa_algorithms_with_the_real_key_refused(issuer: Issuer, verifier: TokenVerifier, alg: str) -> None:
    token = sign_claims(issuer.claims(), issuer.signing_key, alg=alg)
    assert refusal(verifier, token) is Reason.ALGORITHM_NOT_ALLOWED
    assert issuer.requests == []


def test_es256_token_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    """Teleport's classic app JWT may be ES256 (balanced-v1 suite): never accepted here."""
    token = jwt.encode(issuer.claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert refusal(verifier, token) is Reason.ALGORITHM_NOT_ALLOWED
    assert issuer.requests == []


def test_classic_app_jwt_with_cluster_name_issuer_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    """Token kind confusion: Teleport's `{{internal.jwt}}` has iss = cluster name, not the proxy URL."""
    token = issuer.mint(iss="teleport.example.com", aud=[issuer.audience], jti=...)
    assert refusal(verifier, token) is Reason.ISSUER_MISMATCH
    assert issuer.requests == []


def test_aws_integration_token_from_same_ca_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    """Teleport's AWS OIDC integration tokens share CA and issuer; only the exact audience keeps them out."""
    claims = issuer.claims(sub="system:proxy", aud="discover.teleport", obo="user:alice")
    for name in ("username", "roles", "traits"):
        claims.pop(name)
    assert refusal(verifier, sign_claims(claims, issuer.signing_key, headers={"kid": ""})) in {
        Reason.AUDIENCE_MISMATCH,
        Reason.SIGNATURE_INVALID,  # kid "" names no published key: refused before the audience is even read
    }
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.AUDIENCE_MISMATCH


# ---------------------------------------------------------------------------------------------------------------
# 3: kid injection


@pytest.mark.parametrize(
    "kid",
    [
        pytest.param("k" * 129, id="just-over-cap"),
        pytest.param("../" * 2000 + "etc/passwd", id="huge-traversal"),
        pytest.param("A" * 10_000, id="10k"),
        pytest.param(12345, id="int"),
        pytest.param({"$ne": None}, id="object"),
        pytest.param(["a"], id="list"),
    ],
)
def test_oversized_or_non_string_kid_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier, kid: Any) -> None:
    token = compact({"alg": "RS256", "typ": "JWT", "kid": kid}, issuer.claims(), rsa_signer(issuer.signing_key))
    assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


@pytest.mark.parametrize(
    "kid",
    ["../../../../etc/passwd", "/.well-known/jwks-oidc", "http://127.0.0.1:1/jwks", "' OR 1=1 --", "\x00", ""],
)
def test_kid_is_only_a_lookup_key(issuer: Issuer, warm_verifier: TokenVerifier, clock: FakeClock, kid: str) -> None:
    """A short but hostile kid names no key: refused, no extra fetch in the cooldown, never used in a URL."""
    token = issuer.mint(headers={"kid": kid})
    assert refusal(warm_verifier, token) is Reason.SIGNATURE_INVALID
    assert len(issuer.requests) == 2  # only the warm-up load
    clock.advance(31)  # past the cooldown: at most one ordinary refresh of the fixed URLs
    assert refusal(warm_verifier, issuer.mint(headers={"kid": kid})) is Reason.SIGNATURE_INVALID
    assert set(issuer.requests) <= WELL_KNOWN
    assert len(issuer.requests) <= 4


def test_kid_matching_published_key_verifies(issuer: Issuer, verifier: TokenVerifier) -> None:
    kid = public_jwk(issuer.signing_key)["kid"]
    assert verifier.verify(issuer.mint(headers={"kid": kid})).user == "alice"


def test_attacker_key_claiming_the_published_kid_refused(
    issuer: Issuer, verifier: TokenVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    kid = public_jwk(issuer.signing_key)["kid"]
    assert refusal(verifier, issuer.mint(key=attacker_key, headers={"kid": kid})) is Reason.SIGNATURE_INVALID


# ---------------------------------------------------------------------------------------------------------------
# 4: jku / x5u / embedded jwk are ignored


def test_embedded_key_headers_ignored_and_never_fetched(
    issuer: Issuer, verifier: TokenVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    attacker_jwks = json.dumps({"keys": [public_jwk(attacker_key)]}).encode()
    routes = {"/jwks.json": (200, attacker_jwks), "/cert.pem": (200, public_pem(attacker_key))}
    with local_server(routes) as (attacker_url, attacker_hits):
        headers = {
            "jku": attacker_url + "/jwks.json",
            "x5u": attacker_url + "/cert.pem",
            "jwk": public_jwk(attacker_key),
            "kid": public_jwk(attacker_key)["kid"],
        }
        for subset in (["jku"], ["x5u"], ["jwk"], ["jku", "x5u", "jwk"], list(headers)):
            token = issuer.mint(key=attacker_key, headers={name: headers[name] for name in subset})
            assert refusal(verifier, token) is Reason.SIGNATURE_INVALID
        assert attacker_hits == []
    assert set(issuer.requests) <= WELL_KNOWN


def test_embedded_jwk_of_the_real_key_does_not_help_a_forgery(
    issuer: Issuer, verifier: TokenVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    token = issuer.mint(key=attacker_key, headers={"jwk": public_jwk(attacker_key), "x5c": ["MIIB"]})
    assert refusal(verifier, token) is Reason.SIGNATURE_INVALID


# ---------------------------------------------------------------------------------------------------------------
# 5: crit


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"crit": ["exp"]}, id="unknown-ext"),
        pytest.param({"crit": ["b64"], "b64": True}, id="b64-pyjwt-supports"),
        pytest.param({"crit": []}, id="empty"),
        pytest.param({"crit": "b64"}, id="not-a-list"),
    ],
)
def test_crit_header_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier, extra: dict[str, Any]) -> None:
    token = compact({"alg": "RS256", "typ": "JWT", **extra}, issuer.claims(), rsa_signer(issuer.signing_key))
    assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


# ---------------------------------------------------------------------------------------------------------------
# 6: size cap before decoding


def test_token_over_16_kib_refused_before_decoding(
    issuer: Issuer, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.mint(traits={"pad": ["x" * 13_000]})
    assert len(token) > MAX_TOKEN_BYTES

    def must_not_decode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an oversized token reached the JWT decoder")

    monkeypatch.setattr(jwt.api_jwt, "decode_complete", must_not_decode)
    monkeypatch.setattr(jwt, "decode", must_not_decode)
    assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert refusal(verifier, "a" * (MAX_TOKEN_BYTES + 1)) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


def test_large_but_legal_token_accepted(issuer: Issuer, verifier: TokenVerifier) -> None:
    """The cap is generous: a signed token just under 16 KiB (many traits) still verifies."""
    token = issuer.mint(traits={"pad": ["x" * 11_000]})
    assert 14_000 < len(token) <= MAX_TOKEN_BYTES
    assert verifier.verify(token).traits["pad"] == ("x" * 11_000,)


def test_deeply_nested_json_refused_cleanly(issuer: Issuer, verifier: TokenVerifier) -> None:
    nested = b"[" * 5000 + b"]" * 5000
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    for token in (f"{header}.{b64url(nested)}.c2ln", f"{b64url(nested)}.{b64url(b'{}')}.c2ln"):
        assert len(token) <= MAX_TOKEN_BYTES
        assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


# ---------------------------------------------------------------------------------------------------------------
# 7: nested JWT and JWE


@pytest.mark.parametrize("cty", ["JWT", "jwt", "Jwt"])
def test_cty_jwt_refused(issuer: Issuer, verifier: TokenVerifier, cty: str) -> None:
    signer = rsa_signer(issuer.signing_key)
    inner = issuer.mint()
    for payload in (issuer.claims(), inner.encode()):
        token = compact({"alg": "RS256", "typ": "JWT", "cty": cty}, payload, signer)
        assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


def test_jwe_and_other_segment_counts_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    jwe_header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT"}).encode())
    jwe = ".".join([jwe_header, b64url(b"k" * 256), b64url(b"i" * 12), b64url(b"c" * 64), b64url(b"t" * 16)])
    valid = issuer.mint()
    for token in (jwe, valid + ".", valid + "." + valid.split(".")[2], ".".join(valid.split(".")[:2]), "", "...."):
        assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


@pytest.mark.parametrize("token", ["a.b.c", "!!.??.**", "e30.e30.", "bnVsbA.bnVsbA.c2ln", "W10.W10.c2ln"])
def test_garbage_three_part_tokens_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier, token: str) -> None:
    assert refusal(verifier, token) in {Reason.TOKEN_MALFORMED, Reason.ALGORITHM_NOT_ALLOWED}
    assert issuer.requests == []


def test_non_encodable_token_refused_as_malformed(issuer: Issuer, verifier: TokenVerifier) -> None:
    assert refusal(verifier, "\ud800") is Reason.TOKEN_MALFORMED


@pytest.mark.parametrize(
    "claims",
    [{"sub": "al\ud800ice", "username": ...}, {"roles": ["dev\udfff"]}, {"traits": {"team": ["\ud83d"]}}],
    ids=["sub", "role", "trait"],
)
def test_signed_claims_with_a_lone_surrogate_are_refused(
    issuer: Issuer, verifier: TokenVerifier, claims: dict[str, Any]
) -> None:
    # JSON escapes can spell text no UTF-8 answer can carry; claims are stamped into calls unencoded again
    token = issuer.mint(**claims)
    assert "\\u" in base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
    assert refusal(verifier, token) is Reason.TOKEN_MALFORMED


def test_escaped_unicode_claims_are_read(issuer: Issuer, verifier: TokenVerifier) -> None:
    identity = verifier.verify(issuer.mint(user="zoë", roles=["dév"], traits={"team": ["🚀"]}))
    assert (identity.user, identity.roles, identity.traits["team"]) == ("zoë", ("dév",), ("🚀",))


def test_non_encodable_token_through_handler_is_a_401(issuer: Issuer, interceptor: Any) -> None:
    status, body = handler_status(interceptor.handle(request_event(rpc("tools/list"), "x.\ud800.y")))
    assert status == 401
    assert "(reason: token_malformed)" in body["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------
# the exact token form


COMPACT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"  # {"alg":"RS256"}.{"sub":"alice"}.sig


def test_a_compact_token_is_read(issuer: Issuer, verifier: TokenVerifier) -> None:
    assert refusal(verifier, COMPACT) is Reason.ISSUER_MISMATCH  # parsed: refused for what it says, not its form


@pytest.mark.parametrize(
    "token",
    [
        COMPACT + "=",
        COMPACT + "==",
        COMPACT.replace(".", "=.", 1),
        COMPACT[:10] + "+" + COMPACT[11:],
        COMPACT[:10] + "/" + COMPACT[11:],
        COMPACT + ".x",
        COMPACT.rsplit(".", 1)[0],
        COMPACT.rsplit(".", 1)[0] + ".",
        "." + COMPACT.split(".", 1)[1],
        COMPACT[:10] + "é" + COMPACT[10:],
        COMPACT + "\n",
        COMPACT[:10] + "\u0000" + COMPACT[10:],
    ],
    ids=[
        "pad1",
        "pad2",
        "pad-inside",
        "plus",
        "slash",
        "four",
        "two",
        "empty-signature",
        "empty-header",
        "non-ascii",
        "newline",
        "nul",
    ],
)
def test_anything_but_the_exact_compact_form_is_malformed(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(Refusal) as info:
        verifier.verify(token)
    assert info.value.reason is Reason.TOKEN_MALFORMED
    assert COMPACT not in info.value.detail


# ---------------------------------------------------------------------------------------------------------------
# strict decoding, done once: one spelling per token, one parse shared by the cheap checks and the claims


def signed_segments(issuer: Issuer, header: str, payload: str) -> str:
    """A token whose (possibly non-canonical) segments are signed as they are, with the real key."""
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{b64url(rsa_signer(issuer.signing_key)(signing_input.encode()))}"


def canonical_segments(issuer: Issuer, **claims: Any) -> tuple[str, str]:
    header, payload, _ = issuer.mint(**claims).split(".")
    return header, payload


def test_padded_segments_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier) -> None:
    for pad in range(1, 4):
        header, payload = canonical_segments(issuer, jti="x" * pad)  # vary the length: some need padding
        padded = payload + "=" * (-len(payload) % 4)
        if padded != payload:
            assert refusal(verifier, signed_segments(issuer, header, padded)) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


def test_standard_base64_alphabet_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier) -> None:
    found = 0
    for i in range(200):
        header, payload = canonical_segments(issuer, jti=f"~~~?>{i}")
        if "-" in payload or "_" in payload:
            standard = payload.replace("-", "+").replace("_", "/")
            assert refusal(verifier, signed_segments(issuer, header, standard)) is Reason.TOKEN_MALFORMED
            found += 1
    assert found
    assert issuer.requests == []


def test_non_canonical_trailing_bits_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for pad in range(4):
        header, payload = canonical_segments(issuer, jti="x" * pad)
        if len(payload) % 4 == 0:
            continue
        twin = payload[:-1] + alphabet[alphabet.index(payload[-1]) ^ 1]  # same bytes, different unused bits
        assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(payload + "==")
        assert refusal(verifier, signed_segments(issuer, header, twin)) is Reason.TOKEN_MALFORMED
        assert verifier.verify(signed_segments(issuer, header, payload)).user == "alice"
    assert issuer.requests[-2:] == sorted(WELL_KNOWN, reverse=True) or set(issuer.requests) <= WELL_KNOWN


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_refused(issuer: Issuer, verifier: TokenVerifier, constant: str) -> None:
    claims = json.dumps(issuer.claims()).replace('"exp": ', f'"exp": {constant}, "was": ', 1).encode()
    token = compact({"alg": "RS256", "typ": "JWT"}, claims, rsa_signer(issuer.signing_key))
    assert refusal(verifier, token) is Reason.TOKEN_MALFORMED


@pytest.mark.parametrize("b64", [False, 0, None, "false"])
def test_unencoded_payload_option_refused_without_fetch(issuer: Issuer, verifier: TokenVerifier, b64: Any) -> None:
    token = compact({"alg": "RS256", "typ": "JWT", "b64": b64}, issuer.claims(), rsa_signer(issuer.signing_key))
    assert refusal(verifier, token) is Reason.TOKEN_MALFORMED
    assert issuer.requests == []


@pytest.mark.parametrize("jti", [1, None, ["a"]])
def test_jti_must_be_a_string(issuer: Issuer, verifier: TokenVerifier, jti: Any) -> None:
    claims = issuer.claims()
    claims["jti"] = jti
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.CLAIMS_INVALID


def test_a_fresh_token_is_decoded_once_and_a_cached_one_not_at_all(
    issuer: Issuer, warm_verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real_decode = binascii.a2b_base64

    def counting_decode(data: Any, **kwargs: Any) -> bytes:
        decoded.append(len(data))
        return real_decode(data, **kwargs)

    monkeypatch.setattr(tokens.binascii, "a2b_base64", counting_decode)
    token = issuer.mint()
    assert warm_verifier.verify(token).user == "alice"
    assert len(decoded) == 3  # header, payload and signature, once each: the cheap checks and the claims share them
    assert warm_verifier.verify(token).user == "alice"
    assert len(decoded) == 3


# ---------------------------------------------------------------------------------------------------------------
# 8: audience


def test_audience_as_string_or_one_element_list_accepted(issuer: Issuer, verifier: TokenVerifier) -> None:
    assert verifier.verify(issuer.mint(aud=issuer.audience)).user == "alice"
    assert verifier.verify(issuer.mint(aud=[issuer.audience])).user == "alice"


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(lambda a: [a, "mcp+https://other.example.com/mcp"], id="extra-after"),
        pytest.param(lambda a: ["discover.teleport", a], id="extra-before"),
        pytest.param(lambda a: [a, a], id="duplicated"),
        pytest.param(lambda a: "mcp+https://other.example.com/mcp", id="other"),
        pytest.param(lambda a: [a + "/"], id="trailing-slash-list"),
        pytest.param(lambda a: a + "/", id="trailing-slash"),
        pytest.param(lambda a: a.upper(), id="case"),
        pytest.param(lambda a: a[:-1], id="prefix"),
        pytest.param(lambda a: [[a]], id="nested-list"),
        pytest.param(lambda a: {"aud": a}, id="object"),
    ],
)
def test_audience_mismatch(issuer: Issuer, verifier: TokenVerifier, aud: Callable[[str], Any]) -> None:
    assert refusal(verifier, issuer.mint(aud=aud(issuer.audience))) is Reason.AUDIENCE_MISMATCH


def test_missing_audience_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    assert refusal(verifier, issuer.mint(aud=...)) in {Reason.CLAIMS_INVALID, Reason.AUDIENCE_MISMATCH}


# ---------------------------------------------------------------------------------------------------------------
# 9: issuer, checked before any key is fetched


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param(lambda u: u + "/", id="trailing-slash"),
        pytest.param(lambda u: u + "/evil", id="path-suffix"),
        pytest.param(lambda u: u + ".evil.example", id="host-suffix"),
        pytest.param(lambda u: u + "0", id="port-suffix"),
        pytest.param(lambda u: u[:-1], id="prefix"),
        pytest.param(lambda u: "https" + u.removeprefix("http"), id="https-scheme"),
        pytest.param(lambda u: u.replace("127.0.0.1", "localhost"), id="localhost"),
        pytest.param(lambda u: u.upper(), id="upper"),
        pytest.param(lambda u: " " + u, id="leading-space"),
        pytest.param(lambda u: u + " ", id="trailing-space"),
        pytest.param(lambda u: [u], id="list"),
        pytest.param(lambda u: {"iss": u}, id="object"),
        pytest.param(lambda u: "", id="empty"),
        pytest.param(lambda u: None, id="null"),
        pytest.param(lambda u: ..., id="missing"),
    ],
)
def test_issuer_mismatch_refused_without_fetch(
    issuer: Issuer, verifier: TokenVerifier, iss: Callable[[str], Any]
) -> None:
    claims = issuer.claims(iss=iss(issuer.url))  # signed by the real key: only the issuer is wrong
    token = compact({"alg": "RS256", "typ": "JWT"}, claims, rsa_signer(issuer.signing_key))
    assert refusal(verifier, token) is Reason.ISSUER_MISMATCH
    assert issuer.requests == []


def test_many_foreign_issuer_tokens_never_fetch(
    issuer: Issuer, verifier: TokenVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    for i in range(50):
        token = issuer.mint(key=attacker_key, iss=f"https://cluster-{i}.example.com")
        assert refusal(verifier, token) is Reason.ISSUER_MISMATCH
    assert issuer.requests == []


# ---------------------------------------------------------------------------------------------------------------
# 10, 12: time claims and leeway (30 s here)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(lambda now: {"nbf": now + 120}, id="nbf"),
        pytest.param(lambda now: {"iat": now + 120, "nbf": now - 10}, id="iat"),
        pytest.param(lambda now: {"iat": now + 120, "nbf": now + 110}, id="both"),
        pytest.param(lambda now: {"nbf": now + LEEWAY + 5}, id="nbf-just-beyond-leeway"),
    ],
)
def test_future_token_beyond_leeway_refused(
    issuer: Issuer, verifier: TokenVerifier, claims: Callable[[int], dict[str, int]]
) -> None:
    now = int(time.time())
    token = issuer.mint(now=now, **claims(now))
    assert refusal(verifier, token) is Reason.TOKEN_NOT_YET_VALID


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(lambda now: {"nbf": now + 15}, id="nbf"),
        pytest.param(lambda now: {"iat": now + 15, "nbf": now + 5}, id="iat"),
    ],
)
def test_future_token_within_leeway_accepted(
    issuer: Issuer, verifier: TokenVerifier, claims: Callable[[int], dict[str, int]]
) -> None:
    now = int(time.time())
    assert verifier.verify(issuer.mint(now=now, **claims(now))).user == "alice"


def test_expired_token_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert refusal(verifier, issuer.mint(now=now - 3600, ttl=600)) is Reason.TOKEN_EXPIRED
    assert refusal(verifier, issuer.mint(now=now - 700, ttl=600)) is Reason.TOKEN_EXPIRED  # 100 s > leeway


def test_just_expired_token_within_leeway_accepted(issuer: Issuer, verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert verifier.verify(issuer.mint(now=now - 610, ttl=600)).user == "alice"  # expired 10 s ago


def test_zero_leeway_is_strict(issuer: Issuer, store: KeyStore) -> None:
    strict = TokenVerifier(issuer.url, issuer.audience, store, leeway_s=0, cache_size=0)
    now = int(time.time())
    assert refusal(strict, issuer.mint(now=now - 610, ttl=600)) is Reason.TOKEN_EXPIRED
    assert refusal(strict, issuer.mint(now=now, nbf=now + 15)) is Reason.TOKEN_NOT_YET_VALID


# ---------------------------------------------------------------------------------------------------------------
# 11 and claim shapes


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_required_claim_missing_refused(issuer: Issuer, verifier: TokenVerifier, claim: str) -> None:
    overrides: dict[str, Any] = {claim: ...}
    if claim == "sub":
        overrides["username"] = ...  # or the username/sub check would be the one refusing
    assert refusal(verifier, issuer.mint(**overrides)) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_required_claim_null_refused(issuer: Issuer, verifier: TokenVerifier, claim: str) -> None:
    claims = issuer.claims()
    claims[claim] = None
    if claim == "sub":
        claims.pop("username")
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize("sub", ["", 42, ["alice"]])
def test_sub_must_be_a_non_empty_string(issuer: Issuer, verifier: TokenVerifier, sub: Any) -> None:
    claims = issuer.claims()
    claims["sub"] = claims["username"] = sub
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize("username", ["mallory", "Alice", "alice ", "", None, ["alice"]])
def test_username_differing_from_sub_refused(issuer: Issuer, verifier: TokenVerifier, username: Any) -> None:
    claims = issuer.claims(user="alice")
    claims["username"] = username
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["developer", "db-reader"], ("developer", "db-reader")),
        ([], ()),
        (None, ()),
    ],
)
def test_roles_list_or_null(issuer: Issuer, verifier: TokenVerifier, roles: Any, expected: tuple[str, ...]) -> None:
    claims = issuer.claims()
    claims["roles"] = roles
    assert verifier.verify(sign_claims(claims, issuer.signing_key)).roles == expected


def test_absent_roles_and_traits_are_empty(issuer: Issuer, verifier: TokenVerifier) -> None:
    """jwt_claims: none leaves both out; never a crash, never an invented role."""
    identity = verifier.verify(issuer.mint(roles=..., traits=...))
    assert identity.roles == ()
    assert dict(identity.traits) == {}


@pytest.mark.parametrize(
    "roles",
    [
        pytest.param("developer", id="string"),
        pytest.param("developer,admin", id="comma-string"),
        pytest.param([1], id="int-item"),
        pytest.param(["developer", None], id="null-item"),
        pytest.param([["admin"]], id="nested"),
        pytest.param({"admin": True}, id="object"),
        pytest.param(True, id="bool"),
    ],
)
def test_roles_of_wrong_shape_refused(issuer: Issuer, verifier: TokenVerifier, roles: Any) -> None:
    claims = issuer.claims()
    claims["roles"] = roles
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        (
            {"email": ["alice@example.com"], "logins": ["alice", "ubuntu"]},
            {"email": ("alice@example.com",), "logins": ("alice", "ubuntu")},
        ),
        ({"logins": []}, {"logins": ()}),
        ({}, {}),
        (None, {}),
    ],
)
def test_traits_map_or_null(issuer: Issuer, verifier: TokenVerifier, traits: Any, expected: dict[str, Any]) -> None:
    claims = issuer.claims()
    claims["traits"] = traits
    assert dict(verifier.verify(sign_claims(claims, issuer.signing_key)).traits) == expected


@pytest.mark.parametrize(
    "traits",
    [
        pytest.param(["logins"], id="list"),
        pytest.param("logins=alice", id="string"),
        pytest.param({"logins": "alice"}, id="string-value"),
        pytest.param({"logins": [1, 2]}, id="int-items"),
        pytest.param({"logins": ["alice", None]}, id="null-item"),
        pytest.param({"logins": [["alice"]]}, id="nested"),
        pytest.param({"logins": {"a": "b"}}, id="object-value"),
    ],
)
def test_traits_of_wrong_shape_refused(issuer: Issuer, verifier: TokenVerifier, traits: Any) -> None:
    claims = issuer.claims()
    claims["traits"] = traits
    assert refusal(verifier, sign_claims(claims, issuer.signing_key)) is Reason.CLAIMS_INVALID


# ---------------------------------------------------------------------------------------------------------------
# signatures and keys (17: weak keys)


def test_token_from_a_different_key_refused(
    issuer: Issuer, verifier: TokenVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    assert refusal(verifier, issuer.mint(key=attacker_key)) is Reason.SIGNATURE_INVALID


def test_tampered_payload_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    header, _, signature = issuer.mint(user="alice").split(".")
    forged_payload = b64url(json.dumps(issuer.claims(user="admin", roles=["admin"])).encode())
    assert refusal(verifier, f"{header}.{forged_payload}.{signature}") is Reason.SIGNATURE_INVALID


def test_stripped_or_garbage_signature_refused(issuer: Issuer, verifier: TokenVerifier) -> None:
    header, payload, _ = issuer.mint().split(".")
    for signature in ("", b64url(b"\x00" * 256), b64url(b"\xff" * 256), "AAAA"):
        assert refusal(verifier, f"{header}.{payload}.{signature}") in {
            Reason.SIGNATURE_INVALID,
            Reason.TOKEN_MALFORMED,
        }


def test_token_signed_by_a_published_1024_bit_key_refused(
    issuer: Issuer, verifier: TokenVerifier, weak_key: rsa.RSAPrivateKey
) -> None:
    issuer.published = [issuer.signing_key, weak_key]
    assert refusal(verifier, sign_claims(issuer.claims(), weak_key)) is Reason.SIGNATURE_INVALID
    assert verifier.verify(issuer.mint()).user == "alice"  # the strong key still works


def test_jwks_with_only_a_1024_bit_key_is_no_key_at_all(
    issuer: Issuer, verifier: TokenVerifier, weak_key: rsa.RSAPrivateKey
) -> None:
    issuer.published = [weak_key]
    with pytest.raises(Refusal) as info:
        verifier.verify(sign_claims(issuer.claims(), weak_key))
    assert info.value.reason is Reason.IDP_UNAVAILABLE


# ---------------------------------------------------------------------------------------------------------------
# Machine ID bots


def test_machine_id_bot_identity(issuer: Issuer, verifier: TokenVerifier) -> None:
    identity = verifier.verify(issuer.mint(user="bot-ci-deployer", roles=["bot-ci-deployer"]))
    assert identity.user == "bot-ci-deployer"
    assert identity.bot is True
    assert verifier.verify(issuer.mint(user="robot")).bot is False
    assert verifier.verify(issuer.mint(user="alice-bot-")).bot is False


def test_bot_flag_reaches_the_audit_record(
    issuer: Issuer, interceptor: Any, audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    out = interceptor.handle(request_event(rpc("tools/list"), issuer.mint(user="bot-nightly", roles=["bot-nightly"])))
    assert "transformedGatewayRequest" in out["mcp"]
    record = audit_lines()[-1]
    assert (record["user"], record["bot"], record["reason"]) == ("bot-nightly", True, Reason.ALLOWED.value)


def test_identity_is_immutable(issuer: Issuer, verifier: TokenVerifier) -> None:
    identity = verifier.verify(issuer.mint())
    assert isinstance(identity, Identity)
    with pytest.raises(AttributeError):
        identity.user = "admin"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------------
# bearer extraction


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_header_and_scheme_case_insensitive(name: str, scheme: str) -> None:
    assert bearer_token(header_fields({name: f"{scheme} abc.def.ghi", "Other": "x"})) == "abc.def.ghi"


def test_bearer_token_surrounding_whitespace_tolerated() -> None:
    assert bearer_token(header_fields({"Authorization": "  Bearer   abc.def.ghi  "})) == "abc.def.ghi"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, Reason.TOKEN_MISSING, id="no-headers"),
        pytest.param({"Mcp-Session-Id": "s"}, Reason.TOKEN_MISSING, id="missing"),
        pytest.param({"Proxy-Authorization": "Bearer a.b.c"}, Reason.TOKEN_MISSING, id="proxy-authorization"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, Reason.TOKEN_MISSING, id="basic"),
        pytest.param({"Authorization": "Basic x"}, Reason.TOKEN_MISSING, id="basic-x"),
        pytest.param({"Authorization": "a.b.c"}, Reason.TOKEN_MISSING, id="no-scheme"),
        pytest.param({"Authorization": "Bearera.b.c"}, Reason.TOKEN_MISSING, id="no-space"),
        pytest.param({"Authorization": ""}, Reason.TOKEN_MISSING, id="empty"),
        pytest.param({"Authorization": "   "}, Reason.TOKEN_MISSING, id="blank"),
        pytest.param({"Authorization": "Bearer a b"}, Reason.TOKEN_MALFORMED, id="two-tokens"),
        pytest.param({"Authorization": "Bearer a.b.c, Bearer d.e.f"}, Reason.TOKEN_MALFORMED, id="merged"),
        pytest.param({"Authorization": "Bearer a", "authorization": "Bearer a"}, Reason.TOKEN_MALFORMED, id="dup-same"),
        pytest.param({"Authorization": "Bearer a", "AUTHORIZATION": "Bearer b"}, Reason.TOKEN_MALFORMED, id="dup"),
        pytest.param({"Authorization": ["Bearer a"]}, Reason.TOKEN_MALFORMED, id="list-value"),
        pytest.param({"Authorization": None}, Reason.TOKEN_MALFORMED, id="null-value"),
    ],
)
def test_bearer_refusals(headers: dict[str, Any], reason: Reason) -> None:
    with pytest.raises(Refusal) as info:
        bearer_token(header_fields(headers))
    assert info.value.reason is reason


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "bearer\t"])
def test_bearer_scheme_without_token_refused(value: str) -> None:
    with pytest.raises(Refusal) as info:
        bearer_token(header_fields({"Authorization": value}))
    assert info.value.reason in {Reason.TOKEN_MISSING, Reason.TOKEN_MALFORMED}


@pytest.mark.parametrize("name", ["authorization", "AUTHORIZATION"])
def test_handler_reads_any_header_case(issuer: Issuer, interceptor: Any, name: str) -> None:
    event = request_event(rpc("tools/list"), headers={name: f"bearer {issuer.mint()}"})
    assert "transformedGatewayRequest" in interceptor.handle(event)["mcp"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, Reason.TOKEN_MISSING),
        ({"Authorization": "Basic x"}, Reason.TOKEN_MISSING),
        ({"Authorization": "Bearer a b"}, Reason.TOKEN_MALFORMED),
    ],
)
def test_handler_bearer_refusals_are_401(
    interceptor: Any, audit_lines: Callable[[], list[dict[str, Any]]], headers: dict[str, str], reason: Reason
) -> None:
    status, body = handler_status(interceptor.handle(request_event(rpc("tools/list", rpc_id=7), headers=headers)))
    assert status == 401
    assert body["id"] == 7
    assert body["error"]["code"] == -31001
    assert f"(reason: {reason.value})" in body["error"]["message"]
    assert audit_lines()[-1]["reason"] == reason.value


def test_handler_duplicate_authorization_headers_refused(issuer: Issuer, interceptor: Any) -> None:
    token = issuer.mint()
    event = request_event(rpc("tools/list"), token, headers={"authorization": f"Bearer {token}"})
    status, body = handler_status(interceptor.handle(event))
    assert status == 401
    assert "(reason: token_malformed)" in body["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------
# 19: refusals never echo the token


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda i, k: i.mint(key=k), id="signature"),
        pytest.param(lambda i, k: i.mint(now=time.time() - 3600), id="expired"),
        pytest.param(lambda i, k: i.mint(aud="mcp+https://other/mcp"), id="audience"),
        pytest.param(lambda i, k: i.mint(iss="https://evil.example.com"), id="issuer"),
        pytest.param(lambda i, k: i.mint(roles="admin"), id="claims"),
        pytest.param(lambda i, k: i.mint() + "x" * 20_000, id="oversized"),
    ],
)
def test_refusal_output_and_audit_never_contain_the_token(
    issuer: Issuer,
    interceptor: Any,
    audit_lines: Callable[[], list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
    attacker_key: rsa.RSAPrivateKey,
    make: Callable[[Issuer, rsa.RSAPrivateKey], str],
) -> None:
    token = make(issuer, attacker_key)
    out = interceptor.handle(request_event(rpc("tools/list"), token))
    status, _ = handler_status(out)
    assert status == 401
    records = json.dumps([vars(r) for r in caplog.records], default=str)  # messages and every extra field
    texts = [json.dumps(out), json.dumps(audit_lines()), caplog.text, records]
    signature = token.split(".")[2][:40]
    leaked = any(token in text or signature in text for text in texts)
    assert not leaked, "the token or its signature leaked into the response or the logs"


# ---------------------------------------------------------------------------------------------------------------
# the identity cache (by token digest)


def test_cached_token_refused_once_it_expires(issuer: Issuer, store: KeyStore) -> None:
    now = time.time()
    cache_clock = FakeClock(now)
    cached = TokenVerifier(issuer.url, issuer.audience, store, leeway_s=0, cache_size=16, clock=cache_clock)
    token = issuer.mint(now=now, ttl=60)
    assert cached.verify(token).user == "alice"
    cache_clock.now = int(now) + 59
    assert cached.verify(token).user == "alice"  # still valid: served from the cache
    cache_clock.now = int(now) + 61
    assert refusal(cached, token) is Reason.TOKEN_EXPIRED


def test_cached_token_expiry_honours_leeway_like_a_fresh_check(issuer: Issuer, store: KeyStore) -> None:
    now = time.time()
    cache_clock = FakeClock(now)
    cached = TokenVerifier(issuer.url, issuer.audience, store, leeway_s=LEEWAY, cache_size=16, clock=cache_clock)
    token = issuer.mint(now=now, ttl=60)
    cached.verify(token)
    cache_clock.now = int(now) + 60 + LEEWAY - 1
    assert cached.verify(token).user == "alice"
    cache_clock.now = int(now) + 60 + LEEWAY + 1
    assert refusal(cached, token) is Reason.TOKEN_EXPIRED


def test_cache_never_accepts_a_modified_token(issuer: Issuer, verifier: TokenVerifier) -> None:
    token = issuer.mint()
    verifier.verify(token)
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    assert refusal(verifier, f"{header}.{payload}.{flipped}") is Reason.SIGNATURE_INVALID
    forged_payload = b64url(json.dumps(issuer.claims(user="admin")).encode())
    assert refusal(verifier, f"{header}.{forged_payload}.{signature}") is Reason.SIGNATURE_INVALID
    assert refusal(verifier, token + ".") is Reason.TOKEN_MALFORMED
    assert verifier.verify(token).user == "alice"


def test_refused_tokens_are_not_cached(issuer: Issuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(aud=[issuer.audience, "mcp+https://other.example.com/mcp"])
    for _ in range(3):
        assert refusal(verifier, token) is Reason.AUDIENCE_MISMATCH
    expired = issuer.mint(now=time.time() - 3600)
    for _ in range(3):
        assert refusal(verifier, expired) is Reason.TOKEN_EXPIRED


def test_cache_is_per_verifier_configuration(issuer: Issuer, store: KeyStore, verifier: TokenVerifier) -> None:
    token = issuer.mint()
    verifier.verify(token)
    other = TokenVerifier(issuer.url, "mcp+https://other.example.com/mcp", store, leeway_s=LEEWAY, cache_size=1024)
    assert refusal(other, token) is Reason.AUDIENCE_MISMATCH


def test_cached_token_still_goes_through_bearer_checks(issuer: Issuer, interceptor: Any) -> None:
    token = issuer.mint()
    assert "transformedGatewayRequest" in interceptor.handle(request_event(rpc("tools/list"), token))["mcp"]
    dup = request_event(rpc("tools/list"), token, headers={"AUTHORIZATION": f"Bearer {token}"})
    status, body = handler_status(interceptor.handle(dup))
    assert status == 401
    assert "(reason: token_malformed)" in body["error"]["message"]
    basic = request_event(rpc("tools/list"), headers={"Authorization": f"Basic {token}"})
    status, body = handler_status(interceptor.handle(basic))
    assert status == 401
    assert "(reason: token_missing)" in body["error"]["message"]


def test_cache_disabled_still_verifies(issuer: Issuer, store: KeyStore) -> None:
    uncached = TokenVerifier(issuer.url, issuer.audience, store, leeway_s=LEEWAY, cache_size=0)
    token = issuer.mint()
    assert uncached.verify(token).user == "alice"
    assert uncached.verify(token).user == "alice"


@pytest.mark.parametrize("user", ["bot-ci", "remote-bot-ci-leaf"])
def test_bots_of_this_and_of_leaf_clusters_are_bots(issuer: Issuer, verifier: TokenVerifier, user: str) -> None:
    assert verifier.verify(issuer.mint(user=user, roles=[f"bot-{user}"])).bot


@pytest.mark.parametrize("user", ["alice", "robot-x", "remote-alice-leaf", "remote-robot-leaf"])
def test_humans_are_not_bots(issuer: Issuer, verifier: TokenVerifier, user: str) -> None:
    assert not verifier.verify(issuer.mint(user=user)).bot


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("kind", [str, float])
def test_time_claims_must_be_integers_not_coerced(
    issuer: Issuer, verifier: TokenVerifier, claim: str, kind: Callable[[int], Any]
) -> None:
    value = issuer.claims()[claim]
    token = sign_claims(issuer.claims(**{claim: kind(value)}), issuer.signing_key)
    assert refusal(verifier, token) is Reason.CLAIMS_INVALID
