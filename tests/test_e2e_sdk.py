"""End to end with the official MCP SDK (`mcp` 2.3.0) on both sides: its client -> `devtools.agentcore` (the gateway
stand-in, from the documented contract) -> our interceptor in-process (real RS256 tokens from a local issuer, Cedar
policies in a temp folder, schema generated from the target's own tool definitions) -> an SDK `MCPServer` target
(`devtools.sdk_server`) on loopback. Every scenario runs in legacy mode (2025-11-25, initialize) and 2026-07-28 mode
unless it exists in one era only. Each client session is bounded by TIMEOUT_S: a refusal must never hang."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult

from devtools import agentcore, sdk_server
from devtools.issuer import Issuer
from interceptor.audit import Auditor
from interceptor.protocol import MAX_FILTERED_TTL_MS
from interceptor.wiring import build
from policy_toolkit.schema import render
from tool_identity import IDENTITY_META_KEY

TIMEOUT_S = 10
LEGACY, MODERN = "legacy", "2026-07-28"
MODES = [LEGACY, MODERN]
POLICIES = """
@id("developers-read-and-cancel")
permit (
  principal in Teleport::Role::"developer",
  action in [Teleport::Action::"shop___get_order", Teleport::Action::"shop___list_orders",
             Teleport::Action::"shop___whoami", Teleport::Action::"shop___cancel_order"],
  resource
);

@id("order-admins-everything")
permit (
  principal in Teleport::Role::"order-admin",
  action in [Teleport::Action::"shop", Teleport::Action::"mirror"],
  resource
);
"""
TRACE: Any = {"com.example/trace": "t-1"}
DEVELOPER_TOOLS = {"shop___get_order", "shop___list_orders", "shop___whoami", "shop___cancel_order"}
TARGET_TOOLS = {"get_order", "list_orders", "update_order", "cancel_order", "whoami"}
ALICE: dict[str, Any] = {"user": "alice", "roles": ["developer"]}
CAROL: dict[str, Any] = {"user": "carol", "roles": ["order-admin"]}


@dataclass(frozen=True)
class Stack:
    url: str
    issuer: Issuer
    audit: list[str]  # every audit line the interceptor wrote

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        return [json.loads(line)["audit"] for line in self.audit[since:]]

    def token(self, who: dict[str, Any], **claims: Any) -> str:
        return self.issuer.mint(user=who["user"], roles=who["roles"], **claims)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Issuer, SDK target, interceptor and gateway, once for the module. Targets `shop` and `mirror` are the same
    server under two gateway names, so routing and merged lists across targets are exercised too."""
    server = sdk_server.build()
    definitions = [t.model_dump(by_alias=True, exclude_none=True) for t in anyio.run(server.list_tools)]
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "schema.cedarschema").write_text(render({"shop": definitions, "mirror": definitions}))
    (policy_dir / "shop.cedar").write_text(POLICIES)
    with Issuer().serve() as issuer, sdk_server.serve(server) as target:
        env = {"TELEPORT_ISSUER": issuer.url, "TELEPORT_AUDIENCE": issuer.audience, "POLICY_DIR": str(policy_dir)}
        audit: list[str] = []
        gateway = agentcore.Gateway(build(env, Auditor(audit.append)).handle, {"shop": target, "mirror": target})
        with agentcore.serve(gateway) as url:
            yield Stack(url, issuer, audit)


@dataclass
class Wire:
    """What crossed the client's HTTP connection: each request's JSON body, each response's (method, status)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[str | None, int]] = field(default_factory=list)

    def statuses(self, method: str) -> list[int]:
        return [status for m, status in self.answers if m == method]


@asynccontextmanager
async def connect(
    url: str,
    token: str,
    mode: str,
    wire: Wire | None = None,
    tamper: Callable[[httpx2.Request], None] | None = None,
    elicit: ElicitationFnT | None = None,
) -> AsyncIterator[Client]:
    """An SDK client on the gateway with `token` as its bearer, recording to `wire`; `tamper` may change each
    request before it leaves."""
    wire = wire if wire is not None else Wire()

    async def on_request(request: httpx2.Request) -> None:
        if tamper is not None:
            tamper(request)
        if request.method == "POST":
            wire.requests.append(json.loads(request.content))

    async def on_response(response: httpx2.Response) -> None:
        sent = json.loads(response.request.content) if response.request.method == "POST" else {}
        wire.answers.append((sent.get("method"), response.status_code))

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(TIMEOUT_S),
        event_hooks={"request": [on_request], "response": [on_response]},
    )
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, elicitation_callback=elicit) as c:
        yield c


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` within TIMEOUT_S; an error escaping the SDK's task groups is raised as itself."""

    async def bounded() -> None:
        with anyio.fail_after(TIMEOUT_S):
            await scenario()

    try:
        anyio.run(bounded)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if isinstance(error, BaseExceptionGroup):
            raise
        raise error from group


