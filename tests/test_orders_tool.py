"""The `orders` demo tool over DynamoDB (moto): owners see their own orders, order admins see every order,
changes are logged in the human's name, and the Lambda reads the table with the session it was handed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

import orders.app as orders
from devtools.gateway import request_event, tool_call
from interceptor.pipeline import Interceptor
from interceptor.sts_names import TAG_USER, session_tags
from tool_identity import Caller

TABLE = "orders-test"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/orders-session"
DANA = "dana,smith"  # a username that does not fit a tag value as is

SEED = [
    ("alice", "1", "pending"),
    ("alice", "2", "shipped"),
    ("alice", "3", "shipped"),
    ("alice", "4", "delivered"),
    ("bob", "42", "pending"),
    ("bob", "7", "shipped"),
    (DANA, "9", "pending"),
]


pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture(scope="module")
def moto_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One moto account and table per module (creating a table is the slow part); rows are reset per test."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("AWS_", "BOTO_")):
                patch.delenv(name)
        empty = tmp_path_factory.mktemp("aws")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_CONFIG_FILE", str(empty / "no-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "no-credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with mock_aws():
            dynamodb = boto3.resource("dynamodb", region_name=REGION)
            yield dynamodb.create_table(
                TableName=TABLE,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "owner", "AttributeType": "S"},
                    {"AttributeName": "order_id", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "owner", "KeyType": "HASH"},
                    {"AttributeName": "order_id", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by_order_id",
                        "KeySchema": [{"AttributeName": "order_id", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            )


@pytest.fixture
def table(moto_table: Any) -> Any:
    """The orders table holding exactly SEED (owner = owner_key(user))."""
    for row in moto_table.scan()["Items"]:
        moto_table.delete_item(Key={"owner": row["owner"], "order_id": row["order_id"]})
    for user, order_id, status in SEED:
        moto_table.put_item(Item={"owner": orders.owner_key(user), "order_id": order_id, "status": status})
    return moto_table


class TableFor:
    """The `table_for` callback: hands out the moto table and records who asked."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.callers: list[Caller] = []

    def __call__(self, caller: Caller) -> Any:
        self.callers.append(caller)
        return self.table


@pytest.fixture
def table_for(table: Any) -> TableFor:
    return TableFor(table)


def stamped(user: str, roles: list[str], **arguments: Any) -> dict[str, Any]:
    return {**arguments, "_teleport_user": user, "_teleport_roles": roles}


