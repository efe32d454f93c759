"""`make events`: (re)generate the sample events in `events/` with a DEVELOPMENT-ONLY signing key.

Mints with a fresh RSA key that is never written down, writes its public JWKS (events/dev-jwks.json), the env file
for `sam local invoke --env-vars events/env.json` (which pins that JWKS, so no issuer needs to be reachable),
and one event per situation. Nothing trusts this key unless configured with TELEPORT_JWKS=events/dev-jwks.json.
Tokens in the events stay valid for VALID_DAYS days; run `make events` again after that.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from devtools.gateway import notification, request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer, new_key

EVENTS = Path(__file__).resolve().parent.parent / "events"
DEV_ISSUER = "https://teleport.example.com"
DEV_AUDIENCE = "mcp+https://gateway.example.com/mcp"
VALID_DAYS = 30


def sample_events(issuer: Issuer) -> dict[str, dict[str, Any]]:
    """Event name -> interceptor event, one per situation a user wants to see."""
    ttl = VALID_DAYS * 86400
    alice = issuer.mint(user="alice", roles=["developer"], traits={"logins": ["alice"]}, ttl=ttl)
    carol = issuer.mint(user="carol", roles=["order-admin"], ttl=ttl)
    bot = issuer.mint(user="bot-reporter", roles=["bot-reporter", "order-admin"], traits=None, ttl=ttl)
    expired = issuer.mint(user="alice", roles=["developer"], ttl=-3600)
    get_order = tool_call("orders___get_order_tool", {"order_id": "42"}, rpc_id=7)
    update = tool_call("orders___update_order", {"order_id": "42", "status": "shipped"}, rpc_id=8)
    tools_list = request_event(rpc("tools/list", {}, rpc_id=3), alice)
    return {
        "initialize": request_event(
            rpc(
                "initialize",
                {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "tsh", "version": "18"}},
                rpc_id=1,
            ),
            alice,
        ),
        "notification": request_event(notification("notifications/initialized"), alice),
        "tools-list": tools_list,
        "allowed-call": request_event(get_order, alice),
        "admin-update": request_event(update, carol),
        "denied-call": request_event(update, alice),
        "bot-denied": request_event(update, bot),
        "unknown-tool": request_event(tool_call("payroll___pay", {"amount": 1}, rpc_id=9), alice),
        "spoofed-identity": request_event(
            tool_call(
                "orders___get_order_tool",
                {"order_id": "42", "_teleport_user": "carol", "_teleport_roles": ["order-admin"]},
                rpc_id=10,
            ),
            alice,
        ),
        "expired-token": request_event(get_order, expired),
        "missing-token": request_event(get_order),
        "missing-headers": request_event(get_order, alice, with_headers=False),
        "response-tools-list": response_event(
            tools_list, {"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "orders___get_order_tool"}]}}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=EVENTS, help="folder to write (default: events/)")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    key = new_key()
    issuer = Issuer(DEV_ISSUER, DEV_AUDIENCE, key)
    jwks = json.dumps(issuer.jwks(), indent=2)
    (out / "dev-jwks.json").write_text(jwks + "\n")
    env = {
        "TELEPORT_ISSUER": DEV_ISSUER,
        "TELEPORT_AUDIENCE": DEV_AUDIENCE,
        "TELEPORT_JWKS": json.dumps(issuer.jwks()),
        "ENFORCEMENT_MODE": "enforce",
        "SESSION_ROLE_ARN": "",
        "SESSION_TOOLS": "",
    }
    (out / "env.json").write_text(json.dumps({"InterceptorFunction": env}, indent=2) + "\n")
    events = sample_events(issuer)
    for name, event in events.items():
        (out / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {len(events)} events to {out} (tokens valid {VALID_DAYS} days; DEVELOPMENT KEY)")


if __name__ == "__main__":
    main()
