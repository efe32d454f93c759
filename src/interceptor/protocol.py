"""MCP revisions per request (2025-06-18, 2025-11-25, 2026-07-28): which era a request belongs to, whether its
`Mcp-*` headers agree with its body, and the era-dependent fields of results the interceptor writes or rewrites.

Pure functions over plain values (README "MCP versions"). The era is per request, as the 2026-07-28 spec has it:
a request carrying `params._meta["io.modelcontextprotocol/protocolVersion"]` is 2026-07-28 ("modern"); an
`initialize` selects legacy semantics; otherwise the `MCP-Protocol-Version` header decides, absent meaning legacy.
Policy never reads a header: the checks here only refuse requests whose headers could route them elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from interceptor import methods

VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
PARAM_HEADER_PREFIX = "mcp-param-"
_ROUTING_HEADERS = (VERSION_HEADER, METHOD_HEADER, NAME_HEADER)
# Versions before per-request `_meta` (a 2025-11-25 server assumes 2025-03-26 when the header is absent).
LEGACY_VERSIONS = frozenset({"2024-11-05", "2025-03-26", *methods.LEGACY})
# The body value `Mcp-Name` repeats, per method (SEP-2243).
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# Methods whose 2026-07-28 results are `CacheableResult` (server/utilities/caching.mdx).
CACHEABLE = frozenset(
    {"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
RESULT_TYPE = "resultType"
COMPLETE = "complete"
INPUT_REQUIRED = "input_required"
TTL, SCOPE = "ttlMs", "cacheScope"
# How long a client may reuse a list filtered for it: a policy change reaches a cached list within a minute.
MAX_FILTERED_TTL_MS = 60_000
_INPUT_REQUIRED_KEYS = frozenset({RESULT_TYPE, "inputRequests", "requestState", "_meta"})
_SENTINEL = re.compile(r"=\?base64\?(.*)\?=")
_PLAIN = re.compile(r"[\x20-\x7e]*")

type Headers = Mapping[str, list[Any]]
"""A request's headers by lower-case name, each with every value sent under it (`contract.header_fields`)."""


def is_modern(method: str, params: Mapping[str, Any], headers: Headers | None) -> bool:
    """Whether the request is 2026-07-28 (or a later revision): it carries the per-request `_meta` version, or,
    other than an `initialize`, its `MCP-Protocol-Version` header names no legacy version."""
    if method == "initialize":
        return False
    meta = params.get("_meta")
    if isinstance(meta, dict) and VERSION_META_KEY in meta:
        return True
    versions = headers.get(VERSION_HEADER) if headers else None
    return versions is not None and any(isinstance(v, str) and v not in LEGACY_VERSIONS for v in versions)


def header_problem(method: str, params: Mapping[str, Any], headers: Headers) -> str | None:
    """Why the request's MCP headers disagree with its body, or None. Present headers must match (names
    case-insensitive, values exact after `=?base64?...?=` decoding; a repeated or undecodable one never
    matches). An absent header is not refused: nothing can route on a header that is not there, no document says
    the gateway passes `Mcp-*` headers to interceptors, and the target still enforces the spec's own rule.
    `Mcp-Param-*` values are checked for their encoding only: which argument each mirrors is in tool schemas the
    interceptor does not have. The answer names headers, never values."""
    decoded: dict[str, str] = {}
    for name, values in headers.items():
        if not name.startswith("mcp-") or (name not in _ROUTING_HEADERS and not name.startswith(PARAM_HEADER_PREFIX)):
            continue
        value = _decode(values[0]) if len(values) == 1 else None
        if value is None:
            label = "an Mcp-Param-* header" if name.startswith(PARAM_HEADER_PREFIX) else f"the {name} header"
            return f"{label} is repeated or not a valid header value"
        decoded[name] = value
    if not decoded:  # the common case: no MCP header to agree with
        return None
    meta = params.get("_meta")
    expected: dict[str, Any] = {METHOD_HEADER: method}
    if isinstance(meta, dict) and VERSION_META_KEY in meta:
        expected[VERSION_HEADER] = meta[VERSION_META_KEY]
    if method in NAMED_BY and params.get(NAMED_BY[method]) is not None:
        expected[NAME_HEADER] = params[NAMED_BY[method]]
    for name in _ROUTING_HEADERS:
        if name in decoded:
            unbound = name == VERSION_HEADER and name not in expected  # legacy: a version header, no `_meta` one
            if not unbound and decoded[name] != expected.get(name):
                return f"the {name} header does not match the request body"
    return None


def interim(body: Any) -> bool:
    """Whether `body` is a multi round-trip interim answer (`resultType: "input_required"` with only the fields
    of `InputRequiredResult`): it lists nothing and is never cached, so it passes unchanged."""
    result = body.get("result") if isinstance(body, Mapping) else None
    return (
        isinstance(result, Mapping)
        and result.get(RESULT_TYPE) == INPUT_REQUIRED
        and _INPUT_REQUIRED_KEYS.issuperset(result)
    )


def filtered_result(body: Any, method: str, modern: bool) -> Any:
    """A response body whose result was filtered for one caller, as it may leave: no upstream caching hint
    survives (a per-caller result must never read as shareable); a modern final result states
    `resultType: "complete"`, and a modern cacheable one (tools/list) is `cacheScope: "private"` with the
    upstream `ttlMs` capped at MAX_FILTERED_TTL_MS (absent or invalid: 0), as is any modern list that holds
    filtered tools whatever its `resultType` says (an upstream `null` or unknown type must not make a per-caller
    list look shareable). JSON text stays JSON text."""
    if isinstance(body, str):
        return json.dumps(filtered_result(json.loads(body), method, modern))
    result = body.get("result") if isinstance(body, Mapping) else None
    if not isinstance(result, Mapping):
        return body
    out = {k: v for k, v in result.items() if k not in (TTL, SCOPE)}
    if modern and (out.setdefault(RESULT_TYPE, COMPLETE) == COMPLETE or "tools" in out) and method in CACHEABLE:
        out[TTL] = _capped_ttl(result.get(TTL))
        out[SCOPE] = "private"
    return {**body, "result": out}


def _capped_ttl(ttl: Any) -> int:
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 0:
        return min(ttl, MAX_FILTERED_TTL_MS)
    return 0


def _decode(value: Any) -> str | None:
    """A header value as MCP encodes it: printable ASCII as is, or `=?base64?<canonical base64 of UTF-8>?=`;
    None for anything else (it then matches nothing)."""
    if not isinstance(value, str) or not _PLAIN.fullmatch(value):
        return None
    sentinel = _SENTINEL.fullmatch(value)
    if sentinel is None:
        return value
    try:
        raw = base64.b64decode(sentinel.group(1), validate=True)
        if base64.b64encode(raw).decode("ascii") != sentinel.group(1):
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
