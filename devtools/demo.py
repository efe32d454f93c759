"""`make demo`: the interceptor end to end against a local Teleport-like issuer.

Starts an OIDC issuer on 127.0.0.1 (discovery + JWKS, a fresh RSA key), builds the interceptor exactly as the
Lambda does at cold start, sends it the requests an agent would send through the gateway, and prints each
decision, the forwarded payload or the refusal, and the audit line the interceptor wrote.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from devtools.gateway import notification, request_event, rpc, tool_call
from devtools.issuer import Issuer

CAPTURED: list[dict[str, Any]] = []


class _AuditCapture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "audit":
            CAPTURED.append(record.__dict__["audit"])


class _Context:
    aws_request_id = "demo-request"


def main() -> None:
    with Issuer().serve() as issuer:
        # Configure and import the function exactly as Lambda does at cold start.
        os.environ.update(TELEPORT_ISSUER=issuer.url, TELEPORT_AUDIENCE=issuer.audience)
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # the demo shows decisions, not EMF lines
        from interceptor import app

        app.logger.addHandler(_AuditCapture())
        for handler in app.logger.handlers:
            if not isinstance(handler, _AuditCapture):
                handler.setLevel(logging.WARNING)  # the demo prints the audit records itself
        alice = issuer.mint(user="alice", roles=["developer", "db-reader"], traits={"db_names": ["sales"]})
        admin = issuer.mint(user="carol", roles=["order-admin"])
        bot = issuer.mint(user="bot-reporter", roles=["bot-reporter", "order-admin"])
        expired = issuer.mint(user="alice", ttl=-120)
        forged = Issuer(issuer.url, issuer.audience).mint(user="admin", roles=["order-admin"])
        scenarios = [
            ("initialize, valid token", request_event(rpc("initialize", {"protocolVersion": "2025-06-18"}), alice)),
            ("tools/list, valid token", request_event(rpc("tools/list", {}), alice)),
            ("notification, valid token", request_event(notification(), alice)),
            (
                "alice (developer) reads order 42",
                request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), alice),
            ),
            (
                "alice tries to update an order",
                request_event(tool_call("orders___update_order", {"order_id": "42", "status": "shipped"}), alice),
            ),
            (
                "carol (order-admin) ships order 42",
                request_event(tool_call("orders___update_order", {"order_id": "42", "status": "shipped"}), admin),
            ),
            (
                "carol sets an unknown status",
                request_event(tool_call("orders___update_order", {"order_id": "42", "status": "lost"}), admin),
            ),
            (
                "bot with order-admin role tries to update",
                request_event(tool_call("orders___update_order", {"order_id": "42", "status": "shipped"}), bot),
            ),
            (
                "alice queries her database (trait db_names)",
                request_event(tool_call("db___run_query", {"database": "sales", "query": "select 1"}), alice),
            ),
            (
                "alice queries another database",
                request_event(tool_call("db___run_query", {"database": "hr", "query": "select 1"}), alice),
            ),
            (
                "spoofed identity arguments",
                request_event(
                    tool_call(
                        "orders___get_order_tool",
                        {"order_id": "42", "_teleport_user": "carol", "_teleport_roles": ["order-admin"]},
                    ),
                    alice,
                ),
            ),
            ("unknown tool", request_event(tool_call("payroll___pay", {}), alice)),
            ("expired token", request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), expired)),
            (
                "token signed by another key",
                request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), forged),
            ),
            ("no Authorization header", request_event(tool_call("orders___get_order_tool", {"order_id": "42"}))),
            (
                "gateway without passRequestHeaders",
                request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), alice, with_headers=False),
            ),
        ]
        for title, event in scenarios:
            CAPTURED.clear()
            output = app.lambda_handler(event, cast("LambdaContext", _Context()))
            _show(title, output, CAPTURED[-1])
        print(
            f"\n{len(scenarios)} requests; keys fetched from the issuer {len(issuer.requests)} times "
            f"({', '.join(sorted(set(issuer.requests)))})."
        )


def _show(title: str, output: dict[str, Any], audit: dict[str, Any]) -> None:
    mcp = output.get("mcp", {})
    verdict = "FORWARD" if "transformedGatewayRequest" in mcp else "ANSWER "
    print(
        f"\n== {title}\n   {verdict} decision={audit['decision']} reason={audit['reason']}"
        f" user={audit['user']} policies={audit['policy_ids']}"
    )
    if "transformedGatewayRequest" in mcp:
        body = mcp["transformedGatewayRequest"]["body"]
        shown = body.get("params", {}).get("arguments", body.get("params"))
        print(f"   forwarded {body.get('method')}: {json.dumps(shown)}")
    else:
        response = mcp["transformedGatewayResponse"]
        body = response["body"]
        text = body["error"]["message"] if "error" in body else body["result"]["content"][0]["text"]
        print(f"   status {response['statusCode']}: {text}")


if __name__ == "__main__":
    main()
