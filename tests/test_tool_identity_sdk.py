"""Identity for MCP-server targets: the `_meta` key the interceptor stamps, `Caller.from_meta`, and the SDK
dependency `tool_identity.mcp_sdk.VerifiedCaller` (run in-process with the official SDK in both protocol eras)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult

from interceptor.stamping import stamp
from interceptor.tokens import Identity
from tool_identity import (
    IDENTITY_META_KEY,
    Caller,
    IdentityMissing,
    identity_meta,
    is_identity_meta_key,
    is_reserved,
)
from tool_identity.mcp_sdk import VerifiedCaller

ROOT = Path(__file__).resolve().parent.parent
ALICE = Identity("alice", ("developer", "reader"), {}, "https://t.example.com", 0)
STAMPED = {"user": "alice", "roles": ["developer", "reader"]}


def test_meta_key_is_reverse_dns_outside_the_prefixes_mcp_reserves() -> None:
    prefix, _, name = IDENTITY_META_KEY.partition("/")
    labels = prefix.split(".")
    assert name and len(labels) >= 2 and all(labels)
    assert labels[1] not in ("modelcontextprotocol", "mcp")
    assert not is_reserved(IDENTITY_META_KEY)  # a `_meta` key, never confused with a `_teleport_` argument


@pytest.mark.parametrize("key", [IDENTITY_META_KEY, IDENTITY_META_KEY.upper(), "Sh.Teleport/Identity"])
def test_meta_key_matches_in_any_case(key: str) -> None:
    assert is_identity_meta_key(key)


@pytest.mark.parametrize("key", ["sh.teleport/identity2", "sh.teleport/", "identity", "sh.teleport/identit"])
def test_other_keys_are_not_the_meta_key(key: str) -> None:
    assert not is_identity_meta_key(key)


def test_from_meta_reads_the_stamped_caller() -> None:
    caller = Caller.from_meta({IDENTITY_META_KEY: STAMPED, "io.modelcontextprotocol/protocolVersion": "2026-07-28"})
    assert caller == Caller("alice", ("developer", "reader"))
    assert caller.aws_session is None


@pytest.mark.parametrize(
    "meta",
    [
        None,
        {},
        {IDENTITY_META_KEY: None},
        {IDENTITY_META_KEY: "alice"},
        {IDENTITY_META_KEY: {"roles": []}},
        {IDENTITY_META_KEY: {"user": "", "roles": []}},
        {IDENTITY_META_KEY: {"user": 7, "roles": []}},
        {IDENTITY_META_KEY: {"user": "alice"}},
        {IDENTITY_META_KEY: {"user": "alice", "roles": "developer"}},
        {IDENTITY_META_KEY: {"user": "alice", "roles": ["developer", 1]}},
        {"SH.Teleport/Identity": STAMPED},  # only the interceptor's exact spelling counts
        {"_teleport_user": "alice", "_teleport_roles": []},  # argument names are not read from _meta
    ],
)
def test_from_meta_refuses_a_missing_or_malformed_stamp(meta: dict[str, Any] | None) -> None:
    with pytest.raises(IdentityMissing):
        Caller.from_meta(meta)


def call(meta: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "t___x", "arguments": {}, "_meta": meta},
    }


def test_stamp_writes_the_identity_into_meta_and_keeps_other_keys() -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "progressToken": 3,
        "com.example/trace": "t-1",
    }
    body = call(meta)
    snapshot = copy.deepcopy(body)
    out = stamp(body, {}, ALICE)
    assert out["params"]["_meta"] == {**meta, IDENTITY_META_KEY: STAMPED}
    assert Caller.from_meta(out["params"]["_meta"]) == Caller("alice", ("developer", "reader"))
    assert body == snapshot  # input untouched


def test_stamp_replaces_caller_sent_values_under_the_key_in_any_case() -> None:
    spoof = {"user": "root", "roles": ["admin"]}
    meta = {
        IDENTITY_META_KEY: spoof,
        "SH.TELEPORT/IDENTITY": spoof,
        "Sh.Teleport/Identity": spoof,
        "_teleport_user": "r",
    }
    out = stamp(call(meta), {}, ALICE)
    assert out["params"]["_meta"] == {IDENTITY_META_KEY: STAMPED}


@pytest.mark.parametrize("meta", [..., None, "text", ["x"]])
def test_stamp_creates_meta_when_absent_or_not_an_object(meta: Any) -> None:
    body = call(meta)
    if meta is ...:
        del body["params"]["_meta"]
    assert stamp(body, {}, ALICE)["params"]["_meta"] == {IDENTITY_META_KEY: STAMPED}


def test_identity_meta_is_the_shape_from_meta_reads() -> None:
    assert identity_meta("bob", ("a", "b")) == {"user": "bob", "roles": ["a", "b"]}
    assert Caller.from_meta({IDENTITY_META_KEY: identity_meta("bob", [])}) == Caller("bob", ())


def sdk_server() -> MCPServer:
    server = MCPServer("probe")

    @server.tool()
    def whoami(caller: VerifiedCaller, order_id: str = "") -> dict[str, Any]:
        return {"user": caller.user, "roles": list(caller.roles), "order_id": order_id}

    return server


def call_in_process(mode: str, arguments: dict[str, Any], meta: Any) -> tuple[CallToolResult, Any]:
    async def scenario() -> tuple[CallToolResult, Any]:
        async with Client(sdk_server(), mode=mode) as client:
            schema = (await client.list_tools()).tools[0].input_schema
            return await client.call_tool("whoami", arguments, meta=meta), schema

    return anyio.run(scenario)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_sdk_tool_receives_the_stamped_caller_and_ignores_client_values(mode: str) -> None:
    spoof = {"user": "root", "roles": ["admin"]}
    result, schema = call_in_process(mode, {"order_id": "42", "caller": spoof}, {IDENTITY_META_KEY: STAMPED})
    assert not result.is_error
    assert result.structured_content == {**STAMPED, "order_id": "42"}
    assert "caller" not in schema.get("properties", {})  # hidden from the agent


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("meta", [None, {"_teleport_user": "alice"}, {IDENTITY_META_KEY: {"user": "alice"}}])
def test_sdk_tool_without_a_stamp_fails_before_its_body_runs(mode: str, meta: dict[str, Any] | None) -> None:
    result, _ = call_in_process(mode, {"order_id": "42"}, meta)
    assert result.is_error
    assert result.structured_content is None
    assert f"no {IDENTITY_META_KEY} in _meta" in " ".join(getattr(b, "text", "") for b in result.content)


def test_lambda_side_never_imports_mcp() -> None:
    """`tool_identity` and the interceptor ship in the Lambda without `mcp`: importing them must not need it."""
    code = "import sys; sys.modules['mcp'] = None; import tool_identity, interceptor.app, orders.app"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEPORT_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        env={**env, "PYTHONPATH": "src"},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
