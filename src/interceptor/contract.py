"""The AgentCore Gateway interceptor contract: parse its events, build its outputs.

Pure functions over plain dicts. Inputs are validated strictly enough that later steps can trust their
shape: a body is strict JSON (no NaN or infinities, no lone surrogates; a request body at most `MAX_DEPTH`
levels deep), `check_method` applies the MCP method table (`methods.py`) and `check_headers` the agreement of
MCP headers with the body (`protocol.py`). Outputs always carry `interceptorOutputVersion` "1.0" and the
request's JSON-RPC id whenever it could be read; `encodable` proves an answer is strict JSON before it leaves.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from interceptor import jsontext, methods, protocol
from interceptor.errors import Refusal
from interceptor.protocol import Headers
from interceptor.reasons import Reason

OUTPUT_VERSION = "1.0"
TOOLS_CALL = "tools/call"
MAX_DEPTH = 64  # nesting levels of a request body (the body object is level 1): later walks never recurse deeper
_DIGITS = sys.get_int_max_str_digits()  # Python cannot write longer integers back (0: no limit)
_INT_LIMIT = 10**_DIGITS if _DIGITS else None


_STRICT = jsontext.encoder(ascii_only=False, allow_nan=False)

_SESSION_ID = re.compile(r"[\x21-\x7e]+")  # MCP: visible ASCII only
_METHOD_DETAIL = {
    Reason.METHOD_UNKNOWN: "method not in the MCP method table (exact names; client-to-server methods only)",
    Reason.METHOD_NOT_COVERED: "method not covered by policy and not listed in FORWARD_UNCOVERED_METHODS",
}


class MalformedEvent(Refusal):
    """The event or its JSON-RPC body cannot be served: a refusal that also says which id to echo (`rpc_id`,
    when it could be read) and under which key to answer (`target_kind`: `http` for HTTP-target events)."""

    def __init__(self, reason: Reason, detail: str, rpc_id: Any = None, target_kind: str = "mcp") -> None:
        super().__init__(reason, detail)
        self.rpc_id = rpc_id
        self.target_kind = target_kind


class McpRequest(NamedTuple):
    """A REQUEST-phase MCP call as the rest of the pipeline sees it (made only by `parse_request`)."""

    body: Mapping[str, Any]
    headers: Headers | None  # by lower-case name (`header_fields`); None: the event carried no headers
    method: str
    rpc_id: Any
    is_notification: bool
    session_id: str | None
    tool: str | None
    arguments: Mapping[str, Any]
    modern: bool  # MCP 2026-07-28 or later (`protocol.is_modern`): results we write carry resultType


@dataclass(frozen=True)
class McpResponse:
    """A RESPONSE-phase event: the target's answer plus the request it answers."""

    status_code: int
    body: Any
    request: McpRequest


def is_response_phase(event: Mapping[str, Any]) -> bool:
    """The RESPONSE interception point is told apart by a non-null `mcp.gatewayResponse`."""
    mcp = event.get("mcp")
    return isinstance(mcp, dict) and mcp.get("gatewayResponse") is not None


def parse_request(event: Any) -> McpRequest:
    """Read the REQUEST-phase fields of an interceptor event; raise MalformedEvent when unusable. The body is
    read first, so its id is echoed even when the rest of the envelope is wrong. JSON objects are dicts here
    (what the runtime's JSON parser makes; checked as such, which is also the cheapest check)."""
    if not isinstance(event, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "event is not a JSON object")
    mcp = event.get("mcp")
    if mcp is None and "http" in event:
        raise MalformedEvent(Reason.UNSUPPORTED_TARGET, "HTTP target event", target_kind="http")
    if not isinstance(mcp, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "event has no 'mcp' object")
    gateway_request = mcp.get("gatewayRequest")
    if not isinstance(gateway_request, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "event has no 'mcp.gatewayRequest' object")
    body = _body(gateway_request.get("body"))
    rpc_id = _rpc_id(body)
    _check_strict(body, rpc_id)
    raw_headers = gateway_request.get("headers")
    if raw_headers is not None and not isinstance(raw_headers, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "gatewayRequest.headers is not an object", rpc_id)
    headers = None if raw_headers is None else header_fields(raw_headers)
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC body has no method", rpc_id)
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC params is not an object", rpc_id)
    arguments = params.get("arguments", {})
    if not isinstance(arguments, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "params.arguments is not an object", rpc_id)
    tool = None
    if method == TOOLS_CALL:
        tool = params.get("name")
        if not isinstance(tool, str) or not tool:
            raise MalformedEvent(Reason.REQUEST_MALFORMED, "tools/call has no tool name", rpc_id)
    sessions = headers.get("mcp-session-id") if headers else None
    session = sessions[0] if sessions else None
    if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
        session = None  # not an MCP session id: nothing to correlate, and never into the audit line
    modern = protocol.is_modern(method, params, headers)
    return McpRequest(body, headers, method, rpc_id, "id" not in body, session, tool, arguments, modern)


def parse_response(event: Mapping[str, Any]) -> McpResponse:
    """Read a RESPONSE-phase event; the request part is parsed exactly as on the REQUEST path (and first, so
    its id is echoed). A status outside 100-599, or a body that is not strict JSON, is a malformed event."""
    request = parse_request(event)
    gateway_response = event["mcp"]["gatewayResponse"]
    if not isinstance(gateway_response, Mapping):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "gatewayResponse is not an object", request.rpc_id)
    status = gateway_response.get("statusCode", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedEvent(
            Reason.REQUEST_MALFORMED, "gatewayResponse.statusCode is not an HTTP status (100-599)", request.rpc_id
        )
    body = gateway_response.get("body")
    if not encodable(body) or (isinstance(body, str) and not _text_carriable(body)):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "gatewayResponse.body is not strict JSON", request.rpc_id)
    return McpResponse(status, body, request)


def check_method(request: McpRequest, forward_uncovered: frozenset[str]) -> None:
    """Refuse a method the method table does not let through (`forward_uncovered`: the UNCOVERED methods an
    administrator forwards, FORWARD_UNCOVERED_METHODS); run on both phases."""
    refused = methods.refusal(request.method, forward_uncovered)
    if refused is not None:
        raise MalformedEvent(refused, _METHOD_DETAIL[refused], request.rpc_id)


def check_headers(request: McpRequest) -> None:
    """Refuse a request whose MCP headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`)
    disagree with its body, before any token or policy (run on both phases): something that routes on a header
    must not be steered away from what policy decides on. An event without headers is left to authentication,
    which refuses it as a configuration error."""
    if request.headers is None:
        return
    params = request.body.get("params", {})
    problem = protocol.header_problem(request.method, params, request.headers)
    if problem is not None:
        raise MalformedEvent(Reason.HEADER_MISMATCH, problem, request.rpc_id)


def encodable(value: Any) -> bool:
    """Whether `value` serialises as strict JSON in UTF-8 (what the gateway can read): no NaN or infinities,
    no lone surrogates, only JSON types, not nested beyond what the encoder can take."""
    return _strict_text(value) is not None


def _strict_text(value: Any) -> str | None:
    """`value` as strict JSON text that is valid UTF-8, or None."""
    try:
        text = _STRICT(value)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        return None
    return text


def _text_carriable(text: str) -> bool:
    """A body given as JSON text must be strict JSON too once read (tool lists are read and written back); a
    text that is not JSON at all is judged later like any other body (passed through, or unfilterable)."""
    try:
        parsed = json.loads(text)
    except RecursionError:
        return False
    except ValueError:
        return True
    return encodable(parsed)


def _body(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, str):
        try:
            raw = jsontext.STRICT_JSON.decode(raw)
        except (ValueError, RecursionError):
            raise MalformedEvent(Reason.REQUEST_MALFORMED, "request body is not strict JSON") from None
    if isinstance(raw, list):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC batch requests are not supported")
    if not isinstance(raw, dict):
        raise MalformedEvent(Reason.REQUEST_MALFORMED, "request body is not a JSON-RPC object")
    return raw


