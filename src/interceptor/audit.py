"""One structured audit record per decision, written as one JSON line that also carries the EMF metrics.

The record holds who, what and why, never the token or argument values (only argument names). Every string a
caller can choose or influence is capped (`_bound`: where and how in README "Audit"), so no request can write a
line CloudWatch Logs would cut (256 KiB per event) and lose the record and the metrics riding on it. The line keeps
the shape Powertools Logger gave it (`level`, `message: "audit"`, `timestamp`, `service`, the record under
`audit`), so log queries keep working, but it is written with one orjson encoding and one write: going through
the logging machinery cost more per request than the Cedar decision it records (README "Performance").
Operational logs still go through Powertools Logger.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, Literal

import orjson
from aws_lambda_powertools import Logger

from interceptor import jsontext
from interceptor.logs import SERVICE
from interceptor.metrics import directive, method_dimension
from interceptor.reasons import Reason

logger = Logger(service=SERVICE, child=True)

MAX_TEXT = 256  # characters kept of a caller-derived string (method, tool, ids, user, each name in a list)
MAX_DETAIL = 1024  # characters kept of `detail` (it may quote argument names, and joins one error per policy)
MAX_NAMES = 100  # entries kept of a list of names
MAX_LIST_BYTES = 32 * 1024  # JSON bytes of the entries kept of one list, together
CLOUDWATCH_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch Logs counts 26 bytes of overhead per event
_TEXT_FIELDS = ("method", "tool", "rpc_id", "mcp_session_id", "user")
_LIST_FIELDS = ("roles", "argument_names", "spoofed_arguments", "policy_ids")
# Keys only `AuditRecord.extra` adds, so only records with extras are checked for them: the agent (AGENT_MODE not
# off), each gate's determining policies (delegated calls), the tools a list hid (RESPONSE phase).
_EXTRA_TEXT = ("agent", "agent_jti")
_EXTRA_LISTS = ("hidden_tools", "user_policy_ids", "agent_policy_ids")
_ALL_LISTS = _LIST_FIELDS + _EXTRA_LISTS
_KEPT_WHOLE = ("phase", "mode", "lambda_request_id", "decision", "forwarded", "reason", "latency_us")
_BIG_INT = 10**MAX_TEXT  # an id of more digits is written as capped text
_TRACE_ENV = "_X_AMZN_TRACE_ID"  # set by Lambda per invocation, as Powertools reads it

type Verdict = Literal["allow", "deny", "filter"]

AuditSink = Callable[[str], object]
"""Receives each audit line (one JSON object, no newline)."""


def stdout_sink(line: str) -> None:
    """Lambda ships stdout to CloudWatch Logs: the line goes there as UTF-8 (`_to_stdout`)."""
    _to_stdout(line.encode())


def _to_stdout(line: bytes) -> None:
    """The line's UTF-8 bytes, as encoded, to stdout's binary buffer after any text still pending on stdout (so
    lines keep their order), flushed per line as Powertools' handler does: a frozen or recycled container never
    holds back a record. Nothing is decoded and encoded again, and no text encoding of stdout
    (`PYTHONIOENCODING=ascii` somewhere local) can refuse a record. A stdout with no binary buffer (a text-only
    capture) gets the text."""
    stream = sys.stdout
    stream.flush()
    binary = getattr(stream, "buffer", None)
    if binary is None:
        stream.write(line.decode() + "\n")
        stream.flush()
        return
    binary.write(line + b"\n")
    binary.flush()


@dataclass
class AuditRecord:
    """Fields of one audit line; filled in as the request moves through the pipeline."""

    phase: str
    mode: str
    lambda_request_id: str | None = None
    mcp_session_id: str | None = None
    rpc_id: Any = None
    method: str | None = None
    tool: str | None = None
    user: str | None = None
    roles: Sequence[str] = ()  # sequences are written as JSON arrays; tuples are shared, never copied
    bot: bool | None = None
    decision: Verdict = "deny"
    forwarded: bool = False
    reason: str = ""
    policy_ids: Sequence[str] = ()
    argument_names: Sequence[str] = ()
    spoofed_arguments: Sequence[str] = ()
    detail: str | None = None
    latency_us: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def conclude(self, decision: Verdict, reason: Reason, forwarded: bool, detail: str | None) -> None:
        """The outcome, set once per request by the handler's single exit."""
        self.decision, self.reason, self.forwarded, self.detail = decision, reason, forwarded, detail  # a StrEnum


