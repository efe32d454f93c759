"""For tool authors: the verified caller the interceptor stamped into a tool's arguments.

A Lambda tool behind the gateway receives the `tools/call` arguments as its event. The interceptor removed
anything the agent sent under `_teleport_*` and set `_teleport_user`, `_teleport_roles`, `_teleport_agent` (the
verified SPIFFE ID of the agent acting for the human, on delegated calls only) and, for tools configured to get
one, `_teleport_aws_session` (short-lived credentials of an STS session in the human's name).

    caller = Caller.from_arguments(event)
    if caller.has_role("order-admin"): ...
    dynamodb = caller.boto3_session().resource("dynamodb")   # CloudTrail names caller.user

Trust these values only in a function that nothing but the gateway can invoke (its resource policy).

An MCP-server target (not a Lambda) receives the same identity in the request's `params._meta` under
`IDENTITY_META_KEY`: tools built with the official MCP SDK read it with `tool_identity.mcp_sdk.VerifiedCaller`,
others with `Caller.from_meta`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

RESERVED_PREFIX = "_teleport_"
USER_ARG = "_teleport_user"
ROLES_ARG = "_teleport_roles"
AGENT_ARG = "_teleport_agent"
SESSION_ARG = "_teleport_aws_session"
# Our reverse-DNS `_meta` key (not under a prefix MCP reserves: second label `modelcontextprotocol` or `mcp`).
# Its value is `{"user": str, "roles": [str, ...]}`, plus `"agent": "<spiffe id>"` on delegated calls; the
# interceptor removes any caller-sent value first.
IDENTITY_META_KEY = "sh.teleport/identity"
_SESSION_KEYS = ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")


class IdentityMissing(Exception):
    """The event does not carry what the interceptor stamps: the tool was not called through it."""


class SessionMissing(Exception):
    """No usable AWS session was handed to this tool (not configured for it, malformed, or expired)."""


@dataclass(frozen=True)
class Caller:
    """The human (or Machine ID bot) behind a tool call, and the agent acting for them when one proved itself
    (`agent`: its SPIFFE ID; None on calls without an agent)."""

    user: str
    roles: tuple[str, ...]
    aws_session: Mapping[str, str] | None = None
    agent: str | None = None

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> Caller:
        """Read the stamped identity; raise IdentityMissing when it is absent or malformed."""
        user, roles = arguments.get(USER_ARG), arguments.get(ROLES_ARG)
        if not isinstance(user, str) or not user:
            raise IdentityMissing("no _teleport_user: call this tool through the gateway and its interceptor")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise IdentityMissing("no _teleport_roles list: call this tool through the gateway and its interceptor")
        session, agent = arguments.get(SESSION_ARG), arguments.get(AGENT_ARG)
        return cls(
            user,
            tuple(roles),
            session if isinstance(session, Mapping) else None,
            agent if isinstance(agent, str) and agent else None,
        )

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> Caller:
        """Read the identity an MCP-server target receives in `params._meta`; raise IdentityMissing when it is
        absent or malformed. Only the exact key counts: the interceptor removed every other spelling."""
        stamped = meta.get(IDENTITY_META_KEY) if meta is not None else None
        user = stamped.get("user") if isinstance(stamped, Mapping) else None
        roles = stamped.get("roles") if isinstance(stamped, Mapping) else None
        if not isinstance(user, str) or not user or not isinstance(roles, list):
            raise IdentityMissing(
                f"no {IDENTITY_META_KEY} in _meta: call this tool through the gateway and its interceptor"
            )
        if not all(isinstance(r, str) for r in roles):
            raise IdentityMissing(f"{IDENTITY_META_KEY} roles are not a list of strings")
        agent = stamped.get("agent") if isinstance(stamped, Mapping) else None
        return cls(user, tuple(roles), agent=agent if isinstance(agent, str) and agent else None)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def boto3_session(self, region_name: str | None = None, now: datetime | None = None) -> Any:
        """A boto3 Session on the handed credentials; raise SessionMissing when absent or expired."""
        session = self.aws_session
        if session is None or not all(isinstance(session.get(k), str) for k in _SESSION_KEYS):
            raise SessionMissing("no AWS session was handed to this tool: add it to the interceptor's SESSION_TOOLS")
        try:
            expiration = datetime.fromisoformat(session["expiration"])
        except ValueError:
            raise SessionMissing("the AWS session's expiration is not a timestamp") from None
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        if expiration <= (now or datetime.now(UTC)):
            raise SessionMissing("the AWS session has expired: retry the call to get a fresh one")
        import boto3  # noqa: PLC0415 (tools that never touch AWS do not pay for the import)

        return boto3.Session(
            aws_access_key_id=session["accessKeyId"],
            aws_secret_access_key=session["secretAccessKey"],
            aws_session_token=session["sessionToken"],
            region_name=region_name,
        )


def tool_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's own arguments, without the reserved identity values."""
    return {k: v for k, v in arguments.items() if not is_reserved(k)}


def identity_meta(user: str, roles: Iterable[str], agent: str | None = None) -> dict[str, Any]:
    """The value stamped under `IDENTITY_META_KEY`, the one shape `Caller.from_meta` reads (an AWS session is
    handed in the arguments only); `agent` only on delegated calls."""
    value: dict[str, Any] = {"user": user, "roles": list(roles)}
    if agent is not None:
        value["agent"] = agent
    return value


def is_identity_meta_key(name: str) -> bool:
    """`IDENTITY_META_KEY` in any letter case: a caller-sent value under it is never trusted or forwarded."""
    return name.lower() == IDENTITY_META_KEY


def is_reserved(name: str) -> bool:
    """Names under `_teleport_`, in any letter case, belong to the interceptor: never to the agent."""
    return name[:1] == "_" and name[: len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX
