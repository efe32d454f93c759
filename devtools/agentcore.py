"""A local stand-in for Amazon Bedrock AgentCore Gateway in front of MCP-server targets, for end-to-end tests with
real MCP clients. DEVELOPMENT ONLY: it listens on 127.0.0.1, forwards to 127.0.0.1 only, and stops with its
`with` block.

Built from AgentCore's documented interceptor contract (developer guide, "Gateway interceptors"), not its code.
For each POST on `/mcp` (streamable HTTP, JSON answers) it:

1. builds the REQUEST interceptor event (every request header, as with `passRequestHeaders: true`; the raw and the
   parsed body) and calls the interceptor in-process, one event at a time like one Lambda container;
2. answers with the output's `transformedGatewayResponse` when there is one, else serves the body of its
   `transformedGatewayRequest`: `initialize`, `ping` and notifications itself, `tools/list` from every target
   (tool names become `<target>___<tool>`), `tools/call` on the target the name's prefix names (the name rewritten
   to the target's own);
3. runs the RESPONSE interceptor event on that answer (after a REQUEST short-circuit too, as AgentCore does for MCP
   targets) and answers as its output says.

An output outside the contract is answered 500, where AgentCore logs "Received invalid response from interceptor".
Not modelled: the inbound JWT authorizer (token checks are the interceptor's), header/body validation of its own
(so a test sees what the interceptor alone enforces), `server/discover`, resources, prompts, paged target lists.
Towards a target it passes the client's `MCP-Protocol-Version` and `Mcp-Param-*` headers on, sets `Mcp-Method` and
`Mcp-Name` from the forwarded body (so the name is the target's) when the client sent them (2026-07-28), and adds
`Authorization` only if the interceptor set one.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from devtools import loopback

InterceptorHandler = Callable[[Any], Mapping[str, Any]]
SEPARATOR = "___"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
MAX_BODY_BYTES = 1 << 20
PARSE_ERROR, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32601, -32602, -32603
_PLAIN_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
_BASE64_SENTINEL = re.compile(r"=\?base64\?.*\?=")


@dataclass(frozen=True)
class Answer:
    """What the gateway answers the client: HTTP status, JSON body (None: no body) and extra headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Gateway:
    """The gateway's request path; `serve()` puts it on HTTP. `targets` maps target names to MCP endpoint URLs."""

    def __init__(self, interceptor: InterceptorHandler, targets: Mapping[str, str], timeout_s: float = 10.0) -> None:
        if not targets:
            raise ValueError("a gateway needs at least one target")
        for name, url in targets.items():
            parts = urlsplit(url)
            if not name or SEPARATOR in name or parts.scheme != "http" or parts.hostname != "127.0.0.1":
                raise ValueError(f"target {name!r}: a name without {SEPARATOR!r} and an http://127.0.0.1 URL")
        self._interceptor = interceptor
        self._targets = dict(targets)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()

    def post(self, headers: Mapping[str, str], raw: bytes) -> Answer:
        """One client POST: REQUEST interceptor, then the gateway or a target, then RESPONSE interceptor."""
        try:
            text = raw.decode("utf-8")
            body = json.loads(text)
        except ValueError:
            return Answer(400, _error(None, PARSE_ERROR, "Parse error"))
        gateway_request = {"path": "/mcp", "httpMethod": "POST", "headers": dict(headers), "body": body}
        event = {
            "interceptorInputVersion": "1.0",
            "mcp": {"rawGatewayRequest": {"body": text}, "gatewayRequest": gateway_request},
        }
        rpc_id = body.get("id") if isinstance(body, Mapping) else None
        output = self._intercept(event)
        short_circuit = _part(output, "transformedGatewayResponse")
        forward = _part(output, "transformedGatewayRequest")
        if short_circuit is not None:
            answer = _answer(short_circuit) or _invalid(rpc_id)
        elif forward is not None and isinstance(forward.get("body"), Mapping):
            answer = self._serve(forward["body"], headers, forward.get("headers"))
        else:
            answer = _invalid(rpc_id)
        return self._response_phase(event, answer, rpc_id)

    def _intercept(self, event: dict[str, Any]) -> Mapping[str, Any] | None:
        """The interceptor's output, or None when it breaks the contract."""
        with self._lock:
            output = self._interceptor(event)
        ok = isinstance(output, Mapping) and output.get("interceptorOutputVersion") == "1.0"
        return output if ok else None

    def _response_phase(self, event: dict[str, Any], answer: Answer, rpc_id: Any) -> Answer:
        response_event = copy.deepcopy(event)
        headers = {"Content-Type": "application/json", **answer.headers} if answer.body is not None else answer.headers
        response_event["mcp"]["gatewayResponse"] = {
            "statusCode": answer.status,
            "headers": dict(headers),
            "body": answer.body,
        }
        output = self._intercept(response_event)
        if output is not None and "mcp" not in output:
            return answer  # the bare output of AWS's notification sample: nothing to change
        transformed = _part(output, "transformedGatewayResponse")
        return (_answer(transformed, answer.headers) if transformed is not None else None) or _invalid(rpc_id)

    def _serve(self, body: Mapping[str, Any], headers: Mapping[str, str], set_headers: Any) -> Answer:
        """What the gateway does with a request the interceptor let through."""
        if "id" not in body:
            return Answer(202)
        rpc_id, method = body["id"], body.get("method")
        params: Mapping[str, Any] = body["params"] if isinstance(body.get("params"), Mapping) else {}
        auth = _header(set_headers, "authorization") if isinstance(set_headers, Mapping) else None
        if method == "initialize":
            requested = params.get("protocolVersion")
            version = requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0]
            result = {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "agentcore-gateway-standin", "version": "0"},
            }
            return Answer(200, {"jsonrpc": "2.0", "id": rpc_id, "result": result}, {"Mcp-Session-Id": uuid.uuid4().hex})
        if method == "ping":
            return Answer(200, {"jsonrpc": "2.0", "id": rpc_id, "result": {}})
        if method == "tools/list":
            return self._list_tools(body, params, headers, auth)
        if method == "tools/call":
            target, separator, tool = str(params.get("name")).partition(SEPARATOR)
            if not separator or not tool or target not in self._targets:
                return Answer(400, _error(rpc_id, INVALID_PARAMS, "Unknown tool"))
            forwarded = {**body, "params": {**params, "name": tool}}
            return self._post_target(self._targets[target], forwarded, headers, auth)
        return Answer(404, _error(rpc_id, METHOD_NOT_FOUND, "Method not found"))

    def _list_tools(
        self, body: Mapping[str, Any], params: Mapping[str, Any], headers: Mapping[str, str], auth: str | None
    ) -> Answer:
        """Every target's tools under gateway names in one page (the cursor is the gateway's, never forwarded)."""
        forwarded = {**body, "params": {k: v for k, v in params.items() if k != "cursor"}}
        results: list[tuple[str, Mapping[str, Any]]] = []
        for target, url in self._targets.items():
            answer = self._post_target(url, forwarded, headers, auth)
            result = answer.body.get("result") if answer.status == 200 and isinstance(answer.body, Mapping) else None
            if not isinstance(result, Mapping) or not isinstance(result.get("tools"), list):
                return answer
            if result.get("nextCursor") is not None:
                return Answer(502, _error(body["id"], INTERNAL_ERROR, f"target {target} pages its tool list"))
            results.append((target, result))
        merged = {k: v for k, v in results[0][1].items() if k != "tools"}
        merged["tools"] = [
            {**tool, "name": f"{target}{SEPARATOR}{tool['name']}"}
            for target, result in results
            for tool in result["tools"]
            if isinstance(tool, Mapping) and isinstance(tool.get("name"), str)
        ]
        scopes = [result.get("cacheScope") for _, result in results]
        if any(scope is not None for scope in scopes):  # shared only if every target says so
            merged["cacheScope"] = "public" if all(scope == "public" for scope in scopes) else "private"
        ttls = [result["ttlMs"] for _, result in results if isinstance(result.get("ttlMs"), int)]
        if ttls:
            merged["ttlMs"] = min(ttls)
        return Answer(200, {"jsonrpc": "2.0", "id": body["id"], "result": merged})

    def _post_target(self, url: str, body: Mapping[str, Any], client: Mapping[str, str], auth: str | None) -> Answer:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        version = _header(client, "mcp-protocol-version")
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        if _header(client, "mcp-method") is not None:  # a 2026-07-28 client: the headers mirror the body sent on
            headers["Mcp-Method"] = str(body.get("method"))
            name = body["params"].get("name") if body.get("method") == "tools/call" else None
            if isinstance(name, str):
                headers["Mcp-Name"] = header_value(name)
        headers.update({k: v for k, v in client.items() if k.lower().startswith("mcp-param-")})
        if auth is not None:
            headers["Authorization"] = auth
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=self._timeout_s)
        try:
            connection.request("POST", parts.path or "/", json.dumps(body).encode(), headers)
            response = connection.getresponse()
            status, data = response.status, response.read(MAX_BODY_BYTES + 1)
        except (OSError, http.client.HTTPException):
            return Answer(502, _error(body.get("id"), INTERNAL_ERROR, "target unavailable"))
        finally:
            connection.close()
        if not data:
            return Answer(status)
        try:
            if len(data) > MAX_BODY_BYTES:
                raise ValueError("too large")
            return Answer(status, json.loads(data))
        except ValueError:
            return Answer(502, _error(body.get("id"), INTERNAL_ERROR, "target answer is not a JSON body"))


