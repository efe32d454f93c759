"""For tools built with the official MCP Python SDK (`mcp` 2.x `MCPServer`): the verified caller as a dependency.

    from tool_identity import Caller
    from tool_identity.mcp_sdk import VerifiedCaller

    @server.tool()
    def get_order(order_id: str, caller: VerifiedCaller) -> dict[str, str]:
        if not caller.has_role("order-admin"): ...

Why a dependency and not `_teleport_user`: the SDK refuses tool parameters starting with `_` and drops undeclared
arguments, so an SDK tool never sees the stamped arguments. The interceptor also stamps the identity into the
request's `params._meta` under `IDENTITY_META_KEY` (after removing whatever the agent sent there), and the SDK
hands that `_meta` to the tool's context. A `Resolve` parameter is filled by the SDK before the tool runs, is not
in the tool's input schema, and ignores any value the client sends for it. Without the stamp the call ends as a
tool error and the tool body never runs.

Only this module imports `mcp`: the rest of `tool_identity` ships with the interceptor Lambda, which does not.
Trust the identity only in a server that nothing but the gateway can reach.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError

from tool_identity import Caller, IdentityMissing


def verified_caller(ctx: Context[Any, Any]) -> Caller:
    """The caller the interceptor stamped into this request's `_meta`; a tool error when there is none."""
    try:
        return Caller.from_meta(ctx.request_context.meta)
    except IdentityMissing as exc:
        raise ToolError(str(exc)) from None


VerifiedCaller = Annotated[Caller, Resolve(verified_caller)]
"""A tool parameter of this type receives the verified `Caller` (user and roles; no AWS session)."""
