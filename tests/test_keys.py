"""Teleport's signing keys: discovery + JWKS fetching, the per-container cache, rotation, refresh cooldown, outages,
the hardened HTTP fetcher and pinned JWKS. Everything runs against servers on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from devtools import loopback
from devtools.gateway import request_event, rpc
from devtools.issuer import Issuer, new_key, public_jwk
from interceptor.config import Settings
from interceptor.errors import Refusal
from interceptor.keys import (
    JWKS_MAX_BYTES,
    DiscoverySource,
    FetchError,
    HttpFetcher,
    KeyStore,
    PinnedSource,
    parse_jwks,
)
from interceptor.reasons import Reason
from interceptor.tokens import TokenVerifier

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/.well-known/jwks-oidc"
ONE_LOAD = [DISCOVERY, JWKS]
TTL = 3600
COOLDOWN = 30


# ---------------------------------------------------------------------------------------------------------------
# helpers


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Respond = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def local_server(respond: Respond) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 whose GETs are answered by `respond`; yields its URL and the paths asked for."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            with contextlib.suppress(OSError):  # the client gave up (timeout, size cap): nothing to do
                respond(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with loopback.serve(Handler) as address:
        yield f"http://{address}", hits


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def routes(table: dict[str, bytes]) -> Respond:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        body = table.get(handler.path)
        send(handler, 200 if body is not None else 404, body or b"")

    return respond


def refusal(verifier: TokenVerifier, token: str) -> Reason:
    with pytest.raises(Refusal) as info:
        verifier.verify(token)
    return info.value.reason


@contextmanager
def idp_unavailable() -> Iterator[None]:
    """No key known and none fetched: the verifier's one refusal type, `idp_unavailable`."""
    with pytest.raises(Refusal) as info:
        yield
    assert info.value.reason is Reason.IDP_UNAVAILABLE


def garbage_signature(token: str, n: int) -> str:
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{jwt.utils.base64url_encode(n.to_bytes(256, 'big')).decode()}"


def response_of(out: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = out["mcp"]["transformedGatewayResponse"]
    return response["statusCode"], response["body"]


def forwarded(out: dict[str, Any]) -> bool:
    return "transformedGatewayRequest" in out["mcp"]


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def fetcher() -> HttpFetcher:
    """Shared: building an opener loads the system CA bundle, which is slow."""
    return HttpFetcher(2.0)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(issuer: Issuer, clock: FakeClock, fetcher: HttpFetcher) -> Callable[..., KeyStore]:
    issuer.requests.clear()

    def make(ttl_s: float = TTL, cooldown_s: float = COOLDOWN) -> KeyStore:
        discovery_url = Settings(issuer=issuer.url, audience=issuer.audience).discovery_url
        return KeyStore(DiscoverySource(issuer.url, discovery_url, fetcher), ttl_s, cooldown_s, clock=clock)

    return make


@pytest.fixture
def store(make_store: Callable[..., KeyStore]) -> KeyStore:
    return make_store()


@pytest.fixture
def verifier(issuer: Issuer, store: KeyStore) -> TokenVerifier:
    return TokenVerifier(issuer.url, issuer.audience, store, leeway_s=30, cache_size=1024)


@pytest.fixture
def warm(issuer: Issuer, verifier: TokenVerifier) -> TokenVerifier:
    """The verifier after its first request: keys loaded with exactly one discovery + JWKS fetch."""
    verifier.verify(issuer.mint())
    assert issuer.requests == ONE_LOAD
    return verifier


# ---------------------------------------------------------------------------------------------------------------
# fetched once per container, then cached


def test_keys_fetched_once_then_cached(issuer: Issuer, verifier: TokenVerifier, clock: FakeClock) -> None:
    for i in range(40):
        assert verifier.verify(issuer.mint(user=f"user{i}")).user == f"user{i}"  # 40 distinct tokens
        clock.advance(60)  # 40 minutes in total, within the one-hour TTL
    assert issuer.requests == ONE_LOAD


def test_ttl_expiry_triggers_one_refetch(issuer: Issuer, warm: TokenVerifier, clock: FakeClock) -> None:
    clock.advance(TTL - 1)
    warm.verify(issuer.mint())
    assert issuer.requests == ONE_LOAD
    clock.advance(1)
    for _ in range(10):
        warm.verify(issuer.mint())
    assert issuer.requests == ONE_LOAD * 2


def test_ttl_refresh_drops_keys_the_issuer_no_longer_publishes(
    issuer: Issuer, warm: TokenVerifier, clock: FakeClock
) -> None:
    old_key = issuer.rotate(finish=True)  # rotation completed: only the new key is published
    old_token = issuer.mint(key=old_key)
    assert warm.verify(old_token).user == "alice"  # last-good keys until the TTL
    clock.advance(TTL)
    assert refusal(warm, issuer.mint(key=old_key)) is Reason.SIGNATURE_INVALID
    assert warm.verify(issuer.mint()).user == "alice"


# ---------------------------------------------------------------------------------------------------------------
# CA rotation (tokens carry no kid)


def test_two_published_keys_both_verify_tokens_without_kid(issuer: Issuer, verifier: TokenVerifier) -> None:
    old_key = issuer.rotate()  # standby -> init: both keys published
    assert len(issuer.jwks()["keys"]) == 2
    for key in (old_key, issuer.signing_key, old_key, issuer.signing_key):
        token = issuer.mint(key=key)
        assert "kid" not in jwt.get_unverified_header(token)
        assert verifier.verify(token).user == "alice"
    assert issuer.requests == ONE_LOAD


def test_new_key_not_yet_cached_triggers_exactly_one_refresh(
    issuer: Issuer, warm: TokenVerifier, clock: FakeClock
) -> None:
    issuer.rotate()
    clock.advance(COOLDOWN + 1)  # well inside the TTL: only a miss can cause a fetch
    assert warm.verify(issuer.mint()).user == "alice"
    assert issuer.requests == ONE_LOAD * 2
    for _ in range(5):
        warm.verify(issuer.mint())
    assert issuer.requests == ONE_LOAD * 2


def test_new_key_within_cooldown_of_the_last_load_waits_for_the_cooldown(
    issuer: Issuer, warm: TokenVerifier, clock: FakeClock
) -> None:
    issuer.rotate()
    assert refusal(warm, issuer.mint()) is Reason.SIGNATURE_INVALID
    assert issuer.requests == ONE_LOAD
    clock.advance(COOLDOWN)
    assert warm.verify(issuer.mint()).user == "alice"
    assert issuer.requests == ONE_LOAD * 2


def test_rollback_keeps_both_keys_working(issuer: Issuer, warm: TokenVerifier, clock: FakeClock) -> None:
    original = issuer.signing_key
    issuer.rotate()
    clock.advance(COOLDOWN + 1)
    assert warm.verify(issuer.mint()).user == "alice"
    issuer.signing_key = original  # rollback: the original key signs again, both still published
    assert warm.verify(issuer.mint()).user == "alice"
    assert issuer.requests == ONE_LOAD * 2


# ---------------------------------------------------------------------------------------------------------------
# refetch storms (random kids, garbage signatures)


def test_bad_tokens_cause_at_most_one_refresh_per_cooldown(
    issuer: Issuer, warm: TokenVerifier, clock: FakeClock, other_key: rsa.RSAPrivateKey
) -> None:
    clock.advance(COOLDOWN + 1)
    good = issuer.mint()
    bad = [garbage_signature(good, i + 1) for i in range(50)]
    bad += [issuer.mint(key=other_key, headers={"kid": f"kid-{i}"}) for i in range(25)]
    bad += [issuer.mint(headers={"kid": f"random-{i}"}) for i in range(25)]
    for token in bad:
        assert refusal(warm, token) is Reason.SIGNATURE_INVALID
    storm = issuer.requests[len(ONE_LOAD) :]
    assert storm in ([], ONE_LOAD)  # at most one refresh for 100 bad tokens

    clock.advance(COOLDOWN + 1)  # the next window allows exactly one more
    before = len(issuer.requests)
    for token in bad:
        assert refusal(warm, token) is Reason.SIGNATURE_INVALID
    assert issuer.requests[before:] == ONE_LOAD
    assert warm.verify(good).user == "alice"


def test_concurrent_misses_share_one_refresh(
    issuer: Issuer, warm: TokenVerifier, clock: FakeClock, other_key: rsa.RSAPrivateKey
) -> None:
    clock.advance(COOLDOWN + 1)
    tokens = [issuer.mint(key=other_key) for _ in range(16)]
    reasons: list[Reason] = []
    barrier = threading.Barrier(len(tokens))

    def attempt(token: str) -> None:
        barrier.wait()
        try:
            warm.verify(token)
        except Refusal as exc:
            reasons.append(exc.reason)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert reasons == [Reason.SIGNATURE_INVALID] * len(tokens)
    assert issuer.requests == ONE_LOAD * 2


# ---------------------------------------------------------------------------------------------------------------
# identity provider outages


def test_outage_with_warm_cache_keeps_last_good_keys(issuer: Issuer, warm: TokenVerifier, clock: FakeClock) -> None:
    issuer.down = True
    clock.advance(TTL + 1)  # the scheduled refresh now fails
    for i in range(20):
        assert warm.verify(issuer.mint(user=f"u{i}")).user == f"u{i}"
    assert issuer.requests == [*ONE_LOAD, DISCOVERY]  # one failed attempt, then the cooldown holds
    issuer.down = False
    clock.advance(COOLDOWN)
    assert warm.verify(issuer.mint()).user == "alice"
    assert issuer.requests == [*ONE_LOAD, DISCOVERY, *ONE_LOAD]


def test_outage_then_rotation_refuses_unknown_key_but_keeps_old(
    issuer: Issuer, warm: TokenVerifier, clock: FakeClock
) -> None:
    issuer.down = True
    old = issuer.rotate()
    clock.advance(COOLDOWN + 1)
    assert refusal(warm, issuer.mint()) is Reason.SIGNATURE_INVALID
    assert warm.verify(issuer.mint(key=old)).user == "alice"


def test_cold_cache_with_issuer_down_is_idp_unavailable(issuer: Issuer, verifier: TokenVerifier) -> None:
    issuer.down = True
    token = issuer.mint()
    for _ in range(10):
        with idp_unavailable():
            verifier.verify(token)
    assert issuer.requests == [DISCOVERY]  # one attempt per cooldown, not one per request


def test_cold_cache_recovers_after_the_cooldown(issuer: Issuer, verifier: TokenVerifier, clock: FakeClock) -> None:
    issuer.down = True
    with idp_unavailable():
        verifier.verify(issuer.mint())
    issuer.down = False
    clock.advance(COOLDOWN)
    assert verifier.verify(issuer.mint()).user == "alice"


def test_handler_answers_503_when_no_keys_can_be_had(
    issuer: Issuer, interceptor: Any, audit_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    issuer.requests.clear()
    issuer.down = True
    status, body = response_of(interceptor.handle(request_event(rpc("tools/list", rpc_id="r1"), issuer.mint())))
    assert status == 503
    assert body["id"] == "r1"
    assert "identity provider unavailable" in body["error"]["message"]
    assert "(reason: idp_unavailable)" in body["error"]["message"]
    record = audit_lines()[-1]
    assert (record["reason"], record["forwarded"], record["decision"]) == (Reason.IDP_UNAVAILABLE.value, False, "deny")


def test_handler_with_warm_cache_survives_an_outage(issuer: Issuer, interceptor: Any) -> None:
    assert forwarded(interceptor.handle(request_event(rpc("tools/list"), issuer.mint())))
    issuer.down = True
    assert forwarded(interceptor.handle(request_event(rpc("tools/list"), issuer.mint(user="bob"))))


# ---------------------------------------------------------------------------------------------------------------
# the discovery document


@pytest.mark.parametrize(
    "doc_issuer",
    [
        pytest.param(lambda u: u + "/", id="trailing-slash"),
        pytest.param(lambda u: "https://teleport.example.com", id="other"),
        pytest.param(lambda u: u.replace("127.0.0.1", "localhost"), id="localhost"),
        pytest.param(lambda u: None, id="null"),
        pytest.param(lambda u: [u], id="list"),
    ],
)
def test_discovery_issuer_mismatch_is_idp_unavailable(
    issuer: Issuer, verifier: TokenVerifier, doc_issuer: Callable[[str], Any]
) -> None:
    issuer.discovery_overrides = {"issuer": doc_issuer(issuer.url)}
    with idp_unavailable():
        verifier.verify(issuer.mint())
    assert issuer.requests == [DISCOVERY]  # the JWKS of a mismatching document is never fetched


def test_discovery_issuer_mismatch_through_handler(issuer: Issuer, interceptor: Any) -> None:
    issuer.discovery_overrides = {"issuer": issuer.url + "/"}
    status, body = response_of(interceptor.handle(request_event(rpc("tools/list"), issuer.mint())))
    assert status == 503
    assert "identity provider unavailable" in body["error"]["message"]


@pytest.mark.parametrize(
    "jwks_uri",
    [
        pytest.param(lambda u: u.replace("127.0.0.1", "localhost") + JWKS, id="other-host"),
        pytest.param(lambda u: "https" + u.removeprefix("http") + JWKS, id="other-scheme"),
        pytest.param(lambda u: u.rsplit(":", 1)[0] + ":1" + JWKS, id="other-port"),
        pytest.param(lambda u: u.rsplit(":", 1)[0] + JWKS, id="default-port"),
        pytest.param(lambda u: None, id="missing"),
        pytest.param(lambda u: 42, id="not-a-string"),
    ],
)
def test_jwks_uri_off_the_issuer_origin_refused(
    issuer: Issuer, verifier: TokenVerifier, jwks_uri: Callable[[str], Any]
) -> None:
    issuer.discovery_overrides = {"jwks_uri": jwks_uri(issuer.url)}
    with idp_unavailable():
        verifier.verify(issuer.mint())
    assert issuer.requests == [DISCOVERY]


def test_jwks_uri_pointing_at_an_attacker_is_never_fetched(
    issuer: Issuer, verifier: TokenVerifier, other_key: rsa.RSAPrivateKey
) -> None:
    """The attacker's server would serve a JWKS that makes the attacker's token verify."""
    attacker_jwks = json.dumps({"keys": [public_jwk(other_key)]}).encode()
    with local_server(routes({"/jwks": attacker_jwks})) as (attacker_url, hits):
        issuer.discovery_overrides = {"jwks_uri": attacker_url + "/jwks"}
        with idp_unavailable():
            verifier.verify(issuer.mint(key=other_key))
        assert hits == []


# A discovery document or server that is broken in other ways must still be "identity provider unavailable" (503,
# last-good keys kept), never an exception escaping the KeyStore (500 internal_error, valid tokens refused).


def _discovery_server(jwks_uri: str | None = None, discovery_body: bytes | None = None) -> Respond:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        base = f"http://127.0.0.1:{handler.server.server_address[1]}"
        body = discovery_body or json.dumps({"issuer": base, "jwks_uri": jwks_uri or base + JWKS}).encode()
        send(handler, 200, body)

    return respond


@pytest.mark.parametrize("port", ["99999", "abc"])
def test_jwks_uri_with_invalid_port_is_idp_unavailable(issuer: Issuer, verifier: TokenVerifier, port: str) -> None:
    issuer.discovery_overrides = {"jwks_uri": f"http://127.0.0.1:{port}{JWKS}"}
    with idp_unavailable():
        verifier.verify(issuer.mint())


def test_jwks_uri_with_invalid_port_keeps_last_good_keys(issuer: Issuer, warm: TokenVerifier, clock: FakeClock) -> None:
    issuer.discovery_overrides = {"jwks_uri": f"http://127.0.0.1:99999{JWKS}"}
    clock.advance(TTL)  # scheduled refresh reads the broken document
    assert warm.verify(issuer.mint()).user == "alice"


def test_deeply_nested_discovery_is_idp_unavailable(clock: FakeClock, fetcher: HttpFetcher) -> None:
    nested = b"[" * 20_000 + b"]" * 20_000  # 40 KB: under the 64 KiB discovery cap
    with local_server(_discovery_server(discovery_body=nested)) as (url, _):
        store = KeyStore(DiscoverySource(url, url + DISCOVERY, fetcher), TTL, COOLDOWN, clock=clock)
        with idp_unavailable():
            store.candidates(None)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: y\r\n" * 150 + b"\r\n", id="too-many-headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Long: " + b"y" * 70_000 + b"\r\n\r\n", id="header-too-long"),
    ],
)
def test_fetcher_turns_protocol_garbage_into_fetch_error(fetcher: HttpFetcher, raw: bytes) -> None:
    with local_server(lambda h: h.wfile.write(raw)) as (url, _), pytest.raises(FetchError):
        fetcher(url + DISCOVERY, 1024)


