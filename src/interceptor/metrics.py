"""CloudWatch metrics as EMF lines on stdout (Powertools Metrics): no API calls, nothing per user.

One invocation is one decision: `record` keeps only the latest decision (so direct `handle` calls in tests and
benchmarks never pile up data) and the Lambda handler flushes it. Dimensions are bounded by construction:
phase, a known MCP method (anything else is "other") and the reason code.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from interceptor.audit import AuditRecord
from interceptor.logs import SERVICE

NAMESPACE = "TeleportAgentCoreInterceptor"
_METHODS = frozenset({"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read"})

logger = Logger(service=SERVICE, child=True)


def method_dimension(method: str | None) -> str:
    """A bounded name for an MCP method: callers choose method names, metric dimensions must not grow with them."""
    if method in _METHODS:
        return method
    if method is not None and method.startswith("notifications/"):
        return "notifications"
    return "other"


class DecisionMetrics:
    """Decisions by phase, method and outcome, and their latency."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self._metrics = Metrics(namespace=namespace, service=SERVICE)

    def record(self, record: AuditRecord) -> None:
        """Replace the pending data point with this decision's."""
        self._metrics.clear_metrics()
        self._metrics.add_dimension("Phase", record.phase)
        self._metrics.add_dimension("Method", method_dimension(record.method))
        self._metrics.add_dimension("Outcome", record.reason)
        self._metrics.add_metric("Decisions", MetricUnit.Count, 1)
        self._metrics.add_metric("Latency", MetricUnit.Microseconds, record.latency_us)

    def flush(self) -> None:
        """Print the pending data point as one EMF line; a failure here never changes the answer."""
        try:
            self._metrics.flush_metrics()
        except Exception:
            logger.exception("metrics not published")


METRICS = DecisionMetrics()
