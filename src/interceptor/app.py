"""Lambda entry point (`interceptor.app.lambda_handler`): the interceptor is built once per container, at init.

Each invocation runs inside Powertools' `inject_lambda_context`, so every operational log line it writes carries
the Lambda request id (`function_request_id`, with the function name and `cold_start`), as the audit line carries
it as `lambda_request_id`. Never with `log_event`: the event holds the caller's bearer token.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from interceptor.wiring import build, logger

__all__ = ["INTERCEPTOR", "build", "lambda_handler", "logger"]

INTERCEPTOR = build(os.environ)

# What Powertools reads from the context; the Lambda runtime always passes all of them.
_CONTEXT_FIELDS = ("function_name", "memory_limit_in_mb", "invoked_function_arn", "aws_request_id")


def _serve(event: Any, context: Any) -> dict[str, Any]:
    return INTERCEPTOR.handle(event, getattr(context, "aws_request_id", None))


# log_event=False also overrides POWERTOOLS_LOGGER_LOG_EVENT=true, which would log the token.
_serve_in_context = logger.inject_lambda_context(_serve, log_event=False)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """AgentCore Gateway REQUEST/RESPONSE interceptor; the decision's audit line carries its metrics. A context
    without the Lambda fields (a test or tool calling the handler directly) is served without them."""
    if all(hasattr(context, name) for name in _CONTEXT_FIELDS):
        return _serve_in_context(event, context)
    return _serve(event, context)
