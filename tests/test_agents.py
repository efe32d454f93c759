"""The agent's own credential (README "Agents"): a Teleport Workload Identity JWT-SVID in its own header, verified
against the real local issuer, which serves the OIDC and the Workload Identity discovery and JWKS side by side on
127.0.0.1 with separate keys; then the two Cedar gates, the intersection on tool lists, stamping, the AWS session
tag and the audit record.

Every row of the JWT threat table (../shared/reference/jwt-threats.md) is taken again here for the agent token.
Tokens are never printed: leak checks compare booleans.
"""

from __future__ import annotations

import base64
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devtools import agents
from devtools.gateway import request_event, response_event, rpc, tool_call
from devtools.issuer import TRUST_DOMAIN, Issuer, new_ec_key, new_key, public_jwk
from devtools.jws import FakeClock, b64url, compact, es256_signer, hmac_signer
from devtools.sts_standin import local_sts
from interceptor import spiffe
from interceptor.agents import Agent, AgentVerifier, agent_token
from interceptor.config import AgentMode, AgentSettings, Settings
from interceptor.contract import header_fields
from interceptor.errors import Problems, Refusal
from interceptor.keys import ES256, RS256, DiscoverySource, HttpFetcher, KeyStore, PinnedSource, parse_jwks
from interceptor.pipeline import Interceptor
from interceptor.reasons import ANSWERS, Reason
from interceptor.tokens import MAX_TOKEN_BYTES
from tool_identity import AGENT_ARG, IDENTITY_META_KEY, Caller

ROOT = Path(__file__).resolve().parents[1]
HEADER = "X-Teleport-Agent-Token"
ORDERS = f"spiffe://{TRUST_DOMAIN}/agents/orders-assistant"
HR = f"spiffe://{TRUST_DOMAIN}/agents/hr-assistant"  # admitted by the patterns, allowed nothing by policy
OUTSIDE = f"spiffe://{TRUST_DOMAIN}/tools/scraper"  # not admitted by the patterns
PATTERNS = f"spiffe://{TRUST_DOMAIN}/agents/*"
GET, LIST, UPDATE, QUERY = (
    "orders___get_order_tool",
    "orders___list_my_orders",
    "orders___update_order",
    "db___run_query",
)
ALL_TOOLS = [QUERY, GET, LIST, UPDATE]
ARGS = {
    GET: {"order_id": "42"},
    LIST: {"status": "pending"},
    UPDATE: {"order_id": "42", "status": "shipped"},
    QUERY: {"database": "sales", "query": "select 1"},
}
LEEWAY = 30

Make = Callable[..., Interceptor]
Audit = Callable[[], list[dict[str, Any]]]


# ---------------------------------------------------------------------------------------------------------------
# helpers


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cause(verifier: AgentVerifier, token: str) -> str:
    """The check that refused the agent token: `agent_token_invalid`, its detail led by the check's own code."""
    with pytest.raises(Refusal) as info:
        verifier.verify(token)
    assert info.value.reason is Reason.AGENT_TOKEN_INVALID, info.value.detail
    return info.value.detail.split(":", 1)[0]


def agent_headers(token: str, name: str = HEADER, scheme: str = "Bearer ") -> dict[str, str]:
    return {name: f"{scheme}{token}"}


def call(tool: str, human: str, agent: str | None = None, **headers: str) -> dict[str, Any]:
    extra = {**(agent_headers(agent) if agent is not None else {}), **headers}
    return request_event(tool_call(tool, dict(ARGS[tool])), human, headers=extra)


