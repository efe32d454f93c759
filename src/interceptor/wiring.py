"""Wiring: settings -> keys, verifier, policy engine, tool lister, session broker, auditor -> `Interceptor`,
built once per container.

A bad setting or policy set does not crash the init: the container comes up as a `BrokenInterceptor` that refuses
every request with a message saying why (`misconfigured`, `policy_set_invalid`), while the log names the exact
problems. That is decided here, once: a serving `Interceptor` always has its keys, policies and lister.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools import Logger

from interceptor.agents import ALGORITHMS as AGENT_ALGORITHMS
from interceptor.agents import AgentCredentials, AgentVerifier
from interceptor.audit import Auditor
from interceptor.aws_session import SessionBroker
from interceptor.config import AgentSettings, Mode, Settings
from interceptor.errors import Problems
from interceptor.keys import (
    RS256,
    DiscoverySource,
    HttpFetcher,
    KeySource,
    KeyStore,
    PinnedSource,
    describe_algorithms,
)
from interceptor.listing import ToolLister
from interceptor.logs import SERVICE
from interceptor.pipeline import BrokenInterceptor, Handler, Interceptor
from interceptor.policy import PolicyEngine, PolicySource, policy_set_digest
from interceptor.reasons import Reason
from interceptor.tokens import TokenVerifier

logger = Logger(service=SERVICE)

_LOGGED = {
    Reason.MISCONFIGURED: "interceptor misconfigured; refusing every request",
    Reason.POLICY_SET_INVALID: "policy set invalid; refusing every request",
}


def build(env: Mapping[str, str], auditor: Auditor | None = None) -> Handler:
    """Wire the pipeline from environment settings; never raises: a failed init still answers every request.
    Audit lines go to stdout unless another `auditor` is given (tests and tools collect the records)."""
    auditor = auditor or Auditor()
    mode = Mode.ENFORCE
    try:
        settings = Settings.from_env(env)
        mode = settings.mode
        return _build(settings, auditor)
    except Problems as exc:
        logger.error(_LOGGED.get(exc.reason, "interceptor cannot serve"), extra={"problems": exc.problems})
        return BrokenInterceptor(exc.reason, mode, auditor)
    except Exception as exc:  # anything unforeseen at cold start must become a refusal, not an init crash
        logger.exception("interceptor init failed; refusing every request")
        logger.error(_LOGGED[Reason.MISCONFIGURED], extra={"problems": [f"init failed: {type(exc).__name__}"]})
        return BrokenInterceptor(Reason.MISCONFIGURED, Mode.ENFORCE, auditor)


def _build(settings: Settings, auditor: Auditor) -> Interceptor:
    """The serving interceptor; raises `Problems` (settings, policy set) when the container cannot serve."""
    fetch = HttpFetcher(settings.http_timeout_s)
    keys = _key_store(settings, settings.issuer, settings.discovery_url, settings.pinned_jwks, fetch)
    verifier = TokenVerifier(
        settings.issuer,
        settings.audience,
        keys,
        settings.leeway_s,
        settings.token_cache_size,
        actor_claims=settings.agents is not None,
    )
    policies = PolicySource.read(settings.policy_dir)
    engine = PolicyEngine(policies)
    lister = ToolLister(engine, policy_set_digest(policies), known_context=settings.agents is not None)
    if engine.bundle_status == "stale":
        logger.warning("policy bundle does not match the policy files; validated them at init (slower start)")
    logger.info(
        "policies loaded",
        extra={
            "files": list(engine.files),
            "tools": len(engine.tools),
            "policy_set": lister.policy_set,
            "bundle": engine.bundle_status,
        },
    )
    sessions = None
    if settings.session_role_arn is not None:
        sessions = SessionBroker(settings.session_role_arn, settings.session_duration_s, settings.session_tools)
    agents = None if settings.agents is None else _agents(settings, settings.agents, engine, fetch)
    return Interceptor(
        verifier,
        engine,
        settings.mode,
        auditor,
        sessions,
        lister=lister,
        forward_uncovered=settings.forward_uncovered_methods,
        agents=agents,
    )


def _key_store(
    settings: Settings,
    issuer: str,
    discovery_url: str,
    pinned: str | None,
    fetch: HttpFetcher,
    agent: bool = False,
) -> KeyStore:
    """One token kind's keys: its pinned JWKS (which must hold a usable key) or its issuer's discovery."""
    algorithms, prefix = (AGENT_ALGORITHMS, "AGENT") if agent else (frozenset({RS256}), "TELEPORT")
    source: KeySource
    if pinned is not None:
        source = PinnedSource(pinned, algorithms, f"{prefix}_JWKS")
        if not source.load():
            raise Problems([f"{prefix}_JWKS has no usable key ({describe_algorithms(algorithms)}, use sig)"])
    else:
        source = DiscoverySource(issuer, discovery_url, fetch, algorithms, f"{prefix}_ISSUER")
    label = "agent JWKS" if agent else "JWKS"
    return KeyStore(source, settings.jwks_ttl_s, settings.jwks_cooldown_s, label=label)


def _agents(settings: Settings, agents: AgentSettings, engine: PolicyEngine, fetch: HttpFetcher) -> AgentCredentials:
    """AGENT_MODE optional or required: the agent token's own key store and verifier, over a policy schema that
    knows agents."""
    if not engine.compiled.agent_callable:
        raise Problems(
            [
                f"AGENT_MODE={agents.mode.value} needs a policy schema whose tools apply to Teleport::Agent "
                "principals: regenerate it with `teleport-policy schema`"
            ]
        )
    keys = _key_store(settings, agents.issuer, agents.discovery_url, agents.pinned_jwks, fetch, agent=True)
    verifier = AgentVerifier(agents, keys, settings.leeway_s, settings.token_cache_size)
    logger.info(
        "agent credentials on",
        extra={"agent_mode": agents.mode.value, "agent_issuer": agents.issuer, "patterns": len(agents.id_patterns)},
    )
    return AgentCredentials(agents, verifier)
