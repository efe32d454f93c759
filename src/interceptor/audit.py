"""One structured audit record per decision, written as a JSON line by Powertools Logger.

The record holds who, what and why, never the token or argument values (only argument names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger


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
    """Writes audit records; the logger is injected so tests and the demo can capture the lines."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def write(self, record: AuditRecord) -> None:
        fields = dict(vars(record))  # shallow: asdict's deep copy costs more than the rest of the record
        fields.update(fields.pop("extra"))
        self._logger.info("audit", extra={"audit": fields})
