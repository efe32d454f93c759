"""One structured audit record per decision, written as one JSON line that also carries the EMF metrics.

The record holds who, what and why, never the token or argument values (only argument names). The line keeps
the shape Powertools Logger gave it (`level`, `message: "audit"`, `timestamp`, `service`, the record under
`audit`), so log queries keep working, but it is written with one prebuilt encoder and one write: going through
the logging machinery cost more per request than the Cedar decision it records (README "Performance").
Operational logs still go through Powertools Logger.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from aws_lambda_powertools import Logger

from interceptor.logs import SERVICE
from interceptor.metrics import directive, method_dimension

logger = Logger(service=SERVICE, child=True)

MAX_TEXT = 256  # characters kept of a caller-chosen string (method, tool, ids, argument names)
MAX_NAMES = 100  # argument names kept per list
_TRACE_ENV = "_X_AMZN_TRACE_ID"  # set by Lambda per invocation, as Powertools reads it

AuditSink = Callable[[str], object]
"""Receives each audit line (one JSON object, no newline)."""


def stdout_sink(line: str) -> None:
    """Lambda ships stdout to CloudWatch Logs; flushed per line, as Powertools' handler does, so a frozen or
    recycled container never holds back a record."""
    stream = sys.stdout
    stream.write(line + "\n")
    stream.flush()


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
    roles: list[str] = field(default_factory=list)
    bot: bool | None = None
    decision: str = "deny"
    forwarded: bool = False
    reason: str = ""
    policy_ids: list[str] = field(default_factory=list)
    argument_names: list[str] = field(default_factory=list)
    spoofed_arguments: list[str] = field(default_factory=list)
    detail: str | None = None
    latency_us: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Auditor:
    """Turns records into audit + EMF lines for an injected sink (stdout in Lambda; a list in tests and tools).

    A line that cannot be written is reported on the operational log and never changes the answer, as when
    the record went through the logging module.
    """

    def __init__(
        self, sink: AuditSink = stdout_sink, service: str = SERVICE, clock: Callable[[], float] = time.time
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
        # Everything but the record, the times and three bounded dimension values is the same on every line.
        self._service = self._encode(service)
        self._directive = self._encode(directive())
        self._second = -1
        self._second_text = ""

    def write(self, record: AuditRecord) -> None:
        try:
            self._sink(self.line(record))
        except Exception:
            logger.exception("audit record not written")

    def line(self, record: AuditRecord) -> str:
        """The JSON line for `record`: the audit object plus the EMF directive and values. Assembled from
        pre-encoded constant parts; only the record goes through the JSON encoder."""
        fields = dict(vars(record))  # shallow: asdict's deep copy costs more than the rest of the record
        extra = fields.pop("extra")
        if extra:
            fields.update(extra)
        _bound(fields)
        now = self._clock()
        trace = os.environ.get(_TRACE_ENV)
        trace_field = f',"xray_trace_id":{_quote(trace.split(";", 1)[0].removeprefix("Root="))}' if trace else ""
        return (
            f'{{"level":"INFO","message":"audit","timestamp":"{self._timestamp(now)}","service":{self._service},'
            f'"audit":{self._encode(fields)},'
            f'"_aws":{{"Timestamp":{int(now * 1000)},"CloudWatchMetrics":{self._directive}}},'
            f'"Phase":{_quote(record.phase)},"Method":{_quote(method_dimension(record.method))},'
            f'"Outcome":{_quote(record.reason)},"Decisions":1,"Latency":{int(record.latency_us)}{trace_field}}}'
        )

    def _timestamp(self, now: float) -> str:
        """Powertools' format (`2025-01-31 12:00:00,123+0000`, UTC); the seconds part is formatted once a second."""
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        return f"{self._second_text},{int(now * 1000) % 1000:03d}+0000"


def _bound(fields: dict[str, Any]) -> None:
    """Cap what callers choose (names, ids) so one request cannot write an unbounded line: CloudWatch cuts
    events at 256 KB, which would break the JSON and lose the metrics riding on it."""
    for key in ("method", "tool", "rpc_id", "mcp_session_id"):
        value = fields[key]
        if isinstance(value, str) and len(value) > MAX_TEXT:
            fields[key] = _clip(value)
    for key in ("argument_names", "spoofed_arguments"):
        names = fields[key]
        if len(names) > MAX_NAMES or any(len(name) > MAX_TEXT for name in names):
            fields[key] = [_clip(name) for name in names[:MAX_NAMES]]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}...(+{len(text) - MAX_TEXT} chars)"