def payload(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def text(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", MODES)
def test_each_caller_lists_the_tools_policy_lets_them_call(stack: Stack, mode: str) -> None:
    listed: dict[str, set[str]] = {}

    async def scenario() -> None:
        for who in (ALICE, CAROL):
            async with connect(stack.url, stack.token(who), mode) as client:
                listed[who["user"]] = {tool.name for tool in (await client.list_tools()).tools}

    run(scenario)
    assert listed["alice"] == DEVELOPER_TOOLS
    assert listed["carol"] == {f"{target}___{tool}" for target in ("shop", "mirror") for tool in TARGET_TOOLS}


@pytest.mark.parametrize("mode", MODES)
def test_allowed_call_reaches_the_tool_with_the_verified_identity(stack: Stack, mode: str) -> None:
    wire = Wire()

    async def scenario() -> None:
        async with connect(stack.url, stack.token(ALICE), mode, wire) as client:
            seen = payload(await client.call_tool("shop___whoami", {}, meta=TRACE))
            own = payload(await client.call_tool("shop___get_order", {"order_id": "42"}))
            other = await client.call_tool("shop___get_order", {"order_id": "43"})
        assert seen["caller"] == ALICE  # through the helper, from _meta
        assert seen["stamped_arguments"] == {"_teleport_user": "alice", "_teleport_roles": ["developer"]}
        assert {"com.example/trace", IDENTITY_META_KEY} <= set(seen["meta_keys"])  # the caller's own keys are kept
        if mode == MODERN:
            assert "io.modelcontextprotocol/protocolVersion" in seen["meta_keys"]
        assert (own["order"]["owner"], own["caller"]) == ("alice", ALICE)
        assert other.is_error and "no such order for you" in text(other)  # the tool decides with the identity

    run(scenario)
    assert wire.requests and IDENTITY_META_KEY not in json.dumps(wire.requests)  # the client never sent one


def test_calls_route_to_the_target_their_name_prefixes(stack: Stack) -> None:
    async def scenario() -> None:
        async with connect(stack.url, stack.token(CAROL), LEGACY) as client:
            seen = payload(await client.call_tool("mirror___whoami", {}))
            unknown = await client.call_tool("nowhere___whoami", {})
        assert seen["caller"] == CAROL
        assert unknown.is_error and "tool_unknown" in text(unknown)

    run(scenario)


@pytest.mark.parametrize("mode", MODES)
def test_denial_is_a_result_the_client_can_read(stack: Stack, mode: str) -> None:
    async def scenario() -> None:
        async with connect(stack.url, stack.token(ALICE), mode) as client:
            result = await client.call_tool("shop___update_order", {"order_id": "42", "status": "shipped"})
        assert result.is_error
        assert "Teleport user 'alice' may not call tool 'shop___update_order'" in text(result)
        assert "policy_denied" in text(result)
        assert result.result_type == "complete"  # a 2026-07-28 client requires it; legacy reads absent as complete

    run(scenario)


@pytest.mark.parametrize("mode", MODES)
def test_spoofed_identity_in_arguments_and_meta_never_reaches_the_tool(stack: Stack, mode: str) -> None:
    spoof = {"_teleport_user": "carol", "_Teleport_Roles": ["order-admin"]}
    meta: Any = {IDENTITY_META_KEY: CAROL, "SH.Teleport/Identity": CAROL, "_teleport_user": "carol", "com.example/x": 1}
    wire = Wire()

    async def scenario() -> None:
        async with connect(stack.url, stack.token(ALICE), mode, wire) as client:
            seen = payload(await client.call_tool("shop___whoami", spoof, meta=meta))
        assert seen["caller"] == ALICE
        assert seen["stamped_arguments"] == {"_teleport_user": "alice", "_teleport_roles": ["developer"]}
        assert "SH.Teleport/Identity" not in seen["meta_keys"]
        assert "_teleport_user" not in seen["meta_keys"]
        assert "com.example/x" in seen["meta_keys"]

    run(scenario)
    sent = next(body["params"] for body in wire.requests if body.get("method") == "tools/call")
    assert sent["_meta"][IDENTITY_META_KEY] == CAROL and sent["arguments"] == spoof  # the spoof did leave the client


def test_spoofed_roles_do_not_authorize(stack: Stack) -> None:
    spoof = {"_teleport_user": "carol", "_teleport_roles": ["order-admin"]}
    meta: Any = {IDENTITY_META_KEY: CAROL}

    async def scenario() -> None:
        async with connect(stack.url, stack.token(ALICE), LEGACY) as client:
            denied = await client.call_tool(
                "shop___update_order", {"order_id": "43", "status": "x", **spoof}, meta=meta
            )
        assert denied.is_error and "Teleport user 'alice' may not call tool" in text(denied)

    run(scenario)


@pytest.mark.parametrize("mode", MODES)
def test_expired_token_is_refused_with_401_and_never_hangs(stack: Stack, mode: str) -> None:
    expired = stack.token(ALICE, now=time.time() - 3600)
    wire = Wire()

    async def scenario() -> None:
        async with connect(stack.url, expired, mode, wire) as client:  # legacy: refused at initialize
            await client.list_tools()

    with pytest.raises(MCPError) as refused:
        run(scenario)
    assert "token_expired" in refused.value.message
    assert refused.value.code == -31001  # ours, not the SDK's -32001 (its local request timeout)
    assert [status for _, status in wire.answers] == [401]  # one refusal, no retry loop


@pytest.mark.parametrize(
    ("header", "value"),
    [("Mcp-Method", "tools/list"), ("Mcp-Name", "shop___update_order")],
    ids=["method", "name"],
)
def test_method_header_that_disagrees_with_the_body_is_refused(stack: Stack, header: str, value: str) -> None:
    def tamper(request: httpx2.Request) -> None:
        if request.headers.get("mcp-method") == "tools/call":
            request.headers[header] = value

    wire = Wire()
    start = len(stack.audit)

    async def scenario() -> None:
        async with connect(stack.url, stack.token(CAROL), MODERN, wire, tamper=tamper) as client:
            await client.call_tool("shop___whoami", {})

    with pytest.raises(MCPError) as refused:
        run(scenario)
    assert refused.value.code == -32020  # HeaderMismatch
    assert wire.statuses("tools/call") and set(wire.statuses("tools/call")) == {400}  # also the SDK's one resend
    calls = [r for r in stack.records(start) if r["method"] == "tools/call"]
    assert calls and {(r["reason"], r.get("user")) for r in calls} == {("header_mismatch", None)}  # before the token


def test_multi_round_trip_call_is_authorized_and_stamped_each_round(stack: Stack) -> None:
    asked: list[str] = []
    wire = Wire()
    start = len(stack.audit)

    async def confirm(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async def scenario() -> None:
        async with connect(stack.url, stack.token(ALICE), MODERN, wire, elicit=confirm) as client:
            done = payload(await client.call_tool("shop___cancel_order", {"order_id": "42", "_teleport_user": "carol"}))
        assert done["order"]["status"] == "cancelled"
        assert done["caller"] == ALICE  # stamped into the retry: the client's spoof went with both rounds

    run(scenario)
    assert asked == ["Cancel order 42?"]
    calls = [body["params"] for body in wire.requests if body.get("method") == "tools/call"]
    assert len(calls) == 2
    assert "inputResponses" not in calls[0]
    assert {"inputResponses", "requestState"} <= set(calls[1])  # the retry as the spec shapes it
    decisions = [
        (r["decision"], r["reason"], r["spoofed_arguments"])
        for r in stack.records(start)
        if r["phase"] == "REQUEST" and r["tool"] == "shop___cancel_order"
    ]
    assert decisions == [("allow", "allowed", ["_teleport_user"])] * 2  # each round authorized and cleaned


def test_filtered_list_is_private_even_when_the_target_says_public(stack: Stack) -> None:
    async def scenario() -> None:
        async with connect(stack.url, stack.token(ALICE), MODERN) as client:
            listed = await client.list_tools()
        assert listed.cache_scope == "private"  # the example target marks its own list public
        assert listed.ttl_ms == MAX_FILTERED_TTL_MS  # the target's 5 minutes, capped
        assert listed.result_type == "complete"

    run(scenario)


# The stand-in's own contract, with a scripted interceptor (no SDK, no token).


class Scripted:
    """An interceptor that lets every request through and records the events; `response` answers the RESPONSE
    phase (default: the bare output, i.e. unchanged)."""

    def __init__(self, request: Any = None, response: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.request, self.response = request, response

    def __call__(self, event: Any) -> Any:
        self.events.append(copy.deepcopy(event))
        if event["mcp"].get("gatewayResponse") is not None:
            return self.response or {"interceptorOutputVersion": "1.0"}
        body = event["mcp"]["gatewayRequest"]["body"]
        return self.request or {"interceptorOutputVersion": "1.0", "mcp": {"transformedGatewayRequest": {"body": body}}}


def rpc(method: str, params: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params or {}}).encode()


def test_standin_builds_both_events_from_the_documented_contract() -> None:
    scripted = Scripted()
    gateway = agentcore.Gateway(scripted, {"t": "http://127.0.0.1:9/mcp"})
    answer = gateway.post({"Authorization": "Bearer x"}, rpc("initialize", {"protocolVersion": "2025-06-18"}))
    assert answer.status == 200 and answer.body["result"]["protocolVersion"] == "2025-06-18"
    assert answer.headers["Mcp-Session-Id"]
    request, response = scripted.events
    assert request["interceptorInputVersion"] == "1.0"
    assert request["mcp"]["gatewayRequest"]["headers"] == {"Authorization": "Bearer x"}
    assert json.loads(request["mcp"]["rawGatewayRequest"]["body"]) == request["mcp"]["gatewayRequest"]["body"]
    assert response["mcp"]["gatewayRequest"] == request["mcp"]["gatewayRequest"]
    assert response["mcp"]["gatewayResponse"]["statusCode"] == 200
    assert response["mcp"]["gatewayResponse"]["body"] == answer.body


def test_standin_obeys_the_response_phase_output() -> None:
    rewritten = {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}
    response = {
        "interceptorOutputVersion": "1.0",
        "mcp": {"transformedGatewayResponse": {"statusCode": 203, "body": rewritten}},
    }
    answer = agentcore.Gateway(Scripted(response=response), {"t": "http://127.0.0.1:9/mcp"}).post({}, rpc("ping"))
    assert (answer.status, answer.body) == (203, rewritten)


@pytest.mark.parametrize(
    "output",
    [
        None,
        {},
        {"interceptorOutputVersion": "2.0"},
        {"interceptorOutputVersion": "1.0"},
        {"interceptorOutputVersion": "1.0", "mcp": {"transformedGatewayResponse": {"statusCode": "200"}}},
    ],
)
def test_standin_answers_500_to_an_interceptor_output_outside_the_contract(output: Any) -> None:
    answer = agentcore.Gateway(Scripted(request=output or {"x": 1}), {"t": "http://127.0.0.1:9/mcp"}).post(
        {}, rpc("ping")
    )
    assert answer.status == 500
    assert answer.body["error"]["message"] == "Received invalid response from interceptor"


def test_standin_never_forwards_what_it_cannot_route_or_reach() -> None:
    scripted = Scripted()
    gateway = agentcore.Gateway(scripted, {"t": "http://127.0.0.1:9/mcp"})  # port 9: nothing listens
    assert gateway.post({}, b"{not json").status == 400 and not scripted.events
    unknown = gateway.post({}, rpc("tools/call", {"name": "elsewhere___x"}))
    assert (unknown.status, unknown.body["error"]["code"]) == (400, -32602)
    down = gateway.post({}, rpc("tools/call", {"name": "t___x"}))
    assert (down.status, down.body["error"]["message"]) == (502, "target unavailable")
    assert gateway.post({}, rpc("resources/list")).status == 404


@pytest.mark.parametrize("url", ["http://example.com/mcp", "https://127.0.0.1/mcp", "http://localhost:1/mcp"])
def test_standin_forwards_to_loopback_only(url: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        agentcore.Gateway(Scripted(), {"t": url})


def test_standin_http_endpoint_is_post_only(stack: Stack) -> None:
    for method in ("GET", "DELETE"):
        assert httpx2.request(method, stack.url, timeout=TIMEOUT_S).status_code == 405


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("get_order", "get_order"),
        ("café", "=?base64?Y2Fmw6k=?="),
        (" padded", "=?base64?IHBhZGRlZA==?="),
        ("=?base64?eA==?=", "=?base64?PT9iYXNlNjQ/ZUE9PT89?="),
    ],
)
def test_standin_encodes_mirrored_names_as_mcp_headers_require(value: str, sent: str) -> None:
    assert agentcore.header_value(value) == sent