def item(table: Any, user: str, order_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = table.get_item(Key={"owner": orders.owner_key(user), "order_id": order_id}).get(
        "Item"
    )
    return found


def ids(result: dict[str, Any]) -> list[str]:
    return [o["order_id"] for o in result["orders"]]


# ---------------------------------------------------------------------------------------------------------------
# owner_key ties the table to the session tag IAM checks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["alice", "alice@example.com", DANA, "x" * 300, "josé"])
def test_owner_key_is_the_teleport_user_session_tag(user: str) -> None:
    tags = session_tags(user, ["developer"], "orders___get_order_tool", "https://t.example.com")
    assert orders.owner_key(user) == next(t["Value"] for t in tags if t["Key"] == TAG_USER)


def test_owner_keys_of_different_users_differ() -> None:
    assert orders.owner_key("dana,smith") != orders.owner_key("dana-smith")
    assert orders.owner_key("alice") != orders.owner_key("Alice")


# ---------------------------------------------------------------------------------------------------------------
# get_order_tool
# ---------------------------------------------------------------------------------------------------------------


def test_owner_sees_their_order(table_for: TableFor) -> None:
    result = orders.handle(stamped("alice", ["developer"], order_id="2"), "get_order_tool", table_for)
    assert result == {"owner": "alice", "order_id": "2", "status": "shipped"}
    assert [c.user for c in table_for.callers] == ["alice"]


def test_non_admin_cannot_see_another_users_order(table_for: TableFor) -> None:
    theirs = orders.handle(stamped("alice", ["developer"], order_id="42"), "get_order_tool", table_for)
    missing = orders.handle(stamped("alice", ["developer"], order_id="999"), "get_order_tool", table_for)
    assert theirs == {"error": "order 42 not found"}
    assert missing == {"error": "order 999 not found"}  # no hint that order 42 exists


def test_user_with_a_mapped_name_sees_their_order(table_for: TableFor) -> None:
    result = orders.handle(stamped(DANA, ["developer"], order_id="9"), "get_order_tool", table_for)
    assert result["order_id"] == "9"
    assert result["owner"] == orders.owner_key(DANA)
    lookalike = orders.handle(stamped("dana-smith", ["developer"], order_id="9"), "get_order_tool", table_for)
    assert "error" in lookalike


def test_order_admin_sees_any_order(table_for: TableFor) -> None:
    result = orders.handle(stamped("carol", ["developer", "order-admin"], order_id="42"), "get_order_tool", table_for)
    assert result == {"owner": "bob", "order_id": "42", "status": "pending"}
    missing = orders.handle(stamped("carol", ["order-admin"], order_id="999"), "get_order_tool", table_for)
    assert missing == {"error": "order 999 not found"}


@pytest.mark.parametrize("roles", [["order-admins"], ["admin"], ["Order-Admin"], ["developer"], []])
def test_only_the_exact_admin_role_sees_other_orders(table_for: TableFor, roles: list[str]) -> None:
    result = orders.handle(stamped("carol", roles, order_id="42"), "get_order_tool", table_for)
    assert result == {"error": "order 42 not found"}


def test_caller_cannot_choose_the_owner(table_for: TableFor) -> None:
    result = orders.handle(stamped("alice", ["developer"], order_id="42", owner="bob"), "get_order_tool", table_for)
    assert result == {"error": "invalid arguments for get_order_tool"}


# ---------------------------------------------------------------------------------------------------------------
# list_my_orders
# ---------------------------------------------------------------------------------------------------------------


def test_list_returns_only_own_orders(table_for: TableFor) -> None:
    assert ids(orders.handle(stamped("alice", ["developer"]), "list_my_orders", table_for)) == ["1", "2", "3", "4"]
    assert ids(orders.handle(stamped("bob", ["developer"]), "list_my_orders", table_for)) == ["42", "7"]
    assert ids(orders.handle(stamped("carol", ["order-admin"]), "list_my_orders", table_for)) == []


def test_list_filters_by_status(table_for: TableFor) -> None:
    shipped = orders.handle(stamped("alice", ["developer"], status="shipped"), "list_my_orders", table_for)
    assert ids(shipped) == ["2", "3"]
    assert all(o["owner"] == "alice" for o in shipped["orders"])
    none = orders.handle(stamped("alice", ["developer"], status="cancelled"), "list_my_orders", table_for)
    assert none == {"orders": []}


@pytest.mark.parametrize(("limit", "expected"), [(2, ["1", "2"]), (1, ["1"]), (0, ["1"]), (-5, ["1"]), (500, None)])
def test_list_honours_the_limit(table_for: TableFor, limit: int, expected: list[str] | None) -> None:
    result = orders.handle(stamped("alice", ["developer"], limit=limit), "list_my_orders", table_for)
    assert ids(result) == (expected or ["1", "2", "3", "4"])


def test_list_with_status_and_limit_returns_matching_orders(table_for: TableFor) -> None:
    result = orders.handle(stamped("alice", ["developer"], status="shipped", limit=1), "list_my_orders", table_for)
    assert ids(result) == ["2"]


# ---------------------------------------------------------------------------------------------------------------
# update_order
# ---------------------------------------------------------------------------------------------------------------


def test_admin_updates_an_order_and_it_is_logged(
    table: Any, table_for: TableFor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    result = orders.handle(
        stamped("carol", ["order-admin"], order_id="42", status="shipped"), "update_order", table_for
    )
    assert result == {"owner": "bob", "order_id": "42", "status": "shipped", "updated_by": "carol"}
    assert item(table, "bob", "42") == {"owner": "bob", "order_id": "42", "status": "shipped", "updated_by": "carol"}
    assert item(table, "carol", "42") is None  # no stray row under the admin's key
    messages = [r.getMessage() for r in caplog.records]
    assert "carol updated order 42 to shipped" in messages


def test_update_log_line_names_the_human_and_their_roles(table_for: TableFor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    orders.handle(stamped("carol", ["order-admin"], order_id="7", status="delivered"), "update_order", table_for)
    (record,) = [r for r in caplog.records if "updated order" in r.getMessage()]
    assert record.getMessage() == "carol updated order 7 to delivered"
    assert record.__dict__["roles"] == ["order-admin"]


@pytest.mark.parametrize("status", ["lost", "", "SHIPPED", "shipped ", "pending,shipped"])
def test_invalid_status_is_refused_and_nothing_changes(
    table: Any, table_for: TableFor, caplog: pytest.LogCaptureFixture, status: str
) -> None:
    caplog.set_level(logging.INFO)
    result = orders.handle(stamped("carol", ["order-admin"], order_id="42", status=status), "update_order", table_for)
    assert result == {"error": "status must be one of pending, shipped, delivered, cancelled"}
    assert item(table, "bob", "42") == {"owner": "bob", "order_id": "42", "status": "pending"}
    assert not any("updated order" in r.getMessage() for r in caplog.records)


def test_non_admin_cannot_update_another_users_order(table: Any, table_for: TableFor) -> None:
    result = orders.handle(
        stamped("alice", ["developer"], order_id="42", status="cancelled"), "update_order", table_for
    )
    assert result == {"error": "order 42 not found"}
    assert item(table, "bob", "42") == {"owner": "bob", "order_id": "42", "status": "pending"}
    assert item(table, "alice", "42") is None


def test_admin_update_of_a_missing_order_creates_nothing(table: Any, table_for: TableFor) -> None:
    result = orders.handle(
        stamped("carol", ["order-admin"], order_id="999", status="shipped"), "update_order", table_for
    )
    assert result == {"error": "order 999 not found"}
    assert table.scan(FilterExpression="order_id = :o", ExpressionAttributeValues={":o": "999"})["Items"] == []


# ---------------------------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------------------------


def test_unknown_tool_is_refused(table_for: TableFor) -> None:
    assert orders.handle(stamped("alice", ["developer"]), "delete_order", table_for) == {
        "error": "unknown tool 'delete_order'"
    }
    assert orders.handle(stamped("alice", ["developer"]), "", table_for) == {"error": "unknown tool ''"}
    assert table_for.callers == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"order_id": "1"},
        {"order_id": "1", "_teleport_user": "alice"},
        {"order_id": "1", "_teleport_user": "", "_teleport_roles": []},
        {"order_id": "1", "_teleport_user": "alice", "_teleport_roles": "order-admin"},
    ],
)
def test_missing_identity_is_refused(table_for: TableFor, arguments: dict[str, Any]) -> None:
    result = orders.handle(arguments, "get_order_tool", table_for)
    assert set(result) == {"error"}
    assert "_teleport_" in result["error"]
    assert table_for.callers == []


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get_order_tool", {}),
        ("get_order_tool", {"order_id": "1", "extra": True}),
        ("update_order", {"order_id": "42"}),
        ("update_order", {"status": "shipped"}),
        ("list_my_orders", {"limit": "5"}),
        ("list_my_orders", {"self": 1}),
    ],
)
def test_bad_arguments_are_refused(table_for: TableFor, tool: str, arguments: dict[str, Any]) -> None:
    result = orders.handle(stamped("carol", ["order-admin"], **arguments), tool, table_for)
    assert result == {"error": f"invalid arguments for {tool}"}


