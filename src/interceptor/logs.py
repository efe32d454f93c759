"""The service name on every log line of the interceptor (child loggers must name it to join the parent)."""

import os

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "teleport-agentcore-interceptor"