class Auditor:
    """Turns records into audit + EMF lines for an injected sink (stdout in Lambda; a list in tests and tools).

    A line that cannot be written is reported on the operational log and never changes the answer, as when
    the record went through the logging module.
    """

    def __init__(
        self, sink: AuditSink = stdout_sink, service: str = SERVICE, clock: Callable[[], float] = time.time
    ) -> None:
        # The Lambda's sink takes the encoded bytes as they are; any other sink, the text.
        self._emit: Callable[[bytes], object] = _to_stdout if sink is stdout_sink else lambda line: sink(line.decode())
        self._clock = clock
        self._fallback = jsontext.encoder(ascii_only=True, allow_nan=True, default=str)  # what orjson cannot write
        self._service = service
        self._directive = directive()
        self._second: int | None = None  # the second `_second_text` formats (none yet)
        self._second_text = ""

    def write(self, record: AuditRecord) -> None:
        try:
            self._emit(self.line(record))
        except Exception:
            logger.exception("audit record not written")

    def line(self, record: AuditRecord) -> bytes:
        """The JSON line for `record`, in UTF-8: the audit object plus the EMF directive and values, in one orjson
        encoding. Caller-derived values are capped first (`_bound`); a line that would still not fit one CloudWatch
        event (a field nobody capped) keeps only the outcome, with `audit_truncated` giving the length it had."""
        fields = record.__dict__.copy()  # shallow: asdict's deep copy costs more than the rest of the record
        extra = fields.pop("extra")
        if extra:
            fields.update(extra)
        _bound(fields, extended=bool(extra))
        now = self._clock()
        line = self._assemble(record, fields, now)
        if len(line) >= CLOUDWATCH_EVENT_BYTES:
            kept = {key: fields[key] for key in _KEPT_WHOLE}
            line = self._assemble(record, {**kept, "audit_truncated": len(line)}, now)
        return line

    def _assemble(self, record: AuditRecord, fields: dict[str, Any], now: float) -> bytes:
        millis = int(now * 1000)
        second = millis // 1000
        if second != self._second:  # Powertools' format, `2025-01-31 12:00:00,123+0000` (UTC): once a second
            self._second, self._second_text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        entry = {
            "level": "INFO",
            "message": "audit",
            "timestamp": f"{self._second_text},{millis % 1000:03d}+0000",
            "service": self._service,
            "audit": fields,
            "_aws": {"Timestamp": millis, "CloudWatchMetrics": self._directive},
            "Phase": record.phase,
            "Method": method_dimension(record.method),
            "Outcome": record.reason,
            "Decisions": 1,
            "Latency": record.latency_us,
        }
        trace = os.environ.get(_TRACE_ENV)
        if trace:
            entry["xray_trace_id"] = trace.split(";", 1)[0].removeprefix("Root=")
        try:
            return orjson.dumps(entry, default=str)
        except TypeError:  # an integer beyond 64 bits (a JSON-RPC id may be one): the standard encoder writes it
            return self._fallback(entry).encode()


def _bound(fields: dict[str, Any], extended: bool) -> None:
    """Cap every caller-derived value in place, with a marker giving what was cut: strings at `MAX_TEXT`
    characters (`detail` at `MAX_DETAIL`) as `<kept>...(+N chars)`, integer ids beyond `MAX_TEXT` digits as such
    text, lists at `MAX_NAMES` entries and `MAX_LIST_BYTES` of JSON, each entry capped, then `...(+N more)`.
    Worst case (every string of non-BMP characters, 12 JSON bytes each): under 200 KB, within one CloudWatch event.
    Short values (the common case) are checked with one `len` each and left as they are. The record's own fields
    are checked after any extra was merged (an extra of the same name is capped too); the keys only extras add,
    when the record has extras (`extended`)."""
    for key in _TEXT_FIELDS:
        value = fields[key]
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                fields[key] = _clip(value)
        elif isinstance(value, int) and not -_BIG_INT < value < _BIG_INT:
            fields[key] = _clip(str(value))
    detail = fields["detail"]
    if detail is not None and len(detail) > MAX_DETAIL:
        fields["detail"] = _clip(detail, MAX_DETAIL)
    for key in _ALL_LISTS if extended else _LIST_FIELDS:
        names = fields.get(key)
        if names and (len(names) > MAX_NAMES or sum(map(len, names)) > MAX_TEXT):
            fields[key] = _clip_names(names)
    if extended:
        for key in _EXTRA_TEXT:  # a verified SPIFFE ID (up to 2 KiB) and jti, capped like every caller-derived value
            value = fields.get(key)
            if isinstance(value, str) and len(value) > MAX_TEXT:
                fields[key] = _clip(value)


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...(+{len(text) - limit} chars)"


def _clip_names(names: Sequence[str]) -> list[str]:
    """The first names that fit `MAX_NAMES` entries and `MAX_LIST_BYTES` of JSON, each capped, then a marker
    counting the rest."""
    kept: list[str] = []
    size = 0
    for name in names:
        clipped = _clip(name)
        size += len(_quote(clipped)) + 1
        if len(kept) == MAX_NAMES or size > MAX_LIST_BYTES:
            break
        kept.append(clipped)
    if len(kept) < len(names):
        kept.append(f"...(+{len(names) - len(kept)} more)")
    return kept