def test_handler_with_non_http_issuer_endpoint_is_503(issuer: Issuer, make_interceptor: Callable[..., Any]) -> None:
    with local_server(lambda h: h.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")) as (url, _):
        interceptor = make_interceptor(TELEPORT_ISSUER=url)
        status, body = response_of(interceptor.handle(request_event(rpc("tools/list"), issuer.mint(iss=url))))
    assert status == 503
    assert "identity provider unavailable" in body["error"]["message"]


def test_discovery_that_is_not_json_is_idp_unavailable(clock: FakeClock, fetcher: HttpFetcher) -> None:
    with local_server(routes({DISCOVERY: b"<html>login</html>"})) as (url, hits):
        store = KeyStore(DiscoverySource(url, url + DISCOVERY, fetcher), TTL, COOLDOWN, clock=clock)
        with idp_unavailable():
            store.candidates(None)
        assert hits == [DISCOVERY]


def test_jwks_with_no_usable_key_keeps_last_good(issuer: Issuer, warm: TokenVerifier, clock: FakeClock) -> None:
    issuer.published = [new_key(1024)]  # the only published key is too weak to use
    clock.advance(TTL)
    assert warm.verify(issuer.mint()).user == "alice"
    assert issuer.requests == ONE_LOAD * 2


# ---------------------------------------------------------------------------------------------------------------
# HttpFetcher: https only, no redirects, size cap, timeout, no proxies


def test_fetcher_reads_the_issuer(issuer: Issuer, fetcher: HttpFetcher) -> None:
    issuer.requests.clear()
    assert json.loads(fetcher(issuer.url + JWKS, JWKS_MAX_BYTES)) == issuer.jwks()
    assert issuer.requests == [JWKS]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_fetcher_never_follows_redirects(fetcher: HttpFetcher, status: int) -> None:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        if handler.path == "/start":
            send(handler, status, headers={"Location": "/target"})
        else:
            send(handler, 200, b'{"keys": []}')

    with local_server(respond) as (url, hits):
        with pytest.raises(FetchError):
            fetcher(url + "/start", 1024)
        assert hits == ["/start"]


def test_discovery_redirect_is_not_followed(clock: FakeClock, fetcher: HttpFetcher, issuer: Issuer) -> None:
    """A discovery URL redirecting to a JWKS-bearing document elsewhere yields no keys."""
    issuer.requests.clear()

    def respond(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 302, headers={"Location": issuer.url + DISCOVERY})

    with local_server(respond) as (url, hits):
        store = KeyStore(DiscoverySource(url, url + DISCOVERY, fetcher), TTL, COOLDOWN, clock=clock)
        with idp_unavailable():
            store.candidates(None)
        assert hits == [DISCOVERY]
    assert issuer.requests == []


@pytest.mark.parametrize("status", [204, 404, 500, 503])
def test_fetcher_refuses_non_200(fetcher: HttpFetcher, status: int) -> None:
    body = b"" if status == 204 else b'{"keys": []}'
    with local_server(lambda h: send(h, status, body)) as (url, _), pytest.raises(FetchError):
        fetcher(url + "/x", 1024)


def test_fetcher_size_cap_with_content_length(fetcher: HttpFetcher) -> None:
    body = b"x" * 1000
    with local_server(lambda h: send(h, 200, body)) as (url, _):
        assert fetcher(url + "/x", 1000) == body
        with pytest.raises(FetchError):
            fetcher(url + "/x", 999)


def test_fetcher_size_cap_without_content_length(fetcher: HttpFetcher) -> None:
    """A hostile endpoint streaming without a length is cut off near the cap, not read to the end (64 MiB)."""
    chunk = b"x" * 65536
    sent: list[int] = []
    done = threading.Event()

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for _ in range(1024):
                handler.wfile.write(chunk)
                sent.append(len(chunk))
        finally:
            done.set()

    with local_server(respond) as (url, _):
        with pytest.raises(FetchError):
            fetcher(url + "/x", JWKS_MAX_BYTES)
        assert done.wait(10)
    assert sum(sent) < 32 * 1024 * 1024  # the client hung up long before the end (socket buffers aside)


def test_oversized_jwks_is_idp_unavailable(clock: FakeClock, fetcher: HttpFetcher, issuer: Issuer) -> None:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        base = f"http://127.0.0.1:{handler.server.server_address[1]}"
        if handler.path == DISCOVERY:
            send(handler, 200, json.dumps({"issuer": base, "jwks_uri": base + JWKS}).encode())
        else:
            jwks = issuer.jwks()
            jwks["keys"] += [{"kty": "oct", "k": "x" * 1000}] * 300  # valid keys, padded past 256 KiB
            send(handler, 200, json.dumps(jwks).encode())

    with local_server(respond) as (url, hits):
        store = KeyStore(DiscoverySource(url, url + DISCOVERY, fetcher), TTL, COOLDOWN, clock=clock)
        with idp_unavailable():
            store.candidates(None)
        assert hits == [DISCOVERY, JWKS]


@contextmanager
def slow_server(delay_s: float, body: bytes) -> Iterator[tuple[str, list[str]]]:
    """Answers `body` after `delay_s`; released at teardown so no thread lingers."""
    release = threading.Event()

    def respond(handler: BaseHTTPRequestHandler) -> None:
        release.wait(delay_s)
        send(handler, 200, body)

    with local_server(respond) as (url, hits):
        try:
            yield url, hits
        finally:
            release.set()


def test_fetcher_timeout_is_honoured() -> None:
    """The server would answer a valid body after 3 s; a 0.5 s fetcher gives up first."""
    with slow_server(3.0, b'{"keys": []}') as (url, hits):
        with pytest.raises(FetchError):
            HttpFetcher(0.5)(url + "/slow", 1024)
        assert hits == ["/slow"]


def test_configured_timeout_reaches_the_handler(issuer: Issuer, make_interceptor: Callable[..., Any]) -> None:
    """JWKS_HTTP_TIMEOUT_SECONDS=0.5 against an issuer that answers (correctly) after 2.5 s: 503, not a hang."""
    release = threading.Event()

    def respond(handler: BaseHTTPRequestHandler) -> None:
        release.wait(2.5)
        base = f"http://127.0.0.1:{handler.server.server_address[1]}"
        doc = {"issuer": base, "jwks_uri": base + JWKS} if handler.path == DISCOVERY else issuer.jwks()
        send(handler, 200, json.dumps(doc).encode())

    with local_server(respond) as (url, hits):
        try:
            interceptor = make_interceptor(TELEPORT_ISSUER=url, JWKS_HTTP_TIMEOUT_SECONDS="0.5")
            status, body = response_of(interceptor.handle(request_event(rpc("tools/list"), issuer.mint(iss=url))))
        finally:
            release.set()
        assert status == 503
        assert "identity provider unavailable" in body["error"]["message"]
        assert hits == [DISCOVERY]


def test_fetcher_timeout_bounds_a_trickling_response() -> None:
    release = threading.Event()
    body = b'{"keys": []}'

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:  # 12 bytes, one every 0.2 s: 2.4 s in all, never 0.5 s of silence
            if release.wait(0.2):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    with local_server(respond) as (url, _):
        try:
            with pytest.raises(FetchError):
                HttpFetcher(0.5)(url + "/drip", 1024)
        finally:
            release.set()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/.well-known/openid-configuration",
        "http://teleport.example.com/.well-known/jwks-oidc",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/jwks",
        "http://127.0.0.1.nip.io/jwks",
        "http://localhost.example.com/jwks",
        "file:///etc/passwd",
        "ftp://127.0.0.1/jwks",
        "gopher://127.0.0.1:70/_",
        "//example.com/jwks",
        "http:///jwks",
        "example.com/jwks",
    ],
)
def test_fetcher_refuses_plain_http_off_loopback_without_touching_the_network(
    fetcher: HttpFetcher, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    attempts: list[Any] = []

    def no_network(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[:1])
        raise AssertionError("network used for a URL that must be refused up front")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(FetchError):
        fetcher(url, 1024)
    assert attempts == []


def test_discovery_source_with_plain_http_issuer_never_connects(
    fetcher: HttpFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Any] = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: attempts.append(a))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a))
    source = DiscoverySource("http://example.com", "http://example.com" + DISCOVERY, fetcher)
    store = KeyStore(source, TTL, COOLDOWN, clock=FakeClock())
    with idp_unavailable():
        store.candidates(None)
    assert attempts == []