def answer(out: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = out["mcp"]["transformedGatewayResponse"]
    return response["statusCode"], response["body"]


def forwarded(out: dict[str, Any]) -> dict[str, Any] | None:
    request = out["mcp"].get("transformedGatewayRequest")
    return None if request is None else request["body"]


def refusal_text(out: dict[str, Any]) -> str:
    status, body = answer(out)
    if "error" in body:
        return f"{status} {body['error']['code']} {body['error']['message']}"
    return f"{status} isError={body['result']['isError']} {body['result']['content'][0]['text']}"


def listed(out: dict[str, Any]) -> list[str]:
    status, body = answer(out)
    assert status == 200, body
    return sorted(tool["name"] for tool in body["result"]["tools"])


def list_event(human: str, agent: str | None = None, **headers: Any) -> dict[str, Any]:
    extra = {**(agent_headers(agent) if agent is not None else {}), **headers}
    request = request_event(rpc("tools/list"), human, headers=extra)
    tools = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": n, "inputSchema": {}} for n in ALL_TOOLS]}}
    return response_event(request, tools)


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def agent_settings(issuer: Issuer) -> AgentSettings:
    env = {"TELEPORT_ISSUER": issuer.url, "TELEPORT_AUDIENCE": issuer.audience, "AGENT_MODE": "optional"}
    settings = Settings.from_env({**env, "AGENT_ID_PATTERNS": PATTERNS})
    assert settings.agents is not None
    return settings.agents


@pytest.fixture
def store(issuer: Issuer, agent_settings: AgentSettings, clock: FakeClock, fetcher: HttpFetcher) -> KeyStore:
    """A cold key store on the served Workload Identity issuer (the OIDC one is never asked)."""
    issuer.requests.clear()
    source = DiscoverySource(
        agent_settings.issuer, agent_settings.discovery_url, fetcher, frozenset({RS256, ES256}), "AGENT_ISSUER"
    )
    return KeyStore(source, ttl_s=3600, cooldown_s=30, clock=clock, label="agent JWKS")


@pytest.fixture
def verifier(agent_settings: AgentSettings, store: KeyStore) -> AgentVerifier:
    return AgentVerifier(agent_settings, store, leeway_s=LEEWAY, cache_size=1024)


WORKLOAD_PATHS = {"/workload-identity/.well-known/openid-configuration", "/workload-identity/jwt-jwks.json"}


@pytest.fixture
def policy_dir(tmp_path: Path) -> str:
    """The repository's policies plus the demo's agent policies (devtools/agents/agents.cedar)."""
    return str(agents.write_policy_folder(tmp_path / "policies"))


@pytest.fixture
def optional(make_interceptor: Make, policy_dir: str) -> Interceptor:
    return make_interceptor(AGENT_MODE="optional", AGENT_ID_PATTERNS=PATTERNS, POLICY_DIR=policy_dir)


@pytest.fixture
def required(make_interceptor: Make, policy_dir: str) -> Interceptor:
    return make_interceptor(AGENT_MODE="required", AGENT_ID_PATTERNS=PATTERNS, POLICY_DIR=policy_dir)


@pytest.fixture
def carol(issuer: Issuer) -> str:
    return issuer.mint(user="carol", roles=["order-admin"])


@pytest.fixture
def alice(issuer: Issuer) -> str:
    return issuer.mint(user="alice", roles=["developer"])


# ---------------------------------------------------------------------------------------------------------------
# the happy path, as Teleport's tbot issues JWT-SVIDs


def test_a_teleport_shaped_jwt_svid_gives_the_agent(issuer: Issuer, verifier: AgentVerifier) -> None:
    token = issuer.workload.mint(agent=ORDERS)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and "kid" in header
    agent = verifier.verify(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert agent == Agent(ORDERS, TRUST_DOMAIN, "/agents/orders-assistant", claims["jti"], claims["exp"])
    assert set(issuer.requests) == WORKLOAD_PATHS  # the workload identity issuer only, with its own keys


def test_rs256_on_the_legacy_suite_and_tokens_without_kid(
    issuer: Issuer, verifier: AgentVerifier, clock: FakeClock
) -> None:
    assert verifier.verify(issuer.workload.mint(kid=False)).spiffe_id.endswith("/hr-assistant")
    issuer.workload.use("RS256")  # the cluster's suite changed: the next miss past the cooldown refetches
    clock.advance(31)
    for kid in (True, False):
        assert verifier.verify(issuer.workload.mint(kid=kid, agent=ORDERS)).spiffe_id == ORDERS


def test_both_keys_verify_during_a_ca_rotation(issuer: Issuer, verifier: AgentVerifier) -> None:
    old = issuer.workload.rotate()
    for key in (old, issuer.workload.signing_key):
        assert verifier.verify(issuer.workload.mint(key=key, kid=False, agent=ORDERS)).spiffe_id == ORDERS
        assert verifier.verify(issuer.workload.mint(key=key, agent=HR)).spiffe_id == HR


def test_ec_coordinates_without_leading_zeros_are_padded(issuer: Issuer, verifier: AgentVerifier) -> None:
    """Teleport publishes P-256 coordinates as minimal big-endian bytes; PyJWT wants 32: both load and verify."""
    key = new_ec_key()
    while all(len(base64.urlsafe_b64decode(public_jwk(key)[c] + "==")) == 32 for c in ("x", "y")):
        key = new_ec_key()
    jwk = public_jwk(key)
    assert min(len(base64.urlsafe_b64decode(jwk[c] + "==")) for c in ("x", "y")) < 32
    with pytest.raises(jwt.exceptions.InvalidKeyError):
        jwt.algorithms.ECAlgorithm.from_jwk(jwk)  # what an unpadded coordinate does to PyJWT alone
    [loaded] = parse_jwks({"keys": [jwk]}, frozenset({ES256}))
    assert loaded.alg == ES256 and loaded.key.public_numbers() == key.public_key().public_numbers()
    issuer.workload.published = [key]
    issuer.workload.signing_key = key
    assert verifier.verify(issuer.workload.mint(agent=ORDERS)).spiffe_id == ORDERS


def test_cached_agent_is_rechecked_for_expiry(issuer: Issuer, agent_settings: AgentSettings, store: KeyStore) -> None:
    now = FakeClock(__import__("time").time())
    cached = AgentVerifier(agent_settings, store, leeway_s=0, cache_size=16, clock=now)
    token = issuer.workload.mint(ttl=300)
    assert cached.verify(token).spiffe_id == HR
    now.advance(301)
    assert cause(cached, token) == "token_expired"


# ---------------------------------------------------------------------------------------------------------------
# the threat table, row by row, for the agent token


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS384", "PS256", "ES384", "EdDSA"])
def test_1_2_algorithms_outside_rs256_es256_refused_without_fetch(
    issuer: Issuer, verifier: AgentVerifier, alg: str
) -> None:
    token = compact({"alg": alg, "typ": "JWT"}, issuer.workload.claims(), lambda _: b"sig")
    assert cause(verifier, token) == "algorithm_not_allowed"
    assert issuer.requests == []


def test_2_public_key_as_hmac_secret_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    secret = public_pem(issuer.workload.signing_key)
    for alg in ("HS256", "ES256", "RS256"):  # the header may lie: the key type decides, never the token
        token = compact({"alg": alg, "typ": "JWT"}, issuer.workload.claims(), hmac_signer(secret))
        assert cause(verifier, token) in {"algorithm_not_allowed", "signature_invalid"}


def test_2_key_type_must_match_the_algorithm(issuer: Issuer, verifier: AgentVerifier, clock: FakeClock) -> None:
    """An ES256 token is checked only against EC P-256 keys and an RS256 token only against RSA keys: a token
    signed with the published EC key but headed RS256 (or the reverse) finds no key."""
    ec_key = issuer.workload.signing_key
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    forged = compact({"alg": "RS256", "typ": "JWT"}, issuer.workload.claims(), es256_signer(ec_key))
    assert cause(verifier, forged) == "signature_invalid"
    issuer.workload.published = [new_key()]  # only an RSA key published now
    clock.advance(31)
    assert cause(verifier, issuer.workload.mint(headers={"kid": "unknown"})) == "signature_invalid"  # refetched
    assert cause(verifier, issuer.workload.mint(key=ec_key)) == "signature_invalid"


@pytest.mark.parametrize("kid", ["k" * 129, 12345, ["a"], {"$ne": None}])
def test_3_oversized_or_non_string_kid_refused_without_fetch(issuer: Issuer, verifier: AgentVerifier, kid: Any) -> None:
    key = issuer.workload.signing_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    token = compact({"alg": "ES256", "typ": "JWT", "kid": kid}, issuer.workload.claims(), es256_signer(key))
    assert cause(verifier, token) == "token_malformed"
    assert issuer.requests == []


@pytest.mark.parametrize("kid", ["../../../../etc/passwd", "/workload-identity/jwt-jwks.json", "", "\x00"])
def test_3_kid_is_only_a_lookup_key(issuer: Issuer, verifier: AgentVerifier, clock: FakeClock, kid: str) -> None:
    verifier.verify(issuer.workload.mint())
    assert cause(verifier, issuer.workload.mint(headers={"kid": kid})) == "signature_invalid"
    assert len(issuer.requests) == 2
    clock.advance(31)
    assert cause(verifier, issuer.workload.mint(headers={"kid": kid})) == "signature_invalid"
    assert set(issuer.requests) <= WORKLOAD_PATHS and len(issuer.requests) <= 4


def test_4_jku_x5u_and_embedded_jwk_are_ignored(issuer: Issuer, verifier: AgentVerifier) -> None:
    attacker = new_ec_key()
    headers = {"jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/x5u", "jwk": public_jwk(attacker)}
    for name, value in headers.items():
        assert cause(verifier, issuer.workload.mint(key=attacker, headers={name: value})) == "signature_invalid"
    assert set(issuer.requests) <= WORKLOAD_PATHS


@pytest.mark.parametrize("crit", [["exp"], [], "b64"])
def test_5_crit_refused(issuer: Issuer, verifier: AgentVerifier, crit: Any) -> None:
    assert cause(verifier, issuer.workload.mint(headers={"crit": crit})) == "token_malformed"
    assert issuer.requests == []


def test_6_size_cap_before_decoding(issuer: Issuer, verifier: AgentVerifier) -> None:
    token = issuer.workload.mint(pad="x" * 13_000)
    assert len(token) > MAX_TOKEN_BYTES
    assert cause(verifier, token) == "token_malformed"
    assert cause(verifier, "a" * (MAX_TOKEN_BYTES + 1)) == "token_malformed"
    assert issuer.requests == []


def test_7_nested_jwt_and_jwe_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    inner = issuer.workload.mint()
    key = issuer.workload.signing_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    nested = compact({"alg": "ES256", "cty": "JWT"}, inner.encode(), es256_signer(key))
    jwe = ".".join(b64url(part) for part in (b'{"alg":"RSA-OAEP","enc":"A256GCM"}', b"k", b"i", b"c", b"t"))
    for token in (nested, jwe, inner + "." + inner.split(".")[2], inner + "=="):
        assert cause(verifier, token) == "token_malformed"


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param("mcp+https://other-gateway.example.com/mcp", id="another-gateway"),
        pytest.param(["mcp+https://gateway.example.com/mcp", "mcp+https://other.example.com/mcp"], id="extra"),
        pytest.param([], id="empty-list"),
        pytest.param("mcp+https://gateway.example.com/mcp/", id="near-miss"),
    ],
)
def test_8_audience_must_be_exactly_this_gateway(issuer: Issuer, verifier: AgentVerifier, aud: Any) -> None:
    assert cause(verifier, issuer.workload.mint(aud=aud)) == "audience_mismatch"


def test_8_one_element_audience_list_is_accepted(issuer: Issuer, verifier: AgentVerifier) -> None:
    assert verifier.verify(issuer.workload.mint(aud=[issuer.audience])).spiffe_id == HR


def test_9_issuer_must_be_exact(issuer: Issuer, verifier: AgentVerifier) -> None:
    for iss in (issuer.url, issuer.url + "/workload-identity/", issuer.url + "/workload", "teleport.example.com"):
        assert cause(verifier, issuer.workload.mint(iss=iss)) == "issuer_mismatch"
    assert issuer.requests == []


def test_9_discovery_must_name_the_configured_issuer(issuer: Issuer, verifier: AgentVerifier) -> None:
    issuer.workload.discovery_overrides["issuer"] = issuer.url
    with pytest.raises(Refusal) as info:
        verifier.verify(issuer.workload.mint())
    assert info.value.reason is Reason.IDP_UNAVAILABLE


def test_9_jwks_uri_on_another_origin_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    issuer.workload.discovery_overrides["jwks_uri"] = "http://127.0.0.2:1/jwt-jwks.json"
    with pytest.raises(Refusal) as info:
        verifier.verify(issuer.workload.mint())
    assert info.value.reason is Reason.IDP_UNAVAILABLE


def test_10_iat_or_nbf_in_the_future_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    now = int(__import__("time").time())
    assert cause(verifier, issuer.workload.mint(iat=now + 600, exp=now + 900)) == "token_not_yet_valid"
    assert cause(verifier, issuer.workload.mint(nbf=now + 600)) == "token_not_yet_valid"
    assert verifier.verify(issuer.workload.mint(iat=now + LEEWAY - 5)).spiffe_id == HR


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti"])
def test_11_required_claims(issuer: Issuer, verifier: AgentVerifier, claim: str) -> None:
    assert cause(verifier, issuer.workload.mint(**{claim: ...})) == "claims_invalid"


@pytest.mark.parametrize("jti", ["", 7, None, ["a"]])
def test_11_jti_must_be_a_non_empty_string(issuer: Issuer, verifier: AgentVerifier, jti: Any) -> None:
    assert cause(verifier, issuer.workload.mint(jti=jti)) == "claims_invalid"


def test_12_expired_token_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    assert cause(verifier, issuer.workload.mint(ttl=-LEEWAY - 1)) == "token_expired"


def test_a_lifetime_beyond_the_maximum_is_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    assert verifier.verify(issuer.workload.mint(ttl=3600)).spiffe_id == HR  # the default maximum: one hour
    assert cause(verifier, issuer.workload.mint(ttl=3601)) == "claims_invalid"


def test_13_fetches_are_https_only_outside_loopback() -> None:
    base = {"TELEPORT_ISSUER": "https://teleport.example.com", "TELEPORT_AUDIENCE": "mcp+https://gw/mcp"}
    env = {**base, "AGENT_MODE": "optional", "AGENT_ID_PATTERNS": PATTERNS}
    with pytest.raises(Problems) as info:
        Settings.from_env({**env, "AGENT_ISSUER": "http://teleport.example.com/workload-identity"})
    assert any(p.startswith("AGENT_ISSUER must use https") for p in info.value.problems)


def test_14_garbage_signatures_cannot_cause_a_refetch_storm(
    issuer: Issuer, verifier: AgentVerifier, clock: FakeClock
) -> None:
    token = issuer.workload.mint()
    verifier.verify(token)
    head, payload, _ = token.split(".")
    for n in range(50):
        garbage = f"{head}.{payload}.{b64url(n.to_bytes(64, 'big'))}"
        assert cause(verifier, garbage) == "signature_invalid"
    assert len(issuer.requests) == 2  # the first load; misses refresh at most once per cooldown, and none had passed
    clock.advance(31)
    for n in range(50):
        cause(verifier, issuer.workload.mint(headers={"kid": f"random-{n}"}))
    assert len(issuer.requests) <= 4


def test_14_other_issuers_never_cause_a_fetch(issuer: Issuer, verifier: AgentVerifier) -> None:
    cause(verifier, issuer.workload.mint(iss="https://evil.example.com/workload-identity"))
    assert issuer.requests == []


