"""The `orders` demo tool: `get_order_tool`, `list_my_orders`, `update_order`.

What Teleport's blog post describes, done with real identity: an `order-admin` sees any order, everyone else
only their own, and every change is logged as "alice updated order 42 to shipped". Reads and writes go
through the human's own STS session, whose role allows only rows whose partition key equals the session's
`teleport-user` tag (`dynamodb:LeadingKeys`), so even a buggy tool cannot read another person's orders.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from interceptor.sts_names import tag_value
from tool_identity import Caller, IdentityMissing, SessionMissing, tool_arguments

logger = Logger(service="orders-tool")
ADMIN_ROLE = "order-admin"
STATUSES = ("pending", "shipped", "delivered", "cancelled")
ORDER_ID_INDEX = "by_order_id"


class ToolError(Exception):
    """A refusal the agent should read; becomes `{"error": ...}`."""


def owner_key(user: str) -> str:
    """Partition key of a user's orders: the value the interceptor puts in the `teleport-user` session tag."""
    return tag_value(user)


class Orders:
    """The three tools over one DynamoDB table (`owner` + `order_id`, GSI `by_order_id`)."""

    def __init__(self, caller: Caller, table: Any) -> None:
        self._caller = caller
        self._table = table
        self._owner = owner_key(caller.user)
        self._admin = caller.has_role(ADMIN_ROLE)

    def get_order_tool(self, order_id: str) -> dict[str, Any]:
        order = self._find(order_id)
        if order is None:
            raise ToolError(f"order {order_id} not found")
        return order

    def list_my_orders(self, status: str | None = None, limit: int = 20) -> dict[str, Any]:
        from boto3.dynamodb.conditions import Attr, Key  # noqa: PLC0415

        wanted = max(1, min(limit, 100))
        query: dict[str, Any] = {"KeyConditionExpression": Key("owner").eq(self._owner)}
        if status is not None:
            # DynamoDB applies Limit before the filter: page until enough orders match instead.
            query["FilterExpression"] = Attr("status").eq(status)
        orders: list[dict[str, Any]] = []
        while len(orders) < wanted:
            page = self._table.query(**query)
            orders.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return {"orders": orders[:wanted]}

    def update_order(self, order_id: str, status: str) -> dict[str, Any]:
        if status not in STATUSES:
            raise ToolError(f"status must be one of {', '.join(STATUSES)}")
        order = self._find(order_id)
        if order is None:
            raise ToolError(f"order {order_id} not found")
        self._table.update_item(
            Key={"owner": order["owner"], "order_id": order_id},
            UpdateExpression="SET #s = :s, updated_by = :u",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": status, ":u": self._caller.user},
        )
        logger.info(
            f"{self._caller.user} updated order {order_id} to {status}", extra={"roles": list(self._caller.roles)}
        )
        return {**order, "status": status, "updated_by": self._caller.user}

    def _find(self, order_id: str) -> dict[str, Any] | None:
        if not self._admin:
            item: dict[str, Any] | None = self._table.get_item(Key={"owner": self._owner, "order_id": order_id}).get(
                "Item"
            )
            return item
        from boto3.dynamodb.conditions import Key  # noqa: PLC0415

        items = self._table.query(IndexName=ORDER_ID_INDEX, KeyConditionExpression=Key("order_id").eq(order_id))[
            "Items"
        ]
        return items[0] if items else None


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "get_order_tool": Orders.get_order_tool,
    "list_my_orders": Orders.list_my_orders,
    "update_order": Orders.update_order,
}


def tool_name(context: Any) -> str:
    """The tool being called: AgentCore passes `<target>___<tool>` in the client context."""
    custom: Mapping[str, Any] = getattr(getattr(context, "client_context", None), "custom", None) or {}
    return str(custom.get("bedrockAgentCoreToolName", "")).rpartition("___")[2]


def plain(value: Any) -> Any:
    """DynamoDB returns numbers as Decimal, which Lambda cannot serialize: whole ones become int, others float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def handle(arguments: Mapping[str, Any], name: str, table_for: Callable[[Caller], Any]) -> dict[str, Any]:
    """Run one tool call; refusals come back as `{"error": ...}` for the agent to read."""
    try:
        caller = Caller.from_arguments(arguments)
        tool = TOOLS.get(name)
        if tool is None:
            raise ToolError(f"unknown tool {name!r}")
        result: dict[str, Any] = plain(tool(Orders(caller, table_for(caller)), **tool_arguments(arguments)))
        return result
    except (ToolError, IdentityMissing, SessionMissing) as exc:
        return {"error": str(exc)}
    except TypeError:
        return {"error": f"invalid arguments for {name}"}


def _table(caller: Caller) -> Any:
    session = caller.boto3_session(region_name=os.environ.get("AWS_REGION"))
    return session.resource("dynamodb").Table(os.environ["ORDERS_TABLE"])


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda target of the gateway: the event is the tool's arguments, stamped by the interceptor."""
    return handle(event, tool_name(context), _table)
