"""SPIFFE IDs and the patterns that admit agents (AGENT_ID_PATTERNS). Pure functions.

A SPIFFE ID is `spiffe://<trust domain>/<path>` (SPIFFE-ID standard): trust domain of lower-case letters, digits,
`.`, `-` and `_`; path segments of letters, digits, `.`, `-` and `_`, none empty, `.` or `..`; no query, fragment,
port, user info or percent-encoding; at most 2,048 bytes. An agent is a workload, so its ID must have a path.

Patterns are globs over whole IDs, with a literal trust domain: in the path, `*` matches within one segment, `?`
one character of a segment, and a segment `**` one or more whole segments. So
`spiffe://example.teleport.sh/agents/*` admits `.../agents/hr-assistant` but not `.../agents/hr/assistant`, and
`spiffe://example.teleport.sh/agents/**` admits both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_ID_BYTES = 2048
_TRUST_DOMAIN = r"[a-z0-9._-]+"
_SEGMENT_CHARS = r"[A-Za-z0-9._-]"
_ID = re.compile(rf"spiffe://({_TRUST_DOMAIN})((?:/{_SEGMENT_CHARS}+)+)")
_PATTERN = re.compile(rf"spiffe://({_TRUST_DOMAIN})((?:/(?:{_SEGMENT_CHARS}|[*?])+)+)")


def parse_id(value: str) -> tuple[str, str] | None:
    """(trust domain, path) of a workload's SPIFFE ID; None for anything else (including an ID without a path)."""
    if len(value) > MAX_ID_BYTES:
        return None
    match = _ID.fullmatch(value)
    if match is None or any(segment in {".", ".."} for segment in match.group(2).split("/")):
        return None
    return match.group(1), match.group(2)


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not an ID pattern (None when it is one)."""
    if _PATTERN.fullmatch(pattern) is None:
        return (
            "must be spiffe://<trust domain>/<path>, with a literal trust domain and a path of letters, digits, "
            "'.', '-', '_' and the globs * ? **"
        )
    if any("**" in segment and segment != "**" for segment in pattern.split("/")[3:]):
        return "uses ** other than as a whole path segment"
    return None


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regular expression matching exactly the IDs some pattern admits (call `pattern_problem` first); no
    pattern admits nothing."""
    alternatives = [_translate(pattern) for pattern in patterns]
    return re.compile("|".join(f"(?:{a})" for a in alternatives) if alternatives else r"(?!)")


def _translate(pattern: str) -> str:
    match = _PATTERN.fullmatch(pattern)
    if match is None:
        raise ValueError("not an ID pattern")
    out = re.escape(f"spiffe://{match.group(1)}")
    for segment in match.group(2).split("/")[1:]:
        if segment == "**":
            out += rf"(?:/{_SEGMENT_CHARS}+)+"
            continue
        out += "/" + "".join(
            f"{_SEGMENT_CHARS}*" if char == "*" else _SEGMENT_CHARS if char == "?" else re.escape(char)
            for char in segment
        )
    return out