def test_15_outage_keeps_last_good_keys_and_a_cold_start_says_unavailable(
    issuer: Issuer, verifier: AgentVerifier, agent_settings: AgentSettings, clock: FakeClock, fetcher: HttpFetcher
) -> None:
    assert verifier.verify(issuer.workload.mint()).spiffe_id == HR
    issuer.workload.down = True
    clock.advance(4000)  # past the TTL: the refresh fails, the keys stay
    assert verifier.verify(issuer.workload.mint(agent=ORDERS)).spiffe_id == ORDERS
    source = DiscoverySource(agent_settings.issuer, agent_settings.discovery_url, fetcher, frozenset({ES256}))
    cold = AgentVerifier(agent_settings, KeyStore(source, 3600, 30, clock=clock), LEEWAY, 16)
    with pytest.raises(Refusal) as info:
        cold.verify(issuer.workload.mint())
    assert (info.value.reason, info.value.detail) == (Reason.IDP_UNAVAILABLE, "agent token: no verification keys")


def test_16_a_users_id_token_never_passes_as_an_agent_token(issuer: Issuer, verifier: AgentVerifier) -> None:
    assert cause(verifier, issuer.mint()) == "issuer_mismatch"
    assert cause(verifier, issuer.mint(iss=issuer.workload.url, sub=HR, aud=issuer.audience)) == "signature_invalid"


def test_16_a_jwt_svid_signed_with_the_oidc_key_is_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    """Same proxy, separate CAs: the OIDC CA's key is not a Workload Identity key."""
    token = jwt.encode(issuer.workload.claims(), issuer.signing_key, algorithm="RS256")
    assert cause(verifier, token) == "signature_invalid"


def test_17_weak_and_foreign_keys_are_skipped(issuer: Issuer, verifier: AgentVerifier) -> None:
    weak = new_key(1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    p384_jwk = {**public_jwk(new_ec_key()), "crv": "P-384", "x": "AA", "y": "AA"}
    assert parse_jwks({"keys": [public_jwk(weak), p384_jwk]}, frozenset({RS256, ES256})) == []
    issuer.workload.published = [weak, issuer.workload.signing_key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = jwt.encode(issuer.workload.claims(), weak, algorithm="RS256")
    assert cause(verifier, token) == "signature_invalid"
    assert cause(verifier, jwt.encode(issuer.workload.claims(), p384, algorithm="ES384")) == "algorithm_not_allowed"


@pytest.mark.parametrize(
    "sub",
    [
        "alice",
        f"spiffe://{TRUST_DOMAIN}",
        f"spiffe://{TRUST_DOMAIN}/",
        f"spiffe://{TRUST_DOMAIN}/agents/",
        f"spiffe://{TRUST_DOMAIN}/agents//x",
        f"spiffe://{TRUST_DOMAIN}/agents/../admin",
        f"spiffe://{TRUST_DOMAIN}/agents/./x",
        f"spiffe://{TRUST_DOMAIN}/agents/x?y=1",
        f"spiffe://{TRUST_DOMAIN}/agents/x#y",
        f"spiffe://{TRUST_DOMAIN}:443/agents/x",
        f"spiffe://user@{TRUST_DOMAIN}/agents/x",
        f"spiffe://{TRUST_DOMAIN.upper()}/agents/x",
        f"SPIFFE://{TRUST_DOMAIN}/agents/x",
        f"spiffe://{TRUST_DOMAIN}/agents/%41",
        f"spiffe://{TRUST_DOMAIN}/agents/" + "x" * 2100,
    ],
)
def test_the_subject_must_be_a_workloads_spiffe_id(issuer: Issuer, verifier: AgentVerifier, sub: str) -> None:
    with pytest.raises(Refusal) as info:
        verifier.verify(issuer.workload.mint(sub=sub))
    assert info.value.reason is Reason.AGENT_TOKEN_INVALID


def test_an_agent_outside_the_patterns_is_refused(issuer: Issuer, verifier: AgentVerifier) -> None:
    for sub in (OUTSIDE, "spiffe://other.example/agents/orders-assistant", f"spiffe://{TRUST_DOMAIN}/agents/a/b"):
        with pytest.raises(Refusal) as info:
            verifier.verify(issuer.workload.mint(sub=sub))
        assert info.value.reason is Reason.AGENT_TOKEN_INVALID
        assert info.value.detail == "SPIFFE ID not admitted by AGENT_ID_PATTERNS"
        assert info.value.hint == "AGENT_ID_PATTERNS does not admit this agent"


# ---------------------------------------------------------------------------------------------------------------
# SPIFFE IDs and patterns (pure)


@pytest.mark.parametrize(
    ("pattern", "admitted", "refused"),
    [
        (PATTERNS, [ORDERS, HR], [OUTSIDE, ORDERS + "/x", f"spiffe://{TRUST_DOMAIN}/agents"]),
        (f"spiffe://{TRUST_DOMAIN}/agents/**", [ORDERS, ORDERS + "/x/y"], [OUTSIDE, f"spiffe://{TRUST_DOMAIN}/agents"]),
        (f"spiffe://{TRUST_DOMAIN}/agents/orders-*", [ORDERS], [HR]),
        (f"spiffe://{TRUST_DOMAIN}/agents/hr-assistan?", [HR], [ORDERS]),
        (ORDERS, [ORDERS], [HR, ORDERS + "x"]),
        (f"spiffe://{TRUST_DOMAIN}/a.b/*", [f"spiffe://{TRUST_DOMAIN}/a.b/c"], [f"spiffe://{TRUST_DOMAIN}/aXb/c"]),
    ],
)
def test_patterns_match_whole_ids_segment_by_segment(pattern: str, admitted: list[str], refused: list[str]) -> None:
    assert spiffe.pattern_problem(pattern) is None
    compiled = spiffe.compile_patterns([pattern])
    assert all(compiled.fullmatch(i) for i in admitted)
    assert not any(compiled.fullmatch(i) for i in refused)


@pytest.mark.parametrize(
    "pattern",
    ["*", "spiffe://*/agents/x", "spiffe://td", "spiffe://td/", "spiffe://td/a//b", "spiffe://td/a**", "https://td/a"],
)
def test_bad_patterns_are_named(pattern: str) -> None:
    assert spiffe.pattern_problem(pattern) is not None


def test_no_pattern_admits_nothing() -> None:
    assert spiffe.compile_patterns([]).fullmatch(ORDERS) is None


# ---------------------------------------------------------------------------------------------------------------
# settings


BASE = {"TELEPORT_ISSUER": "https://teleport.example.com", "TELEPORT_AUDIENCE": "mcp+https://gw.example.com/mcp"}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(Problems) as info:
        Settings.from_env({**BASE, **env})
    return info.value.problems


def test_agent_settings_and_their_defaults() -> None:
    assert Settings.from_env(BASE).agents is None
    agents = Settings.from_env({**BASE, "AGENT_MODE": "Required", "AGENT_ID_PATTERNS": f"{PATTERNS}, {ORDERS}"}).agents
    assert agents == AgentSettings(
        mode=AgentMode.REQUIRED,
        issuer="https://teleport.example.com/workload-identity",
        audience="mcp+https://gw.example.com/mcp",
        id_patterns=(PATTERNS, ORDERS),
        header="X-Teleport-Agent-Token",
        pinned_jwks=None,
        max_lifetime_s=3600,
    )
    assert agents.discovery_url == "https://teleport.example.com/workload-identity/.well-known/openid-configuration"


def test_off_mode_reads_no_other_agent_setting() -> None:
    env = {"AGENT_MODE": "off", "AGENT_ID_PATTERNS": "*", "AGENT_TOKEN_HEADER": "Authorization", "AGENT_JWKS": "{"}
    assert Settings.from_env({**BASE, **env}) == Settings.from_env(BASE)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AGENT_MODE": "sometimes"}, "AGENT_MODE"),
        ({"AGENT_MODE": "optional"}, "AGENT_ID_PATTERNS is required"),
        ({"AGENT_MODE": "optional", "AGENT_ID_PATTERNS": "spiffe://*/x"}, "AGENT_ID_PATTERNS pattern 1"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_ISSUER": BASE["TELEPORT_ISSUER"]}, "must differ from TELEPORT_ISSUER"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_ISSUER": "https://t.example.com/wi/"}, "AGENT_ISSUER must not end"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_TOKEN_HEADER": "authorization"}, "AGENT_TOKEN_HEADER"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_TOKEN_HEADER": "Mcp-Name"}, "AGENT_TOKEN_HEADER"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_TOKEN_HEADER": "X Agent"}, "AGENT_TOKEN_HEADER"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_JWKS": "{broken"}, "AGENT_JWKS is not valid JSON"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_AUDIENCE": "a b"}, "AGENT_AUDIENCE"),
        ({"AGENT_ID_PATTERNS": PATTERNS, "AGENT_MAX_LIFETIME_SECONDS": "10"}, "AGENT_MAX_LIFETIME_SECONDS"),
    ],
)
def test_bad_agent_settings_are_named(env: dict[str, str], named: str) -> None:
    problems = problems_of({"AGENT_MODE": "optional", **env})
    assert any(named in p for p in problems), problems


