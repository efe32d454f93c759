"""Stamp the verified identity into a forwarded `tools/call`, after removing anything the caller sent
under the reserved `_teleport_` prefix (never trusted, never forwarded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interceptor.tokens import Identity
from tool_identity import ROLES_ARG, USER_ARG, is_reserved, tool_arguments


def split_reserved(
    arguments: Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The caller's arguments without reserved names, and the reserved names the caller tried to send: in the
    arguments as they are, in `params._meta` as `_meta.<name>` (both are removed before forwarding)."""
    spoofed = sorted(k for k in arguments if is_reserved(k))
    meta = params.get("_meta") if params is not None else None
    if isinstance(meta, Mapping):
        spoofed.extend(sorted(f"_meta.{k}" for k in meta if is_reserved(k)))
    return tool_arguments(arguments), tuple(spoofed)


def stamp(
    body: Mapping[str, Any],
    clean_arguments: Mapping[str, Any],
    identity: Identity,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of `body` whose arguments are `clean_arguments` plus the identity (and `extra` reserved
    values), and whose `params._meta` (which MCP servers also read) holds no reserved name; nothing else in
    the body changes and the input is not mutated."""
    arguments = {**clean_arguments, USER_ARG: identity.user, ROLES_ARG: list(identity.roles)}
    if extra:
        arguments.update(extra)
    params = {**body["params"], "arguments": arguments}
    if isinstance(params.get("_meta"), Mapping):
        params["_meta"] = tool_arguments(params["_meta"])
    return {**body, "params": params}
