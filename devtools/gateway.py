"""Builders for AgentCore Gateway interceptor events, shaped like the documented REQUEST/RESPONSE inputs."""

from __future__ import annotations

import json
from typing import Any


def rpc(method: str, params: dict[str, Any] | None = None, rpc_id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 request; use `notification()` for one without an id."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


def notification(method: str = "notifications/initialized") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method}


def tool_call(tool: str, arguments: dict[str, Any] | None = None, rpc_id: Any = 1) -> dict[str, Any]:
    return rpc("tools/call", {"name": tool, "arguments": arguments or {}}, rpc_id)


def request_event(
    body: Any, token: str | None = None, headers: dict[str, Any] | None = None, *, with_headers: bool = True
) -> dict[str, Any]:
    """A REQUEST-phase event; `token` becomes `Authorization: Bearer <token>`; `with_headers=False` drops
    the `headers` key as a gateway without passRequestHeaders does."""
    all_headers: dict[str, Any] = {"Mcp-Session-Id": "session-1", "User-Agent": "tsh-mcp/18"}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    gateway_request: dict[str, Any] = {"path": "/mcp", "httpMethod": "POST", "body": body}
    if with_headers:
        gateway_request["headers"] = all_headers
    return {
        "interceptorInputVersion": "1.0",
        "mcp": {"rawGatewayRequest": {"body": json.dumps(body)}, "gatewayRequest": gateway_request},
    }


def response_event(request: dict[str, Any], body: Any, status_code: int = 200) -> dict[str, Any]:
    """The RESPONSE-phase event for `request` (an event from `request_event`)."""
    event: dict[str, Any] = json.loads(json.dumps(request))
    event["mcp"]["gatewayResponse"] = {"statusCode": status_code, "headers": {}, "body": body}
    return event
