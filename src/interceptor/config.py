"""Settings from environment variables, validated once at cold start.

Every problem is collected (not just the first) so one deploy fixes them all; values are never echoed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

from interceptor import spiffe
from interceptor.errors import Problems
from interceptor.methods import UNCOVERED

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 token)
BUNDLED_POLICY_DIR = Path(__file__).resolve().parent / "policies"
DEFAULT_AGENT_HEADER = "X-Teleport-Agent-Token"
WORKLOAD_IDENTITY_PATH = "/workload-identity"  # where Teleport's proxy publishes the Workload Identity issuer


class Mode(StrEnum):
    """`enforce` refuses what policy denies; `log_only` records the denial and forwards the call."""

    ENFORCE = "enforce"
    LOG_ONLY = "log_only"


class AgentMode(StrEnum):
    """`off`: no agent credential is read (today's behaviour); `optional`: verified and used when sent;
    `required`: every authenticated request must carry a valid one."""

    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True)
class AgentSettings:
    """The agent credential's settings (README "Agents"); present only when AGENT_MODE is not `off`."""

    mode: AgentMode
    issuer: str
    audience: str
    id_patterns: tuple[str, ...]
    header: str = DEFAULT_AGENT_HEADER
    pinned_jwks: str | None = None
    max_lifetime_s: int = 3600

    @property
    def discovery_url(self) -> str:
        """Where Teleport publishes the Workload Identity issuer's OIDC discovery document."""
        return self.issuer + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Settings:
    """Validated interceptor configuration (see the README's configuration table)."""

    issuer: str
    audience: str
    pinned_jwks: str | None = None
    policy_dir: Path = BUNDLED_POLICY_DIR
    mode: Mode = Mode.ENFORCE
    leeway_s: int = 30
    jwks_ttl_s: int = 3600
    jwks_cooldown_s: int = 30
    http_timeout_s: float = 3.0
    token_cache_size: int = 1024
    session_role_arn: str | None = None
    session_duration_s: int = 900
    session_tools: tuple[str, ...] = ()
    forward_uncovered_methods: frozenset[str] = frozenset()
    agents: AgentSettings | None = None  # AGENT_MODE optional or required

    @property
    def discovery_url(self) -> str:
        """Where Teleport publishes its OIDC discovery document."""
        return self.issuer + "/.well-known/openid-configuration"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate settings; raise `Problems` (`misconfigured`) listing every one."""
        problems: list[str] = []
        issuer = _issuer(env.get("TELEPORT_ISSUER", ""), problems)
        audience = env.get("TELEPORT_AUDIENCE", "").strip()
        if not audience:
            problems.append("TELEPORT_AUDIENCE is required (the Teleport MCP app URI, mcp+https://<gateway>/mcp)")
        elif any(c.isspace() for c in audience):
            problems.append("TELEPORT_AUDIENCE must not contain whitespace")
        pinned = _pinned_jwks(env.get("TELEPORT_JWKS", "").strip(), problems, "TELEPORT_JWKS")
        policy_dir = Path(env.get("POLICY_DIR") or BUNDLED_POLICY_DIR)
        if not policy_dir.is_dir():
            problems.append("POLICY_DIR is not a directory")
        mode_text = (env.get("ENFORCEMENT_MODE") or Mode.ENFORCE.value).strip().lower()
        if mode_text not in {m.value for m in Mode}:
            problems.append("ENFORCEMENT_MODE must be 'enforce' or 'log_only'")
        settings = cls(
            issuer=issuer,
            audience=audience,
            pinned_jwks=pinned,
            policy_dir=policy_dir,
            mode=Mode(mode_text) if mode_text in {m.value for m in Mode} else Mode.ENFORCE,
            leeway_s=int(_number(env, "CLOCK_LEEWAY_SECONDS", 30, 0, 300, problems)),
            jwks_ttl_s=int(_number(env, "JWKS_CACHE_TTL_SECONDS", 3600, 60, 86400, problems)),
            jwks_cooldown_s=int(_number(env, "JWKS_REFRESH_COOLDOWN_SECONDS", 30, 1, 3600, problems)),
            http_timeout_s=_number(env, "JWKS_HTTP_TIMEOUT_SECONDS", 3.0, 0.5, 10.0, problems, whole=False),
            token_cache_size=int(_number(env, "TOKEN_CACHE_SIZE", 1024, 0, 100_000, problems)),
            session_role_arn=_role_arn(env.get("SESSION_ROLE_ARN", "").strip(), problems),
            session_duration_s=int(_number(env, "SESSION_DURATION_SECONDS", 900, 900, 3600, problems)),
            session_tools=_patterns(
                env.get("SESSION_TOOLS", ""), bool(env.get("SESSION_ROLE_ARN", "").strip()), problems
            ),
            forward_uncovered_methods=_uncovered_methods(env.get("FORWARD_UNCOVERED_METHODS", ""), problems),
            agents=_agents(env, issuer, audience, problems),
        )
        if problems:
            raise Problems(problems)
        return settings


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback IPs, the only hosts allowed over plain http."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str) -> str | None:
    """Why `url` may not be fetched (None when it may): https only, plain http only to loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return None
    return "must use https (plain http only to a loopback address)"


def _issuer(raw: str, problems: list[str], name: str = "TELEPORT_ISSUER") -> str:
    issuer = raw.strip()
    if not issuer:
        problems.append(f"{name} is required (the Teleport proxy URL, e.g. https://teleport.example.com)")
        return issuer
    if (why := check_fetch_url(issuer)) is not None:
        problems.append(f"{name} {why}")
    parts = urlsplit(issuer)
    if parts.query or parts.fragment or parts.username or parts.password:
        problems.append(f"{name} must be a bare URL (no query, fragment or credentials)")
    if issuer.endswith("/"):
        problems.append(f"{name} must not end with '/': Teleport's iss claim has no trailing slash")
    if (port := _port(parts)) is not None and _DEFAULT_PORTS.get(parts.scheme) == port:
        problems.append(
            f"{name} must not name the default port :{port}: Teleport's iss claim "
            f"never carries it (write {urlunsplit(parts._replace(netloc=parts.netloc.rsplit(':', 1)[0]))})"
        )
    return issuer


def _agents(env: Mapping[str, str], issuer: str, audience: str, problems: list[str]) -> AgentSettings | None:
    """The agent settings, or None with AGENT_MODE `off` (the default), when no other AGENT_* setting is read."""
    mode_text = (env.get("AGENT_MODE") or AgentMode.OFF.value).strip().lower()
    if mode_text not in {m.value for m in AgentMode}:
        problems.append("AGENT_MODE must be 'off', 'optional' or 'required'")
        return None
    mode = AgentMode(mode_text)
    if mode is AgentMode.OFF:
        return None
    agent_issuer = issuer + WORKLOAD_IDENTITY_PATH
    if env.get("AGENT_ISSUER", "").strip():
        agent_issuer = _issuer(env["AGENT_ISSUER"], problems, "AGENT_ISSUER")
    if agent_issuer == issuer:
        problems.append(
            "AGENT_ISSUER must differ from TELEPORT_ISSUER: a user's ID token must never pass as an agent's"
        )
    agent_audience = env.get("AGENT_AUDIENCE", "").strip() or audience
    if any(c.isspace() for c in agent_audience):
        problems.append("AGENT_AUDIENCE must not contain whitespace")
    header = (env.get("AGENT_TOKEN_HEADER") or DEFAULT_AGENT_HEADER).strip()
    if not _HEADER_NAME.fullmatch(header) or header.lower() == "authorization" or header.lower().startswith("mcp-"):
        problems.append("AGENT_TOKEN_HEADER must be an HTTP header name other than Authorization and the Mcp-* headers")
    patterns = tuple(p.strip() for p in env.get("AGENT_ID_PATTERNS", "").split(",") if p.strip())
    if not patterns:
        problems.append(
            "AGENT_ID_PATTERNS is required with AGENT_MODE optional or required "
            "(comma-separated SPIFFE ID globs, e.g. spiffe://example.teleport.sh/agents/*)"
        )
    for number, pattern in enumerate(patterns, 1):
        if (why := spiffe.pattern_problem(pattern)) is not None:
            problems.append(f"AGENT_ID_PATTERNS pattern {number} {why}")
    return AgentSettings(
        mode=mode,
        issuer=agent_issuer,
        audience=agent_audience,
        id_patterns=patterns,
        header=header,
        pinned_jwks=_pinned_jwks(env.get("AGENT_JWKS", "").strip(), problems, "AGENT_JWKS"),
        max_lifetime_s=int(_number(env, "AGENT_MAX_LIFETIME_SECONDS", 3600, 60, 86400, problems)),
    )


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _port(parts: SplitResult) -> int | None:
    """The URL's explicit port, or None when it has none or an invalid one (reported by the URL check)."""
    try:
        return parts.port
    except ValueError:
        return None


def _pinned_jwks(raw: str, problems: list[str], name: str) -> str | None:
    if not raw:
        return None
    text = raw
    if not raw.startswith("{"):
        try:
            text = Path(raw).read_text(encoding="utf-8")
        except OSError:
            problems.append(f"{name} is neither JSON text nor a readable file")
            return None
    try:
        doc = json.loads(text)
    except ValueError:
        problems.append(f"{name} is not valid JSON")
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        problems.append(f"{name} must be a JWKS object with a 'keys' list")
        return None
    return text


def _role_arn(raw: str, problems: list[str]) -> str | None:
    if not raw:
        return None
    if not _ROLE_ARN.fullmatch(raw):
        problems.append("SESSION_ROLE_ARN must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return raw


def _patterns(raw: str, sessions_on: bool, problems: list[str]) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in raw.split(",") if p.strip())
    if sessions_on and not patterns:
        problems.append("SESSION_TOOLS is required with SESSION_ROLE_ARN (comma-separated tool globs, e.g. orders___*)")
    if not sessions_on and patterns:
        problems.append("SESSION_TOOLS is set but SESSION_ROLE_ARN is not")
    if any(not re.fullmatch(r"[A-Za-z0-9_*?\[\]!-]+", p) for p in patterns):
        problems.append("SESSION_TOOLS patterns may hold letters, digits, '_', '-' and the globs * ? [ ]")
    return patterns


def _uncovered_methods(raw: str, problems: list[str]) -> frozenset[str]:
    """The methods refused by default (README "Methods") that the administrator forwards without policy."""
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    if not names <= UNCOVERED:
        problems.append(
            "FORWARD_UNCOVERED_METHODS may only name methods refused by default: " + ", ".join(sorted(UNCOVERED))
        )
        return frozenset()
    return names


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    problems: list[str],
    *,
    whole: bool = True,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number")
        return default
    if whole and not value.is_integer():
        problems.append(f"{name} must be a whole number")
        return default
    if not low <= value <= high:
        problems.append(f"{name} must be between {low:g} and {high:g}")
        return default
    return value
