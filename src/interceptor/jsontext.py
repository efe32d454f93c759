"""The standard library's JSON, strictly and built once: the decoder for what callers send (request bodies, token
segments) and compact encoders for what must match the Lambda runtime's own `json.dumps` exactly (the proof that
an answer is strict JSON) or that orjson cannot write (integers beyond 64 bits in an audit record).

`json.dumps` / `JSONEncoder.encode` build a new C encoder on every call (about 1.6 us of a 2.5 us encode of a
`tools/call` body, measured 2026-11-30); the encoders here are CPython's own C encoder (`_json`, which `json` uses
underneath), made once with the options that call would pass. Also the orjson options shared by the body check
and Cedar's context (`PLAIN_TYPES_ONLY`).
"""

from __future__ import annotations

import json
from _json import make_encoder
from collections.abc import Callable
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

import orjson


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# orjson would also write subclasses, dataclasses and datetimes (whose own `__eq__` could then vouch for them in a
# read-back): with these options it refuses them, so they take the exact path (the walk; the standard encoder).
# It still writes Enum and UUID values, which no JSON parser makes.
PLAIN_TYPES_ONLY = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME

# NaN and Infinity refused. Built once: `json.loads` with options builds a decoder per call.
STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant)


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON type")


def encoder(*, ascii_only: bool, allow_nan: bool, default: Callable[[Any], Any] = _not_json) -> Callable[[Any], str]:
    """A compact (`,` and `:`) encoder, as `json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only,
    allow_nan=allow_nan, default=default, check_circular=False)`: raises ValueError (NaN, infinities when not
    allowed; integers too long to write), TypeError (no JSON type) or RecursionError (nesting too deep, or a
    cycle: values made by a JSON parser have none)."""
    quote = encode_basestring_ascii if ascii_only else encode_basestring
    chunks = make_encoder(None, default, quote, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode
