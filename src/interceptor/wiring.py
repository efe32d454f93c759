"""Wiring: settings -> keys, verifier, policy engine, tool lister, session broker, auditor -> `Interceptor`,
built once per container.

A bad setting or policy set does not crash the init: the container comes up as a `BrokenInterceptor` that refuses
every request with a message saying why (`misconfigured`, `policy_set_invalid`), while the log names the exact
problems. That is decided here, once: a serving `Interceptor` always has its keys, policies and lister.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools import Logger

from interceptor.audit import Auditor
from interceptor.aws_session import SessionBroker
from interceptor.config import Mode, Settings
from interceptor.errors import Problems
from interceptor.keys import DiscoverySource, HttpFetcher, KeySource, KeyStore, PinnedSource
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
    source: KeySource
    if settings.pinned_jwks is not None:
        source = PinnedSource(settings.pinned_jwks)
        if not source.load():
            raise Problems(["TELEPORT_JWKS has no usable key (RSA, use sig, RS256, 2048+ bits)"])
    else:
        source = DiscoverySource(settings.issuer, settings.discovery_url, HttpFetcher(settings.http_timeout_s))
    keys = KeyStore(source, settings.jwks_ttl_s, settings.jwks_cooldown_s)
    verifier = TokenVerifier(settings.issuer, settings.audience, keys, settings.leeway_s, settings.token_cache_size)
    policies = PolicySource.read(settings.policy_dir)
    engine = PolicyEngine(policies)
    lister = ToolLister(engine, policy_set_digest(policies))
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
    return Interceptor(
        verifier,
        engine,
        settings.mode,
        auditor,
        sessions,
        lister=lister,
        forward_uncovered=settings.forward_uncovered_methods,
    )
