"""Shared fixtures: a real Teleport-like OIDC issuer on 127.0.0.1 and interceptors wired to it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.issuer import Issuer
from devtools.jws import FakeClock
from interceptor.app import build
from interceptor.audit import Auditor, stdout_sink
from interceptor.keys import HttpFetcher
from interceptor.pipeline import Interceptor


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and a region, and nothing that could point boto3 at a real account or endpoint."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "BOTO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def served_issuer() -> Iterator[Issuer]:
    with Issuer().serve() as issuer:
        yield issuer


@pytest.fixture
def issuer(served_issuer: Issuer) -> Iterator[Issuer]:
    """The served issuer, reset to one fresh signing key and up, for each test."""
    original = served_issuer.signing_key
    yield served_issuer
    served_issuer.signing_key = original
    served_issuer.published = [original]
    served_issuer.down = False
    served_issuer.requests.clear()
    served_issuer.discovery_overrides.clear()
    served_issuer.workload.use("ES256")  # the Workload Identity issuer: one fresh key, up, no overrides


@pytest.fixture(scope="session")
def fetcher() -> HttpFetcher:
    """One fetcher: building its opener loads the system CA bundle, which is slow."""
    return HttpFetcher(2.0)


@pytest.fixture
def clock() -> FakeClock:
    """A settable clock for key stores and verifiers."""
    return FakeClock(1000.0)


@pytest.fixture
def env(issuer: Issuer) -> dict[str, str]:
    return {"TELEPORT_ISSUER": issuer.url, "TELEPORT_AUDIENCE": issuer.audience}


@pytest.fixture
def audit_log() -> list[str]:
    """Every audit line written by interceptors from `make_interceptor`, as the exact JSON text."""
    return []


@pytest.fixture
def make_interceptor(env: dict[str, str], audit_log: list[str]) -> Callable[..., Interceptor]:
    """Build an interceptor exactly as the Lambda does at cold start, with env overrides. Its audit lines are
    collected in `audit_log` and still written to stdout, so leak checks over the output see them too."""

    def sink(line: str) -> None:
        audit_log.append(line)
        stdout_sink(line)

    def make(**overrides: str) -> Interceptor:
        return build({**env, **overrides}, Auditor(sink))

    return make


@pytest.fixture
def interceptor(make_interceptor: Callable[..., Interceptor]) -> Interceptor:
    return make_interceptor()


@pytest.fixture
def audit_lines(audit_log: list[str]) -> Callable[[], list[dict[str, Any]]]:
    """The audit records written so far (the `audit` object of each line)."""
    return lambda: [json.loads(line)["audit"] for line in audit_log]
