"""Lambda entry point (`interceptor.app.lambda_handler`): the interceptor is built once per container, at init."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from interceptor.wiring import build, logger

__all__ = ["INTERCEPTOR", "build", "lambda_handler", "logger"]

INTERCEPTOR = build(os.environ)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """AgentCore Gateway REQUEST/RESPONSE interceptor; the decision's audit line carries its metrics."""
    return INTERCEPTOR.handle(event, getattr(context, "aws_request_id", None))
