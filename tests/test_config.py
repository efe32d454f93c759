"""Settings from the environment, and what a misconfigured container answers: a refusal for every request
that says "misconfigured" without echoing any value, while the log names the exact problem."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.gateway import notification, request_event, rpc, tool_call
from devtools.issuer import Issuer, new_key, public_jwk
from interceptor.app import build
from interceptor.audit import Auditor
from interceptor.config import (
    BUNDLED_POLICY_DIR,
    Mode,
    Settings,
    check_fetch_url,
    is_loopback_host,
)
from interceptor.errors import Problems
from interceptor.reasons import Reason

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"
BASE = {"TELEPORT_ISSUER": "https://teleport.example.com", "TELEPORT_AUDIENCE": "mcp+https://gw.example.com/mcp"}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(Problems) as info:
        Settings.from_env(env)
    assert info.value.problems, "settings problems must name at least one"
    assert info.value.reason is Reason.MISCONFIGURED
    return info.value.problems


# ---------------------------------------------------------------------------------------------------------------
# Settings.from_env


def test_minimal_settings_and_safe_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.issuer == "https://teleport.example.com"
    assert settings.audience == "mcp+https://gw.example.com/mcp"
    assert settings.discovery_url == "https://teleport.example.com/.well-known/openid-configuration"
    assert settings.pinned_jwks is None
    assert settings.policy_dir == BUNDLED_POLICY_DIR
    assert settings.mode is Mode.ENFORCE
    assert settings.leeway_s == 30
    assert settings.jwks_ttl_s == 3600
    assert settings.jwks_cooldown_s == 30
    assert settings.http_timeout_s == 3.0
    assert settings.token_cache_size == 1024


def test_bundled_policies_are_the_repository_policies() -> None:
    assert BUNDLED_POLICY_DIR.is_dir()
    assert sorted(p.name for p in BUNDLED_POLICY_DIR.iterdir() if p.suffix in {".cedar", ".cedarschema"}) == sorted(
        p.name for p in REPO_POLICIES.iterdir() if p.suffix in {".cedar", ".cedarschema"}
    )


def test_surrounding_whitespace_is_ignored() -> None:
    settings = Settings.from_env(
        {"TELEPORT_ISSUER": " https://teleport.example.com\n", "TELEPORT_AUDIENCE": "  mcp+https://gw/mcp "}
    )
    assert settings.issuer == "https://teleport.example.com"
    assert settings.audience == "mcp+https://gw/mcp"


def test_every_problem_is_listed_at_once() -> None:
    problems = problems_of(
        {
            "ENFORCEMENT_MODE": "audit",
            "CLOCK_LEEWAY_SECONDS": "soon",
            "TOKEN_CACHE_SIZE": "-5",
            "TELEPORT_JWKS": "{broken",
            "POLICY_DIR": "/nonexistent/policies",
        }
    )
    text = "\n".join(problems)
    for name in (
        "TELEPORT_ISSUER",
        "TELEPORT_AUDIENCE",
        "ENFORCEMENT_MODE",
        "CLOCK_LEEWAY_SECONDS",
        "TOKEN_CACHE_SIZE",
        "TELEPORT_JWKS",
        "POLICY_DIR",
    ):
        assert name in text, f"{name} not reported in {problems}"
    assert len(problems) >= 7


@pytest.mark.parametrize("missing", ["TELEPORT_ISSUER", "TELEPORT_AUDIENCE"])
@pytest.mark.parametrize("how", ["absent", "empty", "blank"])
def test_required_settings(missing: str, how: str) -> None:
    env = dict(BASE)
    if how == "absent":
        del env[missing]
    else:
        env[missing] = "" if how == "empty" else "   "
    problems = problems_of(env)
    assert len(problems) == 1
    assert missing in problems[0]
    assert "required" in problems[0]


@pytest.mark.parametrize(
    "issuer",
    [
        "http://127.0.0.1:3080",
        "http://127.0.0.5:8080",
        "http://127.255.255.254",
        "http://localhost:3080",
        "http://LOCALHOST:3080",
        "http://[::1]:3080",
        "http://[::1]",
        "https://teleport.example.com",
        "https://teleport.example.com:3080",
        "https://teleport.example.com/sub/path",
        "https://10.0.0.1",
    ],
)
def test_allowed_issuers(issuer: str) -> None:
    assert Settings.from_env({**BASE, "TELEPORT_ISSUER": issuer}).issuer == issuer


@pytest.mark.parametrize(
    "issuer",
    [
        "http://teleport.example.com",
        "http://10.0.0.1",
        "http://0.0.0.0",
        "http://[::2]",
        "http://127.0.0.1.nip.io",
        "http://localhost.example.com",
        "http://169.254.169.254",
        "ftp://teleport.example.com",
        "teleport.example.com",
        "//teleport.example.com",
        "https://",
        "http://",
    ],
)
def test_refused_issuer_schemes_and_hosts(issuer: str) -> None:
    problems = problems_of({**BASE, "TELEPORT_ISSUER": issuer})
    assert any("TELEPORT_ISSUER" in p and "https" in p for p in problems), problems


@pytest.mark.parametrize(
    ("issuer", "expect"),
    [
        ("https://teleport.example.com/", "'/'"),
        ("http://127.0.0.1:3080/", "'/'"),
        ("https://teleport.example.com?x=1", "bare URL"),
        ("https://teleport.example.com#frag", "bare URL"),
        ("https://user:pw@teleport.example.com", "bare URL"),
        ("https://teleport.example.com:443", "default port :443"),
        ("https://[::1]:443/sub", "write https://[::1]/sub)"),
        ("http://127.0.0.1:80", "default port :80"),
    ],
)
def test_issuer_must_equal_teleports_iss(issuer: str, expect: str) -> None:
    problems = problems_of({**BASE, "TELEPORT_ISSUER": issuer})
    assert any("TELEPORT_ISSUER" in p and expect in p for p in problems), problems


def test_audience_with_inner_whitespace_is_refused() -> None:
    problems = problems_of({**BASE, "TELEPORT_AUDIENCE": "mcp+https://gw/mcp other"})
    assert problems == ["TELEPORT_AUDIENCE must not contain whitespace"]


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        (None, Mode.ENFORCE),
        ("", Mode.ENFORCE),
        ("enforce", Mode.ENFORCE),
        (" Enforce ", Mode.ENFORCE),
        ("log_only", Mode.LOG_ONLY),
        ("LOG_ONLY", Mode.LOG_ONLY),
    ],
)
def test_enforcement_mode(raw: str | None, mode: Mode) -> None:
    env = dict(BASE) if raw is None else {**BASE, "ENFORCEMENT_MODE": raw}
    assert Settings.from_env(env).mode is mode


@pytest.mark.parametrize("raw", ["audit", "log-only", "logonly", "off", "permissive", "enforce,log_only"])
def test_bad_enforcement_mode(raw: str) -> None:
    assert problems_of({**BASE, "ENFORCEMENT_MODE": raw}) == ["ENFORCEMENT_MODE must be 'enforce' or 'log_only'"]


NUMERIC = [
    # name, attribute, a good value, its parsed value, values out of bounds
    ("CLOCK_LEEWAY_SECONDS", "leeway_s", "0", 0, ["-1", "301", "1e9"]),
    ("JWKS_CACHE_TTL_SECONDS", "jwks_ttl_s", "600", 600, ["59", "86401", "0"]),
    ("JWKS_REFRESH_COOLDOWN_SECONDS", "jwks_cooldown_s", "5", 5, ["0", "3601"]),
    ("JWKS_HTTP_TIMEOUT_SECONDS", "http_timeout_s", "1.5", 1.5, ["0.1", "10.5", "-3"]),
    ("TOKEN_CACHE_SIZE", "token_cache_size", "0", 0, ["-1", "100001"]),
]


@pytest.mark.parametrize(("name", "attr", "good", "parsed", "_bad"), NUMERIC)
def test_numeric_setting_good_value(name: str, attr: str, good: str, parsed: float, _bad: list[str]) -> None:
    assert getattr(Settings.from_env({**BASE, name: good}), attr) == parsed


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, _, _, _, bad in NUMERIC for value in [*bad, "abc", "nan", "inf", "12s", "0x10"]],
)
def test_numeric_setting_bad_value(name: str, value: str) -> None:
    problems = problems_of({**BASE, name: value})
    assert len(problems) == 1
    assert problems[0] in {f"{name} must be a number", f"{name} must be a whole number"} or problems[0].startswith(
        f"{name} must be between "
    )


def test_pinned_jwks_as_json_text() -> None:
    jwks = json.dumps({"keys": [public_jwk(new_key())]})
    assert Settings.from_env({**BASE, "TELEPORT_JWKS": jwks}).pinned_jwks == jwks


def test_pinned_jwks_as_file(tmp_path: Path) -> None:
    jwks = json.dumps({"keys": [public_jwk(new_key())]})
    path = tmp_path / "jwks.json"
    path.write_text(jwks, encoding="utf-8")
    assert Settings.from_env({**BASE, "TELEPORT_JWKS": str(path)}).pinned_jwks == jwks


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ("{broken", "not valid JSON"),
        ('{"no": "keys"}', "'keys' list"),
        ('{"keys": {"a": 1}}', "'keys' list"),
        ("/nonexistent/dir/jwks.json", "neither JSON text nor a readable file"),
        ("[1, 2]", "neither JSON text nor a readable file"),
    ],
)
def test_bad_pinned_jwks(raw: str, expect: str) -> None:
    problems = problems_of({**BASE, "TELEPORT_JWKS": raw})
    assert len(problems) == 1
    assert problems[0].startswith("TELEPORT_JWKS")
    assert expect in problems[0]


def test_pinned_jwks_file_with_bad_content(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("not json at all", encoding="utf-8")
    assert problems_of({**BASE, "TELEPORT_JWKS": str(path)}) == ["TELEPORT_JWKS is not valid JSON"]


def test_policy_dir(tmp_path: Path) -> None:
    assert Settings.from_env({**BASE, "POLICY_DIR": str(tmp_path)}).policy_dir == tmp_path
    file = tmp_path / "file.cedar"
    file.write_text("", encoding="utf-8")
    assert problems_of({**BASE, "POLICY_DIR": str(file)}) == ["POLICY_DIR is not a directory"]
    assert problems_of({**BASE, "POLICY_DIR": str(tmp_path / "missing")}) == ["POLICY_DIR is not a directory"]


def test_problems_never_echo_values() -> None:
    secret = "zz-leak-marker"
    env = {
        "TELEPORT_ISSUER": f"http://{secret}.example.com/?{secret}",
        "TELEPORT_AUDIENCE": f"{secret} {secret}",
        "ENFORCEMENT_MODE": secret,
        "CLOCK_LEEWAY_SECONDS": secret,
        "TELEPORT_JWKS": "{" + secret,
        "POLICY_DIR": f"/{secret}",
    }
    problems = problems_of(env)
    assert len(problems) >= 6
    assert secret not in json.dumps(problems)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("::", False),
        ("localhost.example.com", False),
        ("127.0.0.1.example.com", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://teleport.example.com/.well-known/jwks-oidc", True),
        ("http://127.0.0.1:3080/.well-known/jwks-oidc", True),
        ("http://[::1]:3080/x", True),
        ("http://teleport.example.com/.well-known/jwks-oidc", False),
        ("file:///etc/passwd", False),
        ("https:///nohost", False),
        ("gopher://127.0.0.1/", False),
    ],
)
def test_check_fetch_url(url: str, ok: bool) -> None:
    assert (check_fetch_url(url) is None) is ok


# ---------------------------------------------------------------------------------------------------------------
# A misconfigured container refuses every request


def _requests(issuer: Issuer) -> list[dict[str, Any]]:
    token = issuer.mint(user="alice", roles=["developer"])
    return [
        request_event(tool_call("orders___get_order_tool", {"order_id": "42"}, rpc_id="call-1"), token),
        request_event(rpc("tools/list", rpc_id=7), token),
        request_event(rpc("initialize", {"protocolVersion": "2025-06-18"}, rpc_id=1), token),
        request_event(notification(), token),
        request_event(rpc("tools/list", rpc_id=8)),  # no token at all
    ]


MISCONFIGURATIONS: list[tuple[str, dict[str, str | None], str]] = [
    # case id, env changes (None removes the variable), marker that must never reach the response
    ("issuer-missing", {"TELEPORT_ISSUER": None}, ""),
    ("issuer-empty", {"TELEPORT_ISSUER": ""}, ""),
    ("audience-missing", {"TELEPORT_AUDIENCE": None}, ""),
    ("issuer-http-remote", {"TELEPORT_ISSUER": "http://zzmarker-idp.example.com"}, "zzmarker-idp"),
    ("issuer-trailing-slash", {"TELEPORT_ISSUER": "<issuer>/"}, "<issuer>"),
    ("mode-bad", {"ENFORCEMENT_MODE": "zzmarker-mode"}, "zzmarker-mode"),
    ("leeway-nan", {"CLOCK_LEEWAY_SECONDS": "zzmarker-leeway"}, "zzmarker-leeway"),
    ("ttl-out-of-range", {"JWKS_CACHE_TTL_SECONDS": "7777777"}, "7777777"),
    ("cooldown-negative", {"JWKS_REFRESH_COOLDOWN_SECONDS": "-4242"}, "4242"),
    ("timeout-too-long", {"JWKS_HTTP_TIMEOUT_SECONDS": "98765"}, "98765"),
    ("cache-too-big", {"TOKEN_CACHE_SIZE": "987654"}, "987654"),
    ("jwks-bad-json", {"TELEPORT_JWKS": "{zzmarker-jwks"}, "zzmarker-jwks"),
    ("jwks-no-keys", {"TELEPORT_JWKS": '{"zzmarker": []}'}, "zzmarker"),
    ("jwks-missing-file", {"TELEPORT_JWKS": "/zzmarker/jwks.json"}, "zzmarker"),
    ("policy-dir-missing", {"POLICY_DIR": "/zzmarker/policies"}, "zzmarker"),
    ("session-arn-bad", {"SESSION_ROLE_ARN": "zzmarker-not-an-arn", "SESSION_TOOLS": "orders___*"}, "zzmarker"),
    ("session-tools-without-arn", {"SESSION_TOOLS": "zzmarker___*"}, "zzmarker"),
]


@pytest.fixture
def build_with(env: dict[str, str], issuer: Issuer, audit_log: list[str]) -> Callable[[dict[str, str | None]], Any]:
    def make(changes: dict[str, str | None]) -> Any:
        merged: dict[str, str] = dict(env)
        for name, value in changes.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value.replace("<issuer>", issuer.url)
        return build(merged, Auditor(audit_log.append))

    return make


@pytest.mark.parametrize(
    ("changes", "marker"), [(c, m) for _, c, m in MISCONFIGURATIONS], ids=[i for i, _, _ in MISCONFIGURATIONS]
)
def test_misconfigured_container_refuses_every_request(
    changes: dict[str, str | None],
    marker: str,
    issuer: Issuer,
    build_with: Callable[[dict[str, str | None]], Any],
    audit_lines: Callable[[], list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    interceptor = build_with(changes)
    init_logs = [r for r in caplog.records if "misconfigured" in r.getMessage()]
    assert len(init_logs) == 1, "the cold start must log that the interceptor is misconfigured"
    problems = init_logs[0].__dict__["problems"]
    changed = set(changes)
    assert any(any(n in p for n in changed) for p in problems), f"log does not name {changed}: {problems}"

    marker = marker.replace("<issuer>", issuer.url)
    for event in _requests(issuer):
        expected_id = event["mcp"]["gatewayRequest"]["body"].get("id")
        out = interceptor.handle(event)
        assert out["interceptorOutputVersion"] == "1.0"
        assert "transformedGatewayRequest" not in out["mcp"], "a misconfigured container forwarded a request"
        response = out["mcp"]["transformedGatewayResponse"]
        assert response["statusCode"] == 500
        assert response["body"]["id"] == expected_id
        assert "id" in response["body"]
        text = response["body"]["error"]["message"]
        assert "misconfigured" in text
        assert "reason: misconfigured" in text
        if marker:
            assert marker not in json.dumps(out)
    records = audit_lines()
    assert len(records) == len(_requests(issuer))
    assert all(r["reason"] == "misconfigured" and r["forwarded"] is False for r in records)
    assert all(r["decision"] == "deny" for r in records)


def test_misconfigured_message_is_the_same_whatever_the_problem(
    issuer: Issuer, build_with: Callable[[dict[str, str | None]], Any]
) -> None:
    event = request_event(rpc("tools/list"), issuer.mint())
    answers = {json.dumps(build_with(changes).handle(event), sort_keys=True) for _, changes, _ in MISCONFIGURATIONS}
    assert len(answers) == 1


def test_pinned_jwks_file_needs_no_network(
    issuer: Issuer, make_interceptor: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    issuer.down = True
    interceptor = make_interceptor(TELEPORT_JWKS=str(path))
    out = interceptor.handle(request_event(rpc("tools/list"), issuer.mint(user="alice")))
    assert out["mcp"]["transformedGatewayRequest"]["body"] == rpc("tools/list")
    assert issuer.requests == []
    # a token from another key is still refused: the pinned keys are the only trust anchor
    other = issuer.mint(key=new_key(), user="alice")
    out = interceptor.handle(request_event(rpc("tools/list"), other))
    assert out["mcp"]["transformedGatewayResponse"]["statusCode"] == 401


def test_pinned_jwks_text_needs_no_network(issuer: Issuer, make_interceptor: Callable[..., Any]) -> None:
    issuer.down = True
    interceptor = make_interceptor(TELEPORT_JWKS=json.dumps(issuer.jwks()))
    out = interceptor.handle(request_event(rpc("ping"), issuer.mint(user="alice")))
    assert "transformedGatewayRequest" in out["mcp"]
    assert issuer.requests == []


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
        {"keys": ["<weak>"]},
    ],
    ids=["empty", "hmac", "rsa-1024"],
)
def test_pinned_jwks_without_usable_key_is_a_misconfiguration(
    jwks: dict[str, Any], issuer: Issuer, make_interceptor: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    if jwks["keys"] == ["<weak>"]:
        jwks = {"keys": [public_jwk(new_key(1024))]}
    caplog.set_level(logging.INFO)
    interceptor = make_interceptor(TELEPORT_JWKS=json.dumps(jwks))
    out = interceptor.handle(request_event(rpc("tools/list"), issuer.mint(user="alice")))
    response = out["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == 500
    assert "misconfigured" in response["body"]["error"]["message"]


def test_an_unforeseen_init_failure_refuses_every_request(
    monkeypatch: pytest.MonkeyPatch, issuer: Issuer, make_interceptor: Callable[..., Any]
) -> None:
    from interceptor import wiring

    def explode(*_: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(wiring, "PolicyEngine", explode)
    interceptor = make_interceptor()
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "1"}), issuer.mint()))
    response = out["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == 500
    assert "misconfigured" in response["body"]["error"]["message"]
    assert "boom" not in json.dumps(out)