def test_a_misconfigured_agent_mode_refuses_everything(make_interceptor: Make, carol: str) -> None:
    broken = make_interceptor(AGENT_MODE="optional")
    assert "(reason: misconfigured)" in refusal_text(broken.handle(call(GET, carol)))


def test_agent_mode_needs_a_schema_that_knows_agents(make_interceptor: Make, tmp_path: Path, carol: str) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    schema = (ROOT / "policies" / "schema.cedarschema").read_text(encoding="utf-8")
    old = schema.replace("principal: [User, Agent],", "principal: [User],").replace("agent?: Agent, ", "")
    (folder / "schema.cedarschema").write_text(old, encoding="utf-8")
    shutil.copy(ROOT / "policies" / "orders.cedar", folder / "orders.cedar")
    assert forwarded(make_interceptor(POLICY_DIR=str(folder)).handle(call(GET, carol))) is not None
    broken = make_interceptor(POLICY_DIR=str(folder), AGENT_MODE="optional", AGENT_ID_PATTERNS=PATTERNS)
    assert "(reason: misconfigured)" in refusal_text(broken.handle(call(GET, carol)))


def test_a_pinned_agent_jwks_needs_a_usable_key(make_interceptor: Make, issuer: Issuer, policy_dir: str) -> None:
    env = {"AGENT_MODE": "optional", "AGENT_ID_PATTERNS": PATTERNS, "POLICY_DIR": policy_dir}
    pinned = make_interceptor(**env, AGENT_JWKS=json.dumps(issuer.workload.jwks()))
    carol = issuer.mint(user="carol", roles=["order-admin"])
    assert forwarded(pinned.handle(call(GET, carol, issuer.workload.mint(agent=ORDERS)))) is not None
    assert not [p for p in issuer.requests if p.startswith("/workload-identity")]
    weak = make_interceptor(**env, AGENT_JWKS=json.dumps({"keys": [public_jwk(new_key(1024))]}))
    assert "(reason: misconfigured)" in refusal_text(weak.handle(call(GET, carol)))
    assert PinnedSource(json.dumps(issuer.workload.jwks()), frozenset({RS256})).load() == []  # EC key, RS256 only


# ---------------------------------------------------------------------------------------------------------------
# the header


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"X-Teleport-Agent-Token": "Bearer abc"}, "abc"),
        ({"x-teleport-agent-token": "bearer abc"}, "abc"),
        ({"X-TELEPORT-AGENT-TOKEN": "abc"}, "abc"),
        ({"Authorization": "Bearer other"}, None),
    ],
)
def test_agent_token_header_forms(headers: dict[str, Any], token: str | None) -> None:
    assert agent_token(header_fields(headers), HEADER) == token


@pytest.mark.parametrize("form", ["padded", "four-part", "empty-signature", "space"])
def test_an_agent_token_not_in_the_exact_compact_form_is_refused(
    issuer: Issuer, verifier: AgentVerifier, form: str
) -> None:
    token = issuer.workload.mint()
    assert verifier.verify(token).spiffe_id  # the exact form is read (and now cached)
    variant = {
        "padded": token + "=",
        "four-part": token + ".x",
        "empty-signature": token.rsplit(".", 1)[0] + ".",
        "space": token[:20] + " " + token[20:],
    }[form]
    assert cause(verifier, variant) == "token_malformed"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Teleport-Agent-Token": "a", "x-teleport-agent-token": "b"},
        {"X-Teleport-Agent-Token": ["a"]},
        {"X-Teleport-Agent-Token": ""},
        {"X-Teleport-Agent-Token": "Bearer"},
        {"X-Teleport-Agent-Token": "Bearer a b"},
        {"X-Teleport-Agent-Token": "Basic a"},
    ],
)
def test_malformed_agent_headers_are_refused(headers: dict[str, Any]) -> None:
    with pytest.raises(Refusal) as info:
        agent_token(header_fields(headers), HEADER)
    assert info.value.reason is Reason.AGENT_TOKEN_INVALID


def test_a_custom_header_name(make_interceptor: Make, issuer: Issuer, policy_dir: str, carol: str) -> None:
    custom = make_interceptor(
        AGENT_MODE="required", AGENT_ID_PATTERNS=PATTERNS, POLICY_DIR=policy_dir, AGENT_TOKEN_HEADER="X-Agent-JWT"
    )
    token = issuer.workload.mint(agent=ORDERS)
    assert forwarded(custom.handle(request_event(tool_call(GET, ARGS[GET]), carol, {"x-agent-jwt": token})))
    assert "agent_token_missing" in refusal_text(custom.handle(call(GET, carol, token)))