def test_reserved_arguments_never_reach_the_tool(table_for: TableFor) -> None:
    arguments = stamped("alice", ["developer"], order_id="1")
    arguments["_teleport_aws_session"] = {"accessKeyId": "x"}
    arguments["_teleport_anything"] = "y"
    result = orders.handle(arguments, "get_order_tool", table_for)
    assert result["order_id"] == "1"


# ---------------------------------------------------------------------------------------------------------------
# lambda_handler: the tool name from the client context, the table through the handed session
# ---------------------------------------------------------------------------------------------------------------


def context(tool: str | None) -> Any:
    if tool is None:
        return SimpleNamespace(client_context=None)
    return SimpleNamespace(client_context=SimpleNamespace(custom={"bedrockAgentCoreToolName": tool}))


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("orders___get_order_tool", "get_order_tool"),
        ("orders___list_my_orders", "list_my_orders"),
        ("my___target___update_order", "update_order"),
        ("list_my_orders", "list_my_orders"),
        (None, ""),
    ],
)
def test_tool_name_comes_from_the_client_context(tool: str | None, expected: str) -> None:
    assert orders.tool_name(context(tool)) == expected
    assert orders.tool_name(SimpleNamespace(client_context=SimpleNamespace(custom=None))) == ""
    assert orders.tool_name(object()) == ""