def test_fetcher_ignores_proxy_environment(issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    with local_server(lambda h: send(h, 502)) as (proxy_url, proxy_hits):
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy_url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        issuer.requests.clear()
        fetched = HttpFetcher(2.0)(issuer.url + JWKS, JWKS_MAX_BYTES)
        assert json.loads(fetched) == issuer.jwks()
        assert proxy_hits == []
    assert issuer.requests == [JWKS]


# ---------------------------------------------------------------------------------------------------------------
# pinned JWKS (no network at all)


def test_pinned_jwks_as_json_text_needs_no_http(issuer: Issuer, make_interceptor: Callable[..., Any]) -> None:
    interceptor = make_interceptor(TELEPORT_JWKS=json.dumps(issuer.jwks()))
    issuer.requests.clear()
    assert forwarded(interceptor.handle(request_event(rpc("tools/list"), issuer.mint())))
    status, body = response_of(interceptor.handle(request_event(rpc("tools/list"), issuer.mint(key=new_key()))))
    assert (status, "(reason: signature_invalid)" in body["error"]["message"]) == (401, True)
    assert issuer.requests == []


def test_pinned_jwks_as_file_path_needs_no_http(
    issuer: Issuer, make_interceptor: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "teleport-jwks.json"
    path.write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    interceptor = make_interceptor(TELEPORT_JWKS=str(path))
    issuer.requests.clear()
    assert forwarded(interceptor.handle(request_event(rpc("tools/list"), issuer.mint())))
    issuer.down = True  # irrelevant: nothing is fetched
    assert forwarded(interceptor.handle(request_event(rpc("tools/list"), issuer.mint(user="bob"))))
    assert issuer.requests == []


def test_pinned_jwks_holding_both_rotation_keys(issuer: Issuer, clock: FakeClock) -> None:
    old = issuer.rotate()
    store = KeyStore(PinnedSource(json.dumps(issuer.jwks())), TTL, COOLDOWN, clock=clock)
    verifier = TokenVerifier(issuer.url, issuer.audience, store, leeway_s=30, cache_size=0)
    issuer.requests.clear()
    assert verifier.verify(issuer.mint(key=old)).user == "alice"
    assert verifier.verify(issuer.mint()).user == "alice"
    assert issuer.requests == []


def test_pinned_jwks_without_usable_keys_is_idp_unavailable(clock: FakeClock) -> None:
    store = KeyStore(PinnedSource('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'), TTL, COOLDOWN, clock=clock)
    with idp_unavailable():
        store.candidates(None)


# ---------------------------------------------------------------------------------------------------------------
# parse_jwks


@pytest.fixture(scope="module")
def weak_key() -> rsa.RSAPrivateKey:
    return new_key(1024)


def test_parse_jwks_keeps_only_rs256_signing_keys_of_2048_bits(
    other_key: rsa.RSAPrivateKey, weak_key: rsa.RSAPrivateKey
) -> None:
    good = public_jwk(other_key)
    bare = {k: v for k, v in public_jwk(other_key).items() if k not in {"use", "alg", "kid"}}
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    document = {
        "keys": [
            {**ec_jwk, "kid": "ec", "use": "sig", "alg": "ES256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "okp"},
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "rs512", "alg": "RS512"},
            {**good, "kid": "ps256", "alg": "PS256"},
            {**good, "kid": "hs256", "alg": "HS256"},
            {**public_jwk(weak_key), "kid": "weak"},
            {**good, "kid": "broken", "n": "AQAB!"},
            {"kty": "RSA", "kid": "no-modulus", "e": "AQAB"},
            "not-an-object",
            None,
            {**good, "kid": "good"},
            bare,
        ]
    }
    keys = parse_jwks(document)
    assert [k.kid for k in keys] == ["good", None]
    assert all(k.key.key_size >= 2048 for k in keys)
    assert keys[0].key.public_numbers() == other_key.public_key().public_numbers()


@pytest.mark.parametrize("document", [[], "keys", None, {}, {"keys": {}}, {"keys": "x"}, {"jwks": []}])
def test_parse_jwks_rejects_documents_that_are_not_jwks(document: Any) -> None:
    with pytest.raises(FetchError):
        parse_jwks(document)


def test_parse_jwks_non_string_kid_becomes_none(other_key: rsa.RSAPrivateKey) -> None:
    keys = parse_jwks({"keys": [{**public_jwk(other_key), "kid": 7}]})
    assert [k.kid for k in keys] == [None]
