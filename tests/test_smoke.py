from devtools.gateway import request_event, tool_call


def test_allowed_call_is_forwarded_with_identity(issuer, interceptor):
    token = issuer.mint(user="alice", roles=["developer"])
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token))
    args = out["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"]
    assert args == {"order_id": "42", "_teleport_user": "alice", "_teleport_roles": ["developer"]}
