"""Stamp the verified identity into a forwarded `tools/call`, after removing anything the caller sent
under the reserved `_teleport_` prefix (never trusted, never forwarded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interceptor.tokens import Identity
from tool_identity import RESERVED_PREFIX, ROLES_ARG, USER_ARG


def split_reserved(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The caller's arguments without reserved names, and the reserved names the caller tried to send."""
    clean = {k: v for k, v in arguments.items() if not k.startswith(RESERVED_PREFIX)}
    spoofed = tuple(sorted(k for k in arguments if k.startswith(RESERVED_PREFIX)))
    return clean, spoofed


def stamp(
    body: Mapping[str, Any],
    clean_arguments: Mapping[str, Any],
    identity: Identity,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of `body` whose arguments are `clean_arguments` plus the identity (and `extra` reserved
    values); nothing else in the body changes and the input is not mutated."""
    arguments = {**clean_arguments, USER_ARG: identity.user, ROLES_ARG: list(identity.roles)}
    if extra:
        arguments.update(extra)
    return {**body, "params": {**body["params"], "arguments": arguments}}