# ---------------------------------------------------------------------------------------------------------------
# off mode: the header does not exist


def comparable(line: str) -> dict[str, Any]:
    audit = json.loads(line)["audit"]
    audit.pop("latency_us")
    return audit


def test_off_mode_ignores_the_agent_header_entirely(
    make_interceptor: Make, issuer: Issuer, audit_log: list[str], policy_dir: str
) -> None:
    """With AGENT_MODE off (the default) an agent header, valid or garbage, changes nothing: the same answer,
    byte for byte, and the same audit record; an `act` claim is ignored like any unknown claim."""
    plain, off = make_interceptor(POLICY_DIR=policy_dir), make_interceptor(POLICY_DIR=policy_dir, AGENT_MODE="off")
    carol, acting = issuer.mint(user="carol", roles=["order-admin"]), issuer.mint(user="carol", act={"sub": ORDERS})
    valid = issuer.workload.mint(agent=ORDERS)
    events: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
        lambda h: call(UPDATE, carol, **h),
        lambda h: call(GET, acting, **h),
        lambda h: list_event(carol, **h),
        lambda h: request_event(rpc("initialize", {"protocolVersion": "2025-06-18"}), carol, headers=h),
    ]
    for headers in ({HEADER: f"Bearer {valid}"}, {HEADER: "garbage"}, {HEADER: "x", HEADER.lower(): "y"}):
        for make_event in events:
            for interceptor in (plain, off):
                audit_log.clear()
                baseline = json.dumps(interceptor.handle(make_event({})))
                first = comparable(audit_log[0])
                with_header = json.dumps(interceptor.handle(make_event(headers)))
                assert with_header == baseline
                assert comparable(audit_log[1]) == first
                assert "agent" not in comparable(audit_log[1]) and ORDERS not in with_header


# ---------------------------------------------------------------------------------------------------------------
# optional mode


def test_optional_without_an_agent_is_the_human_gate_alone(
    make_interceptor: Make, optional: Interceptor, issuer: Issuer, policy_dir: str, audit_log: list[str]
) -> None:
    off = make_interceptor(POLICY_DIR=policy_dir)
    users = [
        issuer.mint(user="carol", roles=["order-admin"]),
        issuer.mint(user="alice", roles=["developer"]),
        issuer.mint(user="bot-reporter", roles=["bot-reporter", "order-admin"]),
        issuer.mint(user="dana", roles=["db-reader"], traits={"db_names": ["sales"]}),
    ]
    for user in users:
        for tool in ALL_TOOLS:
            audit_log.clear()
            assert json.dumps(optional.handle(call(tool, user))) == json.dumps(off.handle(call(tool, user)))
            assert comparable(audit_log[0]) == comparable(audit_log[1])
        assert listed(optional.handle(list_event(user))) == listed(off.handle(list_event(user)))


def test_a_delegated_call_allowed_by_both_gates(
    optional: Interceptor, issuer: Issuer, carol: str, audit_lines: Audit
) -> None:
    svid = issuer.workload.mint(agent=ORDERS)
    body = forwarded(optional.handle(call(GET, carol, svid)))
    assert body is not None
    arguments, meta = body["params"]["arguments"], body["params"]["_meta"]
    assert arguments == {
        "order_id": "42",
        "_teleport_user": "carol",
        "_teleport_roles": ["order-admin"],
        AGENT_ARG: ORDERS,
    }
    assert meta[IDENTITY_META_KEY] == {"user": "carol", "roles": ["order-admin"], "agent": ORDERS}
    assert Caller.from_arguments(arguments).agent == ORDERS and Caller.from_meta(meta).agent == ORDERS
    [record] = audit_lines()
    assert (record["decision"], record["reason"], record["forwarded"]) == ("allow", "allowed", True)
    assert record["agent"] == ORDERS
    assert record["agent_jti"] == jwt.decode(svid, options={"verify_signature": False})["jti"]
    assert (record["user_decision"], record["user_policy_ids"]) == ("allow", ["order-admins-manage-orders"])
    assert (record["agent_decision"], record["agent_policy_ids"]) == ("allow", ["orders-agents-use-orders"])
    assert record["policy_ids"] == ["order-admins-manage-orders", "orders-agents-use-orders"]


@pytest.mark.parametrize(
    ("user", "roles", "tool", "expected", "gates"),
    [
        pytest.param(
            "carol",
            ["order-admin"],
            UPDATE,
            f"the agent '{ORDERS}' may not call tool '{UPDATE}' for Teleport user 'carol': "
            "forbidden by policy 'no-destructive-tools-for-agents' (reason: agent_denied).",
            ("allow", "deny", "agent_denied", ["no-destructive-tools-for-agents"]),
            id="agent-gate",  # carol may update orders in person; no agent may do it for her
        ),
        pytest.param(
            "erin",
            ["guest"],
            GET,
            f"Teleport user 'erin' may not call tool '{GET}' through agent '{ORDERS}': "
            "no policy allows this call (reason: policy_denied).",
            ("deny", "allow", "policy_denied", []),
            id="user-gate",  # the orders assistant may read orders; erin may not
        ),
    ],
)
def test_each_gate_refusing_alone(
    optional: Interceptor,
    issuer: Issuer,
    audit_lines: Audit,
    user: str,
    roles: list[str],
    tool: str,
    expected: str,
    gates: tuple[str, str, str, list[str]],
) -> None:
    human = issuer.mint(user=user, roles=roles)
    assert refusal_text(optional.handle(call(tool, human, issuer.workload.mint(agent=ORDERS)))) == (
        f"200 isError=True {expected}"
    )
    record = audit_lines()[-1]
    assert (record["user_decision"], record["agent_decision"], record["reason"], record["policy_ids"]) == gates


def test_an_agent_no_policy_allows_is_refused_by_default(optional: Interceptor, issuer: Issuer, carol: str) -> None:
    assert forwarded(optional.handle(call(GET, carol))) is not None
    default_deny = refusal_text(optional.handle(call(GET, carol, issuer.workload.mint(agent=HR))))
    assert f"the agent '{HR}' may not call tool '{GET}'" in default_deny
    assert "no policy allows this agent this call (reason: agent_denied)" in default_deny


def test_both_gates_refusing_name_both(optional: Interceptor, issuer: Issuer, alice: str) -> None:
    text = refusal_text(optional.handle(call(UPDATE, alice, issuer.workload.mint(agent=ORDERS))))
    assert f"Teleport user 'alice' may not call tool '{UPDATE}' through agent '{ORDERS}'" in text
    assert f"; the agent '{ORDERS}' may not call tool '{UPDATE}' for Teleport user 'alice'" in text
    assert text.endswith("(reason: policy_denied).")


def test_a_policy_can_say_this_user_only_through_this_agent(
    make_interceptor: Make, policy_dir: str, issuer: Issuer, alice: str
) -> None:
    Path(policy_dir, "only-through.cedar").write_text(
        '@id("alice-orders-only-through-the-assistant")\n'
        'forbid (principal == Teleport::User::"alice", action in Teleport::Action::"orders", resource)\n'
        f'unless {{ context has agent && context.agent == Teleport::Agent::"{ORDERS}" }};\n',
        encoding="utf-8",
    )
    gate = make_interceptor(AGENT_MODE="optional", AGENT_ID_PATTERNS=PATTERNS, POLICY_DIR=policy_dir)
    assert "forbidden by policy 'alice-orders-only-through-the-assistant'" in refusal_text(
        gate.handle(call(GET, alice))
    )
    assert forwarded(gate.handle(call(GET, alice, issuer.workload.mint(agent=ORDERS)))) is not None
    through_hr = refusal_text(gate.handle(call(GET, alice, issuer.workload.mint(agent=HR))))
    assert "Teleport user 'alice' may not call tool" in through_hr and "the agent" in through_hr
    # the tool list knows the agent too: listed only where a call could be allowed
    assert listed(gate.handle(list_event(alice))) == []
    assert listed(gate.handle(list_event(alice, issuer.workload.mint(agent=ORDERS)))) == [GET, LIST]


def test_tool_lists_show_the_intersection(optional: Interceptor, issuer: Issuer, carol: str, alice: str) -> None:
    dana = issuer.mint(user="dana", roles=["db-reader", "order-admin"], traits={"db_names": ["sales"]})
    assert listed(optional.handle(list_event(carol))) == [GET, LIST, UPDATE]
    assert listed(optional.handle(list_event(dana))) == [QUERY, GET, LIST, UPDATE]
    orders = issuer.workload.mint(agent=ORDERS)
    assert listed(optional.handle(list_event(carol, orders))) == [GET, LIST]  # no destructive tool for agents
    assert listed(optional.handle(list_event(dana, orders))) == [GET, LIST]  # db: no policy lets the agent
    assert listed(optional.handle(list_event(alice, orders))) == [GET, LIST]
    assert listed(optional.handle(list_event(carol, issuer.workload.mint(agent=HR)))) == []


def test_the_header_spoofed_by_a_caller_is_verified_or_refused(
    optional: Interceptor, issuer: Issuer, carol: str, audit_lines: Audit
) -> None:
    """Whoever sets the agent header in optional mode gets it verified: a forged, foreign or replayed value is a
    401, never ignored (which would drop the agent gate) and never trusted."""
    forged_claims = issuer.workload.claims(agent=ORDERS)
    attempts = {
        "unsigned": jwt.encode(forged_claims, "", algorithm="none"),
        "attacker key": issuer.workload.mint(key=new_ec_key(), agent=ORDERS),
        "user id token": carol,
        "another gateway": issuer.workload.mint(agent=ORDERS, aud="mcp+https://other-gateway.example.com/mcp"),
        "outside patterns": issuer.workload.mint(agent=OUTSIDE),
        "expired": issuer.workload.mint(agent=ORDERS, ttl=-120),
        "garbage": "not-a-token",
    }
    for name, token in attempts.items():
        for event in (call(GET, carol, token), list_event(carol, token)):
            text = refusal_text(optional.handle(event))
            assert text.startswith("401 -31001 agent token invalid"), name
            assert text.endswith("(reason: agent_token_invalid)"), name
            assert "agent" not in audit_lines()[-1], name  # an unverified agent is never recorded as the agent
    assert "; this one expired (tbot renews it) (reason" in refusal_text(
        optional.handle(call(GET, carol, attempts["expired"]))
    )


def test_swapped_tokens_are_refused(optional: Interceptor, issuer: Issuer, carol: str) -> None:
    svid = issuer.workload.mint(agent=ORDERS)
    swapped = request_event(tool_call(GET, ARGS[GET]), svid, headers=agent_headers(carol))
    assert refusal_text(optional.handle(swapped)).endswith("(reason: algorithm_not_allowed)")
    issuer.workload.use("RS256")  # a legacy-suite SVID is RS256 too: then the issuer tells them apart
    rs_svid = issuer.workload.mint(agent=ORDERS)
    swapped = request_event(tool_call(GET, ARGS[GET]), rs_svid, headers=agent_headers(carol))
    assert refusal_text(optional.handle(swapped)).endswith("(reason: issuer_mismatch)")
    both_human = call(GET, carol, carol)
    assert refusal_text(optional.handle(both_human)).endswith("(reason: agent_token_invalid)")


def test_the_act_claim_must_name_the_agent(optional: Interceptor, issuer: Issuer) -> None:
    acting = issuer.mint(user="carol", roles=["order-admin"], act={"sub": ORDERS})
    assert forwarded(optional.handle(call(GET, acting, issuer.workload.mint(agent=ORDERS)))) is not None
    other = refusal_text(optional.handle(call(GET, acting, issuer.workload.mint(agent=HR))))
    assert other.startswith("401") and "names another agent in its act claim" in other
    missing = refusal_text(optional.handle(call(GET, acting)))
    assert missing.startswith("401") and missing.endswith("(reason: agent_token_missing)")
    chained = issuer.mint(user="carol", roles=["order-admin"], act={"sub": ORDERS, "act": {"sub": "someone"}})
    assert forwarded(optional.handle(call(GET, chained, issuer.workload.mint(agent=ORDERS)))) is not None
    for bad in ({"sub": ""}, {"sub": 7}, "spiffe://x/y", [ORDERS], {}):
        malformed = issuer.mint(user="carol", roles=["order-admin"], act=bad)
        assert refusal_text(optional.handle(call(GET, malformed))).endswith("(reason: claims_invalid)")