def moto_session(user: str) -> dict[str, str]:
    """A session argument like the interceptor's, minted by moto STS."""
    response = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=ROLE, RoleSessionName=user, DurationSeconds=900
    )
    credentials = response["Credentials"]
    return {
        "accessKeyId": credentials["AccessKeyId"],
        "secretAccessKey": credentials["SecretAccessKey"],
        "sessionToken": credentials["SessionToken"],
        "expiration": credentials["Expiration"].isoformat(),
        "roleArn": ROLE,
        "sourceIdentity": user,
        "sessionName": user,
    }


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, table: Any) -> list[str]:
    """ORDERS_TABLE and AWS_REGION set; returns the access key ids of every boto3 Session the tool opens."""
    monkeypatch.setenv("ORDERS_TABLE", TABLE)
    monkeypatch.setenv("AWS_REGION", REGION)
    opened: list[str] = []
    real = boto3.Session

    def spy(**kwargs: Any) -> Any:
        opened.append(kwargs.get("aws_access_key_id"))
        return real(**kwargs)

    monkeypatch.setattr(boto3, "Session", spy)
    return opened


def test_lambda_handler_reads_with_the_handed_session(lambda_env: list[str]) -> None:
    session = moto_session("alice")
    event = {**stamped("alice", ["developer"], order_id="3"), "_teleport_aws_session": session}
    result = orders.lambda_handler(event, context("orders___get_order_tool"))
    assert result == {"owner": "alice", "order_id": "3", "status": "shipped"}
    assert lambda_env == [session["accessKeyId"]]


def test_lambda_handler_lists_through_the_tool_name(lambda_env: list[str]) -> None:
    event = {**stamped("bob", ["developer"], status="shipped"), "_teleport_aws_session": moto_session("bob")}
    assert ids(orders.lambda_handler(event, context("orders___list_my_orders"))) == ["7"]


def test_lambda_handler_updates_in_the_admins_name(
    table: Any, lambda_env: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = {
        **stamped("carol", ["order-admin"], order_id="42", status="shipped"),
        "_teleport_aws_session": moto_session("carol"),
    }
    result = orders.lambda_handler(event, context("orders___update_order"))
    assert result["updated_by"] == "carol"
    assert item(table, "bob", "42")["status"] == "shipped"  # type: ignore[index]
    assert "carol updated order 42 to shipped" in [r.getMessage() for r in caplog.records]


def test_lambda_handler_without_session_is_refused(lambda_env: list[str]) -> None:
    result = orders.lambda_handler(stamped("alice", ["developer"], order_id="1"), context("orders___get_order_tool"))
    assert set(result) == {"error"}
    assert "no AWS session" in result["error"]
    assert lambda_env == []  # never fell back to the function's own credentials


def test_lambda_handler_with_expired_session_is_refused(lambda_env: list[str]) -> None:
    session = {**moto_session("alice"), "expiration": "2020-01-01T00:00:00+00:00"}
    event = {**stamped("alice", ["developer"], order_id="1"), "_teleport_aws_session": session}
    result = orders.lambda_handler(event, context("orders___get_order_tool"))
    assert set(result) == {"error"}
    assert "expired" in result["error"]
    assert lambda_env == []


def test_lambda_handler_without_tool_name_is_refused(lambda_env: list[str]) -> None:
    event = {**stamped("alice", ["developer"], order_id="1"), "_teleport_aws_session": moto_session("alice")}
    assert orders.lambda_handler(event, context(None)) == {"error": "unknown tool ''"}


def test_interceptor_to_tool_end_to_end(
    issuer: Any, make_interceptor: Callable[..., Interceptor], lambda_env: list[str]
) -> None:
    """The arguments the interceptor forwards (session minted by moto STS) are what the tool needs."""
    interceptor = make_interceptor(SESSION_ROLE_ARN=ROLE, SESSION_TOOLS="orders___*")
    token = issuer.mint(user="alice", roles=["developer"])
    spoofed = {"order_id": "42", "_teleport_user": "bob", "_teleport_aws_session": {"accessKeyId": "x"}}
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", spoofed), token))
    arguments = out["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"]
    assert orders.lambda_handler(arguments, context("orders___get_order_tool")) == {"error": "order 42 not found"}

    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "1"}), token))
    arguments = out["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"]
    result = orders.lambda_handler(arguments, context("orders___get_order_tool"))
    assert result == {"owner": "alice", "order_id": "1", "status": "pending"}
    assert lambda_env == [arguments["_teleport_aws_session"]["accessKeyId"]] * 2
    assert lambda_env[0] != "x"


def test_numbers_from_dynamodb_come_back_json_serializable() -> None:
    import json
    from decimal import Decimal

    from orders.app import plain

    assert plain({"qty": Decimal("3"), "price": Decimal("2.5"), "items": [Decimal("1")]}) == {
        "qty": 3,
        "price": 2.5,
        "items": [1],
    }
    json.dumps(plain({"n": Decimal("7")}))
