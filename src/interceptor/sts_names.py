"""Map Teleport names onto STS's rules for RoleSessionName, SourceIdentity and session tags.

Pure functions. A value that already fits is used as is; one that does not (a character STS refuses, too
long, too short, or a value that looks like a mapped one) becomes `<cleaned prefix>-<16 hex of SHA-256>`.
Unchanged values never end in `-<16 hex>`, mapped values always do, and mapped values differ whenever the
originals differ (up to a 64-bit hash collision), so two users never share a session identity.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

NAME_MIN, NAME_MAX = 2, 64
TAG_KEY_MAX, TAG_VALUE_MAX = 128, 256
MAX_TAGS = 50
HASH_HEX = 16
ROLE_SEPARATOR = ":"
_NAME_CHAR = re.compile(r"[A-Za-z0-9_+=,.@-]")
_MAPPED = re.compile(rf"-[0-9a-f]{{{HASH_HEX}}}$")

TAG_USER = "teleport-user"
TAG_ROLES = "teleport-roles"
TAG_TOOL = "teleport-tool"
TAG_CLUSTER = "teleport-cluster"
TAG_AGENT = "teleport-agent"


def _is_name_char(ch: str) -> bool:
    return bool(_NAME_CHAR.fullmatch(ch))


def _is_tag_char(ch: str) -> bool:
    """STS tag characters: Unicode letters, numbers, separators and `_ . : / = + - @`."""
    return unicodedata.category(ch)[0] in "LNZ" or ch in "_.:/=+-@"


def _is_role_char(ch: str) -> bool:
    """One role inside the roles tag: tag characters except the separator."""
    return ch != ROLE_SEPARATOR and _is_tag_char(ch)


def _fit(value: str, allowed: Callable[[str], bool], min_len: int, max_len: int) -> str:
    cleaned = "".join(ch if allowed(ch) else "-" for ch in value)
    if cleaned == value and min_len <= len(value) <= max_len and not _MAPPED.search(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return f"{cleaned[: max_len - HASH_HEX - 1]}-{digest}"


def session_name(user: str) -> str:
    """RoleSessionName and SourceIdentity (2-64 of `[\\w+=,.@-]`; ':' is mapped, so never `aws:...`)."""
    return _fit(user, _is_name_char, NAME_MIN, NAME_MAX)


def tag_value(value: str) -> str:
    """A session tag value (0-256 of letters, numbers, separators, `_.:/=+-@`; no commas)."""
    return _fit(value, _is_tag_char, 0, TAG_VALUE_MAX)


def roles_value(roles: Iterable[str]) -> str:
    """Roles as one tag value `:role1:role2:` so IAM can match one role exactly with `*:role:*`.

    Roles that cannot be written safely (a separator or a refused character) are mapped one by one first.
    """
    parts = [_fit(r, _is_role_char, 1, TAG_VALUE_MAX) for r in roles]
    return tag_value(ROLE_SEPARATOR + ROLE_SEPARATOR.join(parts) + ROLE_SEPARATOR if parts else "")


def cluster_value(issuer: str) -> str:
    """The Teleport cluster, as its proxy host name."""
    return tag_value(urlsplit(issuer).netloc or issuer)


def session_tags(
    user: str, roles: Iterable[str], tool: str, issuer: str, agent: str | None = None
) -> list[dict[str, str]]:
    """The session tags for one call; every key is also a transitive tag key. A delegated call adds the agent's
    SPIFFE ID (`teleport-agent`; `spiffe://` IDs are tag characters, one over 256 is mapped like any value)."""
    tags = [
        {"Key": TAG_USER, "Value": tag_value(user)},
        {"Key": TAG_ROLES, "Value": roles_value(roles)},
        {"Key": TAG_TOOL, "Value": tag_value(tool)},
        {"Key": TAG_CLUSTER, "Value": cluster_value(issuer)},
    ]
    if agent is not None:
        tags.append({"Key": TAG_AGENT, "Value": tag_value(agent)})
    check_tags(tags)
    return tags


def check_tags(tags: list[dict[str, str]]) -> None:
    """Raise ValueError when tags break an STS rule (count, lengths, characters, reserved `aws:` prefix)."""
    if len(tags) > MAX_TAGS:
        raise ValueError("more than 50 session tags")
    for tag in tags:
        key, value = tag["Key"], tag["Value"]
        if not 1 <= len(key) <= TAG_KEY_MAX or not all(map(_is_tag_char, key)):
            raise ValueError(f"invalid session tag key {key!r}")
        if key.lower().startswith("aws:"):
            raise ValueError("session tag keys may not start with 'aws:'")
        if len(value) > TAG_VALUE_MAX or not all(map(_is_tag_char, value)):
            raise ValueError(f"invalid value for session tag {key!r}")
