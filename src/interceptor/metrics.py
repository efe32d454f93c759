"""CloudWatch metrics as EMF fields on the audit line: no API calls, no second log line, nothing per user.

EMF metrics may ride on any structured log line: the audit record of a decision carries an `_aws` directive and
the dimension and metric values as top-level keys, so one write per request serves both. Dimensions are bounded
by construction: phase, a known MCP method (anything else is "other"), the reason code and the service name.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "TeleportAgentCoreInterceptor"
DIMENSIONS = ("Phase", "Method", "Outcome", "service")
_METHODS = frozenset({"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read"})


def method_dimension(method: str | None) -> str:
    """A bounded name for an MCP method: callers choose method names, metric dimensions must not grow with them."""
    if method in _METHODS:
        return method
    if method is not None and method.startswith("notifications/"):
        return "notifications"
    return "other"


def directive(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The `CloudWatchMetrics` directive, built once: `Decisions` (Count) and `Latency` (Microseconds) by
    phase, method, outcome and service (`service` keeps the series of the earlier Powertools Metrics lines)."""
    return [
        {
            "Namespace": namespace,
            "Dimensions": [list(DIMENSIONS)],
            "Metrics": [{"Name": "Decisions", "Unit": "Count"}, {"Name": "Latency", "Unit": "Microseconds"}],
        }
    ]