def _rpc_id(body: Mapping[str, Any]) -> Any:
    """The id, when it is one JSON-RPC allows and it can be echoed; otherwise the request is refused (id null)."""
    rpc_id = body.get("id")
    if rpc_id is None:
        return None
    if (type(rpc_id) is str and rpc_id.isascii()) or (type(rpc_id) is int and abs(rpc_id) < (_INT_LIMIT or 1 << 63)):
        return rpc_id  # the common ids, plainly writable (saves an encoder call per request)
    if isinstance(rpc_id, str | int) and not isinstance(rpc_id, bool) and encodable(rpc_id):
        return rpc_id
    raise MalformedEvent(Reason.REQUEST_MALFORMED, "JSON-RPC id must be a string, an integer or null")


def _check_strict(body: Mapping[str, Any], rpc_id: Any) -> None:
    """At most MAX_DEPTH levels, only JSON types, string keys, no NaN or infinities (the Lambda runtime reads
    1e400 as inf), no lone surrogates. Everything downstream (policy, stamping, the answer) may then walk the body
    freely. The common case is decided in C (`_plainly_strict`); anything it cannot vouch for takes the exact
    walk (`json_problem`), which names the problem."""
    problem = None if _plainly_strict(body) else json_problem(body)
    if problem is not None:
        raise MalformedEvent(Reason.REQUEST_MALFORMED, f"request body is not strict JSON: {problem}", rpc_id)


def _plainly_strict(body: Mapping[str, Any]) -> bool:
    """The body holds only JSON types with text keys, valid Unicode, integers within 64 bits and finite numbers,
    with at most MAX_DEPTH brackets (so it cannot nest deeper). orjson refuses everything else except NaN and
    infinities, which it writes as null: a body with one does not read back equal to itself (NaN equals nothing;
    null is not inf). One encode, one decode, one comparison, all in C (~1 us for a `tools/call`; the walk ~6 us)."""
    try:
        text = orjson.dumps(body, option=jsontext.PLAIN_TYPES_ONLY)  # anything else goes to the exact walk
    except TypeError:  # orjson.JSONEncodeError: a value, key, integer or string it cannot vouch for
        return False
    return text.count(b"{") + text.count(b"[") <= MAX_DEPTH and orjson.loads(text) == body


def json_problem(value: Any) -> str | None:
    """The first reason `value` is not what a strict JSON body may hold (exact JSON types, text keys, valid
    Unicode, finite numbers, integers Python can write back, at most MAX_DEPTH levels), or None. One iterative
    walk (never recursion: a cycle ends at the depth limit). The body check's exact path, and where the policy
    toolkit reads arguments: the engine then sees only what the gateway could pass it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            problem = None if node.isascii() or _utf8(node) else "a string is not valid Unicode"
        elif isinstance(node, float):
            problem = None if math.isfinite(node) else "a number is not finite"
        elif type(node) is dict or type(node) is list:  # what a JSON parser makes (a subclass may encode otherwise)
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            if type(node) is dict:
                if not all(isinstance(key, str) and (key.isascii() or _utf8(key)) for key in node):
                    return "an object key is not valid text"
                node = node.values()
            stack.extend((child, depth + 1) for child in node)
            continue
        elif isinstance(node, int):
            problem = None if _INT_LIMIT is None or abs(node) < _INT_LIMIT else "an integer is too long to write"
        else:
            problem = None if node is None else "a value is not a JSON type"
        if problem is not None:
            return problem
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def header_fields(headers: Mapping[Any, Any]) -> dict[str, list[Any]]:
    """Header values by lower-case name, in the order sent (HTTP names are case-insensitive: `Authorization` and
    `authorization` are one header sent twice). Read once per event; every later step looks names up here.
    Names that are not text are dropped: no header the interceptor reads can be spelled so."""
    fields: dict[str, list[Any]] = {}
    for key, value in headers.items():
        if isinstance(key, str):
            fields.setdefault(key.lower(), []).append(value)
    return fields


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


def tool_error(rpc_id: Any, text: str, modern: bool = False) -> dict[str, Any]:
    """A `tools/call` result the agent reads as a refusal (AgentCore Policy's and Teleport's shape), valid in
    the request's era: 2026-07-28 results must state `resultType`, legacy ones never carried it."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if modern:
        result[protocol.RESULT_TYPE] = protocol.COMPLETE
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}
