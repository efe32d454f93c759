"""Stamp the verified identity into a forwarded `tools/call`, after removing anything the caller sent
under the reserved `_teleport_` prefix (never trusted, never forwarded); every other forwarded request loses
those names too, whatever its method, so no server ever reads a caller-sent identity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interceptor.agents import Agent
from interceptor.tokens import Identity
from tool_identity import (
    AGENT_ARG,
    IDENTITY_META_KEY,
    ROLES_ARG,
    USER_ARG,
    identity_meta,
    is_identity_meta_key,
    is_reserved,
    tool_arguments,
)


def split_reserved(
    arguments: Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """The caller's arguments without reserved names (the same object when it holds none: the common case; it
    is never modified), and what the caller tried to send that only the interceptor may: reserved names in the
    arguments, and those or `IDENTITY_META_KEY` (any case) in `params._meta` as `_meta.<name>` (all are removed
    before forwarding)."""
    meta = params.get("_meta") if params is not None else None
    spoofed = _spoofed(arguments, meta)
    return (tool_arguments(arguments) if spoofed else arguments), spoofed


def _spoofed(arguments: Any, meta: Any) -> tuple[str, ...]:
    names = [k for k in arguments if is_reserved(k)] if isinstance(arguments, dict) else []
    names.sort()
    if isinstance(meta, dict):
        names.extend(sorted(f"_meta.{k}" for k in meta if _interceptor_only(k)))
    return tuple(names)


def _interceptor_only(key: str) -> bool:
    return is_reserved(key) or is_identity_meta_key(key)


def stamp(
    body: Mapping[str, Any],
    clean_arguments: Mapping[str, Any],
    identity: Identity,
    extra: Mapping[str, Any] | None = None,
    agent: Agent | None = None,
) -> dict[str, Any]:
    """A copy of `body` whose arguments are `clean_arguments` plus the identity (the verified `agent` too, on a
    delegated call; and `extra` reserved values), and whose `params._meta` (which MCP servers read; a Lambda
    target sees only the arguments) holds no caller-sent reserved name or `IDENTITY_META_KEY` in any case, but
    the identity under `IDENTITY_META_KEY`; its other keys (e.g. `io.modelcontextprotocol/protocolVersion`) and
    the rest of the body are kept and the input is not mutated."""
    arguments = {**clean_arguments, USER_ARG: identity.user, ROLES_ARG: list(identity.roles)}
    spiffe_id = agent.spiffe_id if agent is not None else None
    if spiffe_id is not None:
        arguments[AGENT_ARG] = spiffe_id
    if extra:
        arguments.update(extra)
    params = {**body["params"], "arguments": arguments}
    meta = params.get("_meta")
    kept = {k: v for k, v in meta.items() if not _interceptor_only(k)} if isinstance(meta, dict) else {}
    params["_meta"] = {**kept, IDENTITY_META_KEY: identity_meta(identity.user, identity.roles, spiffe_id)}
    return {**body, "params": params}


def without_reserved(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """`body` for a forwarded request of any other method, without what only the interceptor may send: reserved
    names in `params.arguments`, and those or `IDENTITY_META_KEY` (any case) in `params._meta`. Also the names
    removed, as `split_reserved` lists them. The same object when the caller sent none (the common case)."""
    params = body.get("params")
    if not isinstance(params, Mapping):
        return body, ()
    arguments, meta = params.get("arguments"), params.get("_meta")
    spoofed = _spoofed(arguments, meta)
    if not spoofed:
        return body, ()
    cleaned = dict(params)
    if isinstance(arguments, Mapping):
        cleaned["arguments"] = tool_arguments(arguments)
    if isinstance(meta, Mapping):
        cleaned["_meta"] = {k: v for k, v in meta.items() if not _interceptor_only(k)}
    return {**body, "params": cleaned}, spoofed
