"""Unit tests of identity stamping: reserved `_teleport_` arguments are stripped, the verified identity is
written, and nothing else in the forwarded body changes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from interceptor.stamping import split_reserved, stamp
from interceptor.tokens import Identity
from tool_identity import IDENTITY_META_KEY, RESERVED_PREFIX, ROLES_ARG, USER_ARG


def identity(user: str = "alice", roles: tuple[str, ...] = ("developer", "reader")) -> Identity:
    return Identity(user=user, roles=roles, traits={"logins": ("alice",)}, issuer="https://t.example.com", expires_at=0)


def call_body(arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": "call-1",
        "method": "tools/call",
        "params": {"name": "orders___get_order_tool", "arguments": arguments, "_meta": {"progressToken": "p-1"}},
    }


def test_reserved_names_are_the_documented_ones() -> None:
    assert RESERVED_PREFIX == "_teleport_"
    assert USER_ARG == "_teleport_user"
    assert ROLES_ARG == "_teleport_roles"


def test_split_reserved_separates_caller_sent_reserved_names() -> None:
    arguments = {
        "order_id": "42",
        "_teleport_user": "root",
        "_teleport_roles": ["editor"],
        "_teleport_anything": {"x": 1},
        "_teleport_": "bare prefix",
    }
    snapshot = copy.deepcopy(arguments)
    clean, spoofed = split_reserved(arguments)
    assert clean == {"order_id": "42"}
    assert spoofed == ("_teleport_", "_teleport_anything", "_teleport_roles", "_teleport_user")
    assert arguments == snapshot  # the caller's mapping is not mutated


def test_split_reserved_names_spoofs_in_meta() -> None:
    params = {"_meta": {"_teleport_user": "mallory", "_teleport_roles": ["x"], "progressToken": 1}}
    clean, spoofed = split_reserved({"order_id": "42"}, params)
    assert clean == {"order_id": "42"}
    assert spoofed == ("_meta._teleport_roles", "_meta._teleport_user")


@pytest.mark.parametrize("name", ["_TELEPORT_USER", "_Teleport_user", "_teleport_USER", "_tElEpOrT_x"])
def test_split_reserved_ignores_letter_case(name: str) -> None:
    clean, spoofed = split_reserved({"order_id": "42", name: "root"})
    assert clean == {"order_id": "42"}
    assert spoofed == (name,)


def test_stamp_removes_reserved_names_from_meta() -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "t", "arguments": {}, "_meta": {"progressToken": 3, "_Teleport_user": "root"}},
    }
    out = stamp(body, {}, Identity("alice", (), {}, "iss", 0))
    assert out["params"]["_meta"] == {"progressToken": 3, IDENTITY_META_KEY: {"user": "alice", "roles": []}}
    assert body["params"]["_meta"]["_Teleport_user"] == "root"  # input untouched


@pytest.mark.parametrize("name", ["teleport_user", "x_teleport_user", "_teleport", "__teleport_user", "user"])
def test_split_reserved_keeps_names_outside_the_prefix(name: str) -> None:
    clean, spoofed = split_reserved({name: "v"})
    assert clean == {name: "v"}
    assert spoofed == ()


def test_split_reserved_of_no_arguments() -> None:
    assert split_reserved({}) == ({}, ())


def test_stamp_adds_identity_and_changes_nothing_else() -> None:
    body = call_body({"order_id": "42", "filters": {"status": ["pending"]}})
    snapshot = copy.deepcopy(body)
    clean, _ = split_reserved(body["params"]["arguments"])

    out = stamp(body, clean, identity())

    expected = copy.deepcopy(snapshot)
    expected["params"]["arguments"].update({"_teleport_user": "alice", "_teleport_roles": ["developer", "reader"]})
    expected["params"]["_meta"][IDENTITY_META_KEY] = {"user": "alice", "roles": ["developer", "reader"]}
    assert out == expected
    assert body == snapshot  # input body not mutated
    assert type(out["params"]["arguments"]["_teleport_user"]) is str
    roles = out["params"]["arguments"]["_teleport_roles"]
    assert type(roles) is list
    assert all(type(r) is str for r in roles)
    # the forwarded body is plain JSON, with the roles as a JSON array
    assert json.loads(json.dumps(out)) == expected
    assert '"_teleport_roles": ["developer", "reader"]' in json.dumps(out)


def test_stamp_overwrites_spoofed_identity() -> None:
    arguments = {"order_id": "42", "_teleport_user": "root", "_teleport_roles": ["order-admin"], "_teleport_x": "1"}
    body = call_body(arguments)
    clean, _ = split_reserved(arguments)
    out = stamp(body, clean, identity("bob", ("developer",)))
    assert out["params"]["arguments"] == {"order_id": "42", "_teleport_user": "bob", "_teleport_roles": ["developer"]}
    assert body["params"]["arguments"]["_teleport_user"] == "root"  # the original is untouched


def test_stamp_with_no_roles_writes_an_empty_list() -> None:
    out = stamp(call_body({}), {}, identity("carol", ()))
    assert out["params"]["arguments"] == {"_teleport_user": "carol", "_teleport_roles": []}


def test_stamp_output_does_not_alias_the_input() -> None:
    body = call_body({"order_id": "42"})
    clean = {"order_id": "42"}
    out = stamp(body, clean, identity())
    out["params"]["arguments"]["order_id"] = "changed"
    out["params"]["name"] = "changed"
    assert clean == {"order_id": "42"}
    assert body["params"]["arguments"] == {"order_id": "42"}
    assert body["params"]["name"] == "orders___get_order_tool"


def test_stamp_extra_reserved_values_are_added() -> None:
    out = stamp(call_body({}), {}, identity(), extra={"_teleport_session": "s-1"})
    assert out["params"]["arguments"] == {
        "_teleport_user": "alice",
        "_teleport_roles": ["developer", "reader"],
        "_teleport_session": "s-1",
    }


def test_stamp_keeps_unusual_user_names_verbatim() -> None:
    name = 'o\'brien "x"\nzoë 🚀'
    out = stamp(call_body({}), {}, identity(name, ('r"1',)))
    assert out["params"]["arguments"]["_teleport_user"] == name
    assert out["params"]["arguments"]["_teleport_roles"] == ['r"1']
