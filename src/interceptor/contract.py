"""The AgentCore Gateway interceptor contract: parse its events, build its outputs.

Pure functions over plain dicts. Inputs are validated strictly enough that later steps can trust their
shape; outputs always carry `interceptorOutputVersion` "1.0" and the request's JSON-RPC id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interceptor.reasons import Reason

OUTPUT_VERSION = "1.0"
TOOLS_CALL = "tools/call"
# JSON-RPC error codes used in short-circuit answers.
INVALID_REQUEST = -32600
UNAUTHORIZED = -32001
INTERNAL = -32603


class MalformedEvent(Exception):
    """The event or its JSON-RPC body cannot be served; `rpc_id` is echoed when it could be read."""

    def __init__(self, reason: Reason, detail: str, rpc_id: Any = None, target_kind: str = "mcp") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.rpc_id = rpc_id
        self.target_kind = target_kind


@dataclass(frozen=True)
class McpRequest:
    """A REQUEST-phase MCP call as the rest of the pipeline sees it."""

    body: Mapping[str, Any]
    headers: Mapping[str, Any] | None
    method: str
    rpc_id: Any
    is_notification: bool
    session_id: str | None
    tool: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class McpResponse:
    """A RESPONSE-phase event: the target's answer plus the request it answers."""

    status_code: int
    body: Any
    request: McpRequest


def is_response_phase(event: Mapping[str, Any]) -> bool:
    """The RESPONSE interception point is told apart by a non-null `mcp.gatewayResponse`."""
    mcp = event.get("mcp")
    return isinstance(mcp, Mapping) and mcp.get("gatewayResponse") is not None


def parse_request(event: Any) -> McpRequest:
    """Read the REQUEST-phase fields of an interceptor event; raise MalformedEvent when unusable."""
    if not isinstance(event, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "event is not a JSON object")
    mcp = event.get("mcp")
    if mcp is None and "http" in event:
        raise MalformedEvent(Reason.UNSUPPORTED_TARGET, "HTTP target event", target_kind="http")
    if not isinstance(mcp, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "event has no 'mcp' object")
    gateway_request = mcp.get("gatewayRequest")
    if not isinstance(gateway_request, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "event has no 'mcp.gatewayRequest' object")
    headers = gateway_request.get("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "gatewayRequest.headers is not an object")
    body = _body(gateway_request.get("body"))
    rpc_id = _rpc_id(body)
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC body has no method", rpc_id)
    params = body.get("params", {})
    if not isinstance(params, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC params is not an object", rpc_id)
    tool, arguments = None, {}
    if method == TOOLS_CALL:
        tool, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(tool, str) or not tool:
            raise MalformedEvent(Reason.REQUEST_MALFORMED, "tools/call has no tool name", rpc_id)
        if not isinstance(arguments, Mapping):
            raise MalformedEvent(Reason.REQUEST_MALFORMED, "tools/call arguments is not an object", rpc_id)
    session = _header(headers or {}, "mcp-session-id")
    return McpRequest(body, headers, method, rpc_id, "id" not in body, session, tool, arguments)


def parse_response(event: Mapping[str, Any]) -> McpResponse:
    """Read a RESPONSE-phase event; the request part is parsed exactly as on the REQUEST path."""
    gateway_response = event["mcp"]["gatewayResponse"]
    if not isinstance(gateway_response, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "gatewayResponse is not an object")
    status = gateway_response.get("statusCode", 200)
    if not isinstance(status, int) or isinstance(status, bool):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "gatewayResponse.statusCode is not an integer")
    return McpResponse(status, gateway_response.get("body"), parse_request(event))


def _body(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise MalformedEvent(Reason.REQUEST_MALFORMED, "request body is not JSON") from None
    if isinstance(raw, list):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC batch requests are not supported")
    if not isinstance(raw, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "request body is not a JSON-RPC object")
    return raw


def _rpc_id(body: Mapping[str, Any]) -> Any:
    rpc_id = body.get("id")
    if rpc_id is None or (isinstance(rpc_id, str | int) and not isinstance(rpc_id, bool)):
        return rpc_id
    raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC id must be a string, an integer or null")


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def forward_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """Let the call through to the target with `body` (headers untouched: the token is not forwarded)."""
    return {"interceptorOutputVersion": OUTPUT_VERSION, "mcp": {"transformedGatewayRequest": {"body": body}}}


def respond(status_code: int, body: Any, target_kind: str = "mcp") -> dict[str, Any]:
    """Answer the caller directly (REQUEST short-circuit, or the RESPONSE interceptor's output)."""
    return {
        "interceptorOutputVersion": OUTPUT_VERSION,
        target_kind: {"transformedGatewayResponse": {"statusCode": status_code, "body": body}},
    }


def pass_response(response: McpResponse) -> dict[str, Any]:
    """Give the gateway its response back unchanged. The answer to a notification, which has no body, gets
    the bare `{"interceptorOutputVersion": "1.0"}` of AWS's sample: there is nothing to return. That bare form
    is never used for a request with an id, where it could read as "carry on unchanged"."""
    if response.body is None and response.request.is_notification:
        return {"interceptorOutputVersion": OUTPUT_VERSION}
    return respond(response.status_code, response.body)


def rpc_error(rpc_id: Any, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response; notifications and unreadable ids get `id: null`."""
    return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}


def tool_error(rpc_id: Any, text: str) -> dict[str, Any]:
    """A `tools/call` result the agent reads as a refusal (AgentCore Policy's and Teleport's shape)."""
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "result": {"content": [{"type": "text", "text": text}], "isError": True},
    }