@contextmanager
def serve(gateway: Gateway) -> Iterator[str]:
    """Serve `gateway` on 127.0.0.1 (random port) for the length of the block; yields its MCP endpoint URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = self.headers.get("Content-Length", "")
            if urlsplit(self.path).path != "/mcp":
                self._send(Answer(404))
            elif not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self._send(Answer(413 if length.isdigit() else 411))
            else:
                raw = self.rfile.read(int(length))
                headers: dict[str, str] = {}
                for name, value in self.headers.items():  # one entry per name; repeated headers joined as HTTP does
                    known = next((k for k in headers if k.lower() == name.lower()), name)
                    headers[known] = f"{headers[known]}, {value}" if known in headers else value
                self._send(gateway.post(headers, raw))

        def do_GET(self) -> None:  # no server-initiated stream; also what a 2026-07-28 server answers
            self._send(Answer(405, headers={"Allow": "POST"}))

        def do_DELETE(self) -> None:  # sessions are not tracked, so there is nothing to end
            self._send(Answer(405, headers={"Allow": "POST"}))

        def _send(self, answer: Answer) -> None:
            data = b"" if answer.body is None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # request lines are not logged

    with loopback.serve(Handler) as address:
        yield f"http://{address}/mcp"


def _part(output: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
    mcp = output.get("mcp") if output is not None else None
    value = mcp.get(key) if isinstance(mcp, Mapping) else None
    return value if isinstance(value, Mapping) else None


def _answer(response: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Answer | None:
    """A `transformedGatewayResponse` as an answer, or None when its statusCode is not an HTTP status."""
    status = response.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    return Answer(status, response.get("body"), headers or {})


def _invalid(rpc_id: Any) -> Answer:
    return Answer(500, _error(rpc_id, INTERNAL_ERROR, "Received invalid response from interceptor"))


def _error(rpc_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    return next((v for k, v in headers.items() if str(k).lower() == name and isinstance(v, str)), None)


def header_value(value: str) -> str:
    """MCP's header encoding: plain printable ASCII as is, anything else as `=?base64?<UTF-8 base64>?=`."""
    if _PLAIN_HEADER_VALUE.fullmatch(value) and value == value.strip() and not _BASE64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="