def test_caller_sent_agent_values_are_removed(optional: Interceptor, issuer: Issuer, carol: str) -> None:
    body = tool_call(GET, {**ARGS[GET], "_teleport_agent": "spiffe://evil/agent", "_TELEPORT_AGENT": "x"})
    body["params"]["_meta"] = {IDENTITY_META_KEY: {"user": "carol", "roles": [], "agent": "spiffe://evil/agent"}}
    for token in (None, issuer.workload.mint(agent=ORDERS)):
        headers = agent_headers(token) if token else None
        sent = forwarded(optional.handle(request_event(json.loads(json.dumps(body)), carol, headers=headers)))
        assert sent is not None and "evil" not in json.dumps(sent)
        arguments = sent["params"]["arguments"]
        assert arguments.get(AGENT_ARG) == (ORDERS if token else None)
        assert "_TELEPORT_AGENT" not in arguments
        assert sent["params"]["_meta"][IDENTITY_META_KEY].get("agent") == (ORDERS if token else None)


def test_an_unreachable_workload_identity_issuer(optional: Interceptor, issuer: Issuer, carol: str) -> None:
    issuer.workload.down = True
    text = refusal_text(optional.handle(call(GET, carol, issuer.workload.mint(agent=ORDERS))))
    assert text.startswith("503") and text.endswith("(reason: idp_unavailable)")
    assert forwarded(optional.handle(call(GET, carol))) is not None  # without an agent, nothing else is needed


def test_log_only_forwards_an_agent_denial_without_a_session(
    make_interceptor: Make, policy_dir: str, issuer: Issuer, carol: str, audit_lines: Audit
) -> None:
    trial = make_interceptor(
        AGENT_MODE="optional", AGENT_ID_PATTERNS=PATTERNS, POLICY_DIR=policy_dir, ENFORCEMENT_MODE="log_only"
    )
    body = forwarded(trial.handle(call(UPDATE, carol, issuer.workload.mint(agent=ORDERS))))
    assert body is not None and body["params"]["arguments"][AGENT_ARG] == ORDERS
    record = audit_lines()[-1]
    assert (record["decision"], record["forwarded"], record["reason"]) == ("deny", True, "agent_denied")


# ---------------------------------------------------------------------------------------------------------------
# required mode


def test_required_mode_refuses_every_request_without_an_agent(
    required: Interceptor, issuer: Issuer, carol: str
) -> None:
    for event in (
        call(GET, carol),
        list_event(carol),
        request_event(rpc("initialize", {"protocolVersion": "2025-06-18"}), carol),
        request_event(rpc("tools/list"), carol),
    ):
        text = refusal_text(required.handle(event))
        assert text.startswith("401 -31001 no agent token") and text.endswith("(reason: agent_token_missing)")
    assert ANSWERS[Reason.AGENT_TOKEN_MISSING] == ANSWERS[Reason.AGENT_TOKEN_INVALID] == (401, -31001)
    assert ANSWERS[Reason.AGENT_DENIED] == (200, None)
    assert forwarded(required.handle(call(GET, carol, issuer.workload.mint(agent=ORDERS)))) is not None
    assert listed(required.handle(list_event(carol, issuer.workload.mint(agent=ORDERS)))) == [GET, LIST]


def test_the_human_token_is_still_checked_first(required: Interceptor, issuer: Issuer) -> None:
    svid = issuer.workload.mint(agent=ORDERS)
    assert refusal_text(required.handle(call(GET, issuer.mint(ttl=-600), svid))).endswith("(reason: token_expired)")
    no_token = request_event(tool_call(GET, ARGS[GET]), headers=agent_headers(svid))
    assert refusal_text(required.handle(no_token)).endswith("(reason: token_missing)")


# ---------------------------------------------------------------------------------------------------------------
# AWS, audit, leaks


def test_the_aws_session_keeps_the_human_and_tags_the_agent(
    make_interceptor: Make, policy_dir: str, issuer: Issuer, carol: str
) -> None:
    with local_sts() as sent:
        sessions = make_interceptor(
            AGENT_MODE="optional",
            AGENT_ID_PATTERNS=PATTERNS,
            POLICY_DIR=policy_dir,
            SESSION_ROLE_ARN="arn:aws:iam::123456789012:role/orders-session",
            SESSION_TOOLS="orders___*",
        )
        assert forwarded(sessions.handle(call(GET, carol))) is not None
        assert forwarded(sessions.handle(call(GET, carol, issuer.workload.mint(agent=ORDERS)))) is not None
    alone, delegated = sent
    assert (delegated.session_name, delegated.source_identity) == ("carol", "carol")
    assert dict(delegated.tags)["teleport-agent"] == ORDERS
    assert delegated.transitive_tag_keys == [key for key, _ in delegated.tags]
    assert "teleport-agent" in delegated.transitive_tag_keys and "teleport-agent" not in dict(alone.tags)


def test_a_long_agent_id_is_mapped_onto_sts_tag_rules() -> None:
    from interceptor.sts_names import session_tags

    long_id = f"spiffe://{TRUST_DOMAIN}/" + "/".join(["segment"] * 60)
    tags = {t["Key"]: t["Value"] for t in session_tags("carol", ["r"], GET, "https://t.example.com", long_id)}
    assert len(tags["teleport-agent"]) <= 256 and tags["teleport-agent"] != long_id


def test_agent_fields_in_the_audit_record_are_capped(
    make_interceptor: Make, policy_dir: str, issuer: Issuer, carol: str, audit_lines: Audit
) -> None:
    long_id = f"spiffe://{TRUST_DOMAIN}/agents/" + "a" * 2000
    gate = make_interceptor(
        AGENT_MODE="optional", AGENT_ID_PATTERNS=f"{PATTERNS},spiffe://{TRUST_DOMAIN}/agents/**", POLICY_DIR=policy_dir
    )
    gate.handle(call(GET, carol, issuer.workload.mint(agent=long_id, jti="j" * 5000)))
    record = audit_lines()[-1]
    assert record["agent"].startswith(long_id[:256]) and record["agent"].endswith(f"...(+{len(long_id) - 256} chars)")
    assert record["agent_jti"] == "j" * 256 + "...(+4744 chars)"


def test_agent_tokens_never_reach_answers_audit_or_logs(
    optional: Interceptor,
    issuer: Issuer,
    carol: str,
    audit_log: list[str],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens = [
        issuer.workload.mint(agent=ORDERS),
        issuer.workload.mint(agent=OUTSIDE),
        issuer.workload.mint(agent=ORDERS, ttl=-600),
        issuer.workload.mint(key=new_ec_key(), agent=ORDERS),
    ]
    answers = [json.dumps(optional.handle(call(tool, carol, token))) for token in tokens for tool in (GET, UPDATE)]
    answers += [json.dumps(optional.handle(list_event(carol, token))) for token in tokens]
    everything = "\n".join([*answers, *audit_log, capsys.readouterr().out, caplog.text])
    for token in tokens:
        assert token not in everything
        assert token.split(".")[2] not in everything
