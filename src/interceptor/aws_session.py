"""Per-human AWS sessions: `sts:AssumeRole` with SourceIdentity, session name and tags, cached per container.

boto3 is imported and the STS client created on first use only, so cold starts without this feature do not
pay for it. Credentials are reused for the same (role, user, roles, tags) until shortly before they expire.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from interceptor import sts_names
from interceptor.errors import Refusal
from interceptor.lru import LRUDict
from interceptor.reasons import Reason
from interceptor.tokens import Identity

REFRESH_MARGIN_S = 300
CACHE_SIZE = 1024


@dataclass(frozen=True)
class AwsSession:
    """Temporary credentials minted for one human, and what CloudTrail will show for them."""

    role_arn: str
    session_name: str
    source_identity: str
    access_key_id: str
    secret_access_key: str = field(repr=False)  # never in a repr that could reach a log line
    session_token: str = field(repr=False)
    expiration: datetime

    @cached_property
    def expires_at(self) -> float:
        return self.expiration.timestamp()

    @cached_property
    def argument(self) -> dict[str, str]:
        """The value handed to the tool under `_teleport_aws_session` (built once per session)."""
        return {
            "accessKeyId": self.access_key_id,
            "secretAccessKey": self.secret_access_key,
            "sessionToken": self.session_token,
            "expiration": self.expiration.isoformat(),
            "roleArn": self.role_arn,
            "sourceIdentity": self.source_identity,
            "sessionName": self.session_name,
        }

    @cached_property
    def audit_fields(self) -> dict[str, str]:
        """What the audit record may show (no secrets)."""
        return {
            "aws_role_arn": self.role_arn,
            "aws_session_name": self.session_name,
            "aws_source_identity": self.source_identity,
            "aws_session_expiration": self.expiration.isoformat(),
        }


class SessionBroker:
    """Mints and caches sessions on one role for the tools matching `tool_patterns` (fnmatch globs)."""

    def __init__(
        self,
        role_arn: str,
        duration_s: int,
        tool_patterns: Sequence[str],
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._role_arn = role_arn
        self._duration_s = duration_s
        self._patterns = tuple(tool_patterns)
        self._client_factory = client_factory or _sts_client
        self._client: Any = None
        self._clock = clock
        self._cache: LRUDict[tuple[Any, ...], AwsSession] = LRUDict(CACHE_SIZE)
        self._lock = threading.Lock()

    def wants(self, tool: str) -> bool:
        """Whether calls to `tool` receive an AWS session."""
        return any(fnmatch.fnmatchcase(tool, p) for p in self._patterns)

    def session_for(self, identity: Identity, tool: str, agent: str | None = None) -> AwsSession:
        """A cached or freshly minted session for this human and tool (through `agent`, the SPIFFE ID of the agent
        acting for them, tagged `teleport-agent`; the human stays the SourceIdentity and session name); raises
        `Refusal` (`session_unavailable`: STS refused or could not be reached; the detail is an AWS error code,
        never a secret).

        The cache key is what the session name and tags are computed from (user, roles, tool, cluster, agent),
        so a warm hit skips the mapping work too.
        """
        key = (identity.user, identity.roles, tool, identity.issuer, agent)
        cached = self._cache.get(key)
        if cached is not None and cached.expires_at - self._clock() > REFRESH_MARGIN_S:
            return cached
        name = sts_names.session_name(identity.user)
        try:
            tags = sts_names.session_tags(identity.user, identity.roles, tool, identity.issuer, agent)
        except ValueError as exc:
            raise Refusal(Reason.SESSION_UNAVAILABLE, str(exc)) from None
        session = self._assume(name, tags)
        self._cache[key] = session
        return session

    def _assume(self, name: str, tags: list[dict[str, str]]) -> AwsSession:
        try:
            with self._lock:
                if self._client is None:
                    self._client = self._client_factory()
            response = self._client.assume_role(
                RoleArn=self._role_arn,
                RoleSessionName=name,
                SourceIdentity=name,
                DurationSeconds=self._duration_s,
                Tags=tags,
                TransitiveTagKeys=[t["Key"] for t in tags],
            )
        except Exception as exc:  # botocore ClientError, endpoint and credential errors alike
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise Refusal(Reason.SESSION_UNAVAILABLE, f"sts:AssumeRole failed: {code}") from None
        credentials = response["Credentials"]
        return AwsSession(
            role_arn=self._role_arn,
            session_name=name,
            source_identity=name,
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
            expiration=credentials["Expiration"],
        )


def _sts_client() -> Any:
    import boto3  # noqa: PLC0415 (deferred: ~200 ms of cold start, only for deployments that use sessions)

    return boto3.client("sts")
