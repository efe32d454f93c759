"""An example MCP-server target built with the official MCP Python SDK (`MCPServer`), as a tool author would write
it behind the gateway; the target of the end-to-end test through `devtools.agentcore`. DEVELOPMENT ONLY: orders
live in memory and `serve()` listens on 127.0.0.1 only.

Every tool takes the verified caller through `tool_identity.mcp_sdk.VerifiedCaller` (stamped by the interceptor
into `params._meta`) and returns it, so a test can see what the tool saw. The tools:

- `get_order` (read-only): an order you own, any order for `order-admin`;
- `list_orders` (read-only): your orders, optionally filtered by a nullable `status` (published as
  `anyOf [string, null]`, the SDK's shape for optional arguments);
- `update_order` (destructive): set an order's status, recording who did it;
- `cancel_order` (destructive): asks the user to confirm first: on 2026-07-28 a multi round-trip call
  (`input_required`, then the retry with `inputResponses`/`requestState`);
- `whoami` (read-only): what reached the server: the caller through the helper, the `_teleport_*` arguments the
  interceptor stamped (all a Lambda target would get) and the names of the `_meta` keys.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from tool_identity import ROLES_ARG, USER_ARG, Caller, identity_meta
from tool_identity.mcp_sdk import VerifiedCaller

ADMIN_ROLE = "order-admin"
READ_ONLY = ToolAnnotations(read_only_hint=True)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True)
_START_TIMEOUT_S = 10.0


class Confirmation(BaseModel):
    """What `cancel_order` asks the user."""

    confirm: bool


def ask_to_cancel(order_id: str) -> Elicit[Confirmation]:
    """Resolver: ask the user before cancelling (the SDK turns this into an elicitation round)."""
    return Elicit(f"Cancel order {order_id}?", Confirmation)


def build() -> MCPServer:
    """A fresh server with its own orders: 42 (alice's, pending) and 43 (bob's, shipped)."""
    orders: dict[str, dict[str, str]] = {
        "42": {"owner": "alice", "status": "pending"},
        "43": {"owner": "bob", "status": "shipped"},
    }
    # Its own tool list does not depend on the caller, so it may be public; the gateway's list, filtered per caller,
    # is not (the interceptor must mark that one private).
    server = MCPServer("orders", cache_hints={"tools/list": CacheHint(ttl_ms=300_000, scope="public")})

    def order_for(caller: Caller, order_id: str) -> dict[str, str]:
        order = orders.get(order_id)
        if order is None or (order["owner"] != caller.user and not caller.has_role(ADMIN_ROLE)):
            # One answer for both, so others' order ids stay hidden; no argument value, as the SDK logs tool errors.
            raise ToolError("no such order for you")
        return order

    @server.tool(annotations=READ_ONLY)
    def get_order(order_id: str, caller: VerifiedCaller) -> dict[str, Any]:
        """One order: your own, or any for order admins."""
        return {
            "order": {"id": order_id, **order_for(caller, order_id)},
            "caller": identity_meta(caller.user, caller.roles),
        }

    @server.tool(annotations=READ_ONLY)
    def list_orders(caller: VerifiedCaller, status: str | None = None) -> dict[str, Any]:
        """Your orders (all for order admins), optionally only those with `status`."""
        mine = {
            order_id: order
            for order_id, order in orders.items()
            if (order["owner"] == caller.user or caller.has_role(ADMIN_ROLE)) and status in (None, order["status"])
        }
        return {"orders": sorted(mine), "caller": identity_meta(caller.user, caller.roles)}

    @server.tool(annotations=DESTRUCTIVE)
    def update_order(order_id: str, status: str, caller: VerifiedCaller) -> dict[str, Any]:
        """Set an order's status (gateway policy decides who may)."""
        order = order_for(caller, order_id)
        order.update(status=status, updated_by=caller.user)
        return {"order": {"id": order_id, **order}, "caller": identity_meta(caller.user, caller.roles)}

    @server.tool(annotations=DESTRUCTIVE)
    def cancel_order(
        order_id: str,
        caller: VerifiedCaller,
        confirmation: Annotated[Confirmation, Resolve(ask_to_cancel)],
    ) -> dict[str, Any]:
        """Cancel an order after the user confirms."""
        order = order_for(caller, order_id)
        if confirmation.confirm:
            order.update(status="cancelled", updated_by=caller.user)
        return {"order": {"id": order_id, **order}, "caller": identity_meta(caller.user, caller.roles)}

    @server.tool(annotations=READ_ONLY)
    def whoami(caller: VerifiedCaller, ctx: Context[Any, Any]) -> dict[str, Any]:
        """What reached this server about the caller (stamped values and `_meta` key names, never other values)."""
        params = ctx.request_context.params or {}
        arguments = params.get("arguments") or {}
        return {
            "caller": identity_meta(caller.user, caller.roles),
            "stamped_arguments": {k: arguments.get(k) for k in (USER_ARG, ROLES_ARG)},
            "meta_keys": sorted(ctx.request_context.meta or {}),
        }

    return server


@contextmanager
def serve(server: MCPServer) -> Iterator[str]:
    """Run `server` over streamable HTTP (stateless, JSON answers) on 127.0.0.1 (random port) for the length of
    the block; yields its MCP endpoint URL. Stateless, so a gateway can forward each request on its own."""
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    runner = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not runner.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the SDK target server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        runner.should_exit = True
        thread.join(timeout=_START_TIMEOUT_S)
        sock.close()
