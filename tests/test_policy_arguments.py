"""Arguments the way tools publish them: nullable JSON Schema becomes an optional Cedar attribute and a null
argument is absent; JSON numbers become Cedar `Long` or `decimal` when exact; anything else is refused with a
`policy_error` that names the argument and never its value."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from interceptor.policy import (
    OPAQUE,
    PolicyEngine,
    PolicySetInvalid,
    PolicySource,
    Untypable,
    cedar_input,
    parse_schema,
    tool_inputs,
)
from interceptor.reasons import Reason
from interceptor.tokens import Identity
from policy_toolkit.schema import render

TOOL = "shop___refund"
# What an SDK-built server publishes for `refund(order_id: str, amount: float, reason: str | None = None,
# items: list[float] | None = None, limit: int | None = None, note: Note | None = None)`, plus the other forms.
SHOP = {
    "shop": [
        {
            "name": "refund",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": "number"},
                    "reason": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                    "items": {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}]},
                    "limit": {"oneOf": [{"type": "integer"}, {"type": "null"}]},
                    "count": {"type": ["integer", "null"]},
                    "note": {
                        "anyOf": [
                            {
                                "type": "object",
                                "properties": {"text": {"type": "string"}, "tip": {"type": "number"}},
                                "required": ["text"],
                            },
                            {"type": "null"},
                        ]
                    },
                    "must": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "several": {"type": ["string", "integer", "null"]},
                    "nothing": {"type": "null"},
                },
                "required": ["order_id", "amount", "must"],
            },
        }
    ]
}
REFUND_INPUT = """\
    context: { agent?: Agent, input: {
      amount: decimal,
      count?: Long,
      items?: Set<decimal>,
      limit?: Long,
      must?: Bool,
      note?: {
        text: String,
        tip?: decimal,
      },
      order_id: String,
      reason?: String,
    } },"""
POLICIES = """
@id("refunds") permit (principal, action == Teleport::Action::"shop___refund", resource);

@id("big-refunds") forbid (principal, action == Teleport::Action::"shop___refund", resource)
when { context.input.amount.greaterThan(decimal("100.0")) };

@id("no-reason-no-many") forbid (principal, action == Teleport::Action::"shop___refund", resource)
when { !(context.input has reason) && context.input has limit && context.input.limit > 3 };

@id("small-tips") forbid (principal, action == Teleport::Action::"shop___refund", resource)
when { context.input has note && context.input.note has tip && context.input.note.tip.greaterThan(decimal("5.0")) };

@id("no-cent-items") forbid (principal, action == Teleport::Action::"shop___refund", resource)
when { context.input has items && context.input.items.contains(decimal("0.01")) };
"""
ALICE = Identity("alice", (), {}, "iss", 0)
BASE: dict[str, Any] = {"order_id": "42", "amount": 10}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> PolicyEngine:
    folder = tmp_path_factory.mktemp("shop")
    (folder / "schema.cedarschema").write_text(render(SHOP), encoding="utf-8")
    (folder / "shop.cedar").write_text(POLICIES, encoding="utf-8")
    return PolicyEngine.load(folder)


def refund(engine: PolicyEngine, **arguments: Any) -> Any:
    return engine.authorize(ALICE, TOOL, {**BASE, **arguments})


# ---------------------------------------------------------------------------------------------------------------
# the generated schema


def test_nullable_and_number_properties_become_optional_and_decimal() -> None:
    """anyOf/oneOf [T, null] and type [T, "null"] are optional T (required or not); number is decimal, in sets
    and records too; unions of several types and bare null have no Cedar type and are left out."""
    text = render(SHOP)
    assert REFUND_INPUT in text
    for left_out in ("either", "several", "nothing"):
        assert left_out not in text
    cedarpy.Schema.from_str(text)


# ---------------------------------------------------------------------------------------------------------------
# null means absent, for an optional attribute only


def test_a_null_optional_argument_is_absent(engine: PolicyEngine) -> None:
    assert refund(engine, reason=None, limit=5).policy_ids == ("no-reason-no-many",)
    assert refund(engine, reason="damaged", limit=5).allowed
    # the SDK's shape for an optional argument the client left empty: every one of them null
    nulls = dict.fromkeys(("reason", "items", "limit", "count", "note", "must"))
    decision = refund(engine, **nulls)
    assert (decision.allowed, decision.policy_ids) == (True, ("refunds",))


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"amount": None}, "amount"),
        ({"order_id": None}, "order_id"),
        ({"note": {"text": None}}, "note.text"),
        ({"items": [1.5, None]}, "items[]"),
    ],
    ids=repr,
)
def test_a_null_that_is_not_an_optional_attribute_is_refused(
    engine: PolicyEngine, arguments: dict[str, Any], named: str
) -> None:
    decision = refund(engine, **arguments)
    assert (decision.allowed, decision.reason) == (False, Reason.POLICY_ERROR)
    assert decision.errors == (f"argument {named!r} is null where the tool's schema requires a value",)


def test_a_null_for_an_undeclared_argument_is_refused_by_cedar(engine: PolicyEngine) -> None:
    decision = refund(engine, unknown=None)
    assert (decision.allowed, decision.reason) == (False, Reason.POLICY_ERROR)
    assert decision.errors == ("the arguments do not match the tool's input schema",)


# ---------------------------------------------------------------------------------------------------------------
# numbers


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5"),
        (5, "5.0"),
        (-2.25, "-2.25"),
        (0.1, "0.1"),  # the number the JSON said, not its binary approximation
        (1e-4, "0.0001"),
        (-0.0, "0.0"),
        (100.0001, "100.0001"),
        (922337203685477.5, "922337203685477.5"),
        (Decimal("922337203685477.5807"), "922337203685477.5807"),
        (Decimal("-922337203685477.5808"), "-922337203685477.5808"),
        (Decimal("1.50000"), "1.5"),
    ],
    ids=repr,
)
def test_numbers_a_decimal_holds_exactly_become_cedar_decimals(value: Any, text: str) -> None:
    assert cedar_input({"d": value}, {"attrs": {"d": "decimal"}, "optional": []}) == {
        "d": {"__extn": {"fn": "decimal", "arg": text}}
    }


@pytest.mark.parametrize(
    "value",
    [
        *(1e-5, 0.12345, 1 / 3, 922337203685477.6, 2**63, -(2**63), 1e300, float("nan"), float("inf")),
        *(Decimal("NaN"), Decimal("1E+999999999"), Decimal("1E-999999999")),  # never a billion-digit fraction
    ],
    ids=repr,
)
def test_numbers_a_decimal_cannot_hold_exactly_are_refused(engine: PolicyEngine, value: Any) -> None:
    decision = refund(engine, amount=value)
    assert (decision.allowed, decision.reason) == (False, Reason.POLICY_ERROR)
    (error,) = decision.errors
    assert error.startswith("argument 'amount' is not a")
    assert repr(value) not in error and str(value) not in error


@pytest.mark.parametrize("value", ["1.5", True, {"__extn": {"fn": "decimal", "arg": "1.5"}}, [1.5]], ids=repr)
def test_only_json_numbers_become_decimals(engine: PolicyEngine, value: Any) -> None:
    """Cedar itself would read the string "1.5" (or an `__extn` object) as a decimal the tool never receives."""
    decision = refund(engine, amount=value)
    assert (decision.allowed, decision.reason, decision.errors) == (
        False,
        Reason.POLICY_ERROR,
        ("argument 'amount' is not a number",),
    )


def test_policies_compare_decimals(engine: PolicyEngine) -> None:
    assert refund(engine, amount=100).allowed
    assert refund(engine, amount=100.0).allowed
    assert refund(engine, amount=100.0001).policy_ids == ("big-refunds",)
    assert refund(engine, note={"text": "thanks", "tip": 5}).allowed
    assert refund(engine, note={"text": "thanks", "tip": 5.5}).policy_ids == ("small-tips",)
    assert refund(engine, items=[1, 2.5]).allowed
    assert refund(engine, items=[1, 0.01]).policy_ids == ("no-cent-items",)


@pytest.mark.parametrize(("value", "allowed"), [(5, False), (5.0, False), (3.0, True), (-0.0, True)], ids=repr)
def test_an_integral_number_is_a_long(engine: PolicyEngine, value: Any, allowed: bool) -> None:
    """JSON Schema's `integer` admits 5.0, and SDK clients send it: it is the Long 5."""
    decision = refund(engine, limit=value)
    assert (decision.allowed, decision.errors) == (allowed, ())


@pytest.mark.parametrize("value", [5.5, 1e-300, 2**63, -(2**63) - 1, 1e19, float("inf")], ids=repr)
def test_a_number_a_long_cannot_hold_is_refused(engine: PolicyEngine, value: Any) -> None:
    decision = refund(engine, limit=value)
    assert (decision.allowed, decision.reason) == (False, Reason.POLICY_ERROR)
    (error,) = decision.errors
    assert error.startswith("argument 'limit' is not")
    assert str(value) not in error


@pytest.mark.parametrize("value", ["5", True, [5]], ids=repr)
def test_a_long_of_another_type_is_refused_by_cedar(engine: PolicyEngine, value: Any) -> None:
    decision = refund(engine, limit=value)
    assert (decision.allowed, decision.errors) == (False, ("the arguments do not match the tool's input schema",))


def test_the_extremes_of_a_long_are_longs() -> None:
    shape = {"attrs": {"n": "Long"}, "optional": []}
    assert cedar_input({"n": 2**63 - 1}, shape) == {"n": 2**63 - 1}
    assert cedar_input({"n": -(2**63)}, shape) == {"n": -(2**63)}
    assert cedar_input({"n": -1e18}, shape) == {"n": -(10**18)}
    assert cedar_input({"n": 4.611686018427388e18}, shape) == {"n": 4611686018427388000}  # as written, not 2**62
    with pytest.raises(Untypable):
        cedar_input({"n": 2**63}, shape)


def test_typing_never_changes_the_callers_arguments() -> None:
    arguments = {"d": 1.5, "o": None, "r": {"n": 2.0}}
    shape = {
        "attrs": {"d": "decimal", "o": "String", "r": {"attrs": {"n": "Long"}, "optional": []}},
        "optional": ["o"],
    }
    assert cedar_input(arguments, shape) == {"d": {"__extn": {"fn": "decimal", "arg": "1.5"}}, "r": {"n": 2}}
    assert arguments == {"d": 1.5, "o": None, "r": {"n": 2.0}}


# ---------------------------------------------------------------------------------------------------------------
# reading input types from Cedar's schema


def test_input_types_are_read_from_cedars_own_printing() -> None:
    """Quoted and escaped names, annotations, nested sets of records; names Cedar resolves itself (aliases,
    entities, other extension types) stay opaque: their values reach Cedar as sent."""
    schema = cedarpy.Schema.from_str(
        """namespace Teleport {
          entity User; entity Gateway;
          type Money = { amount: decimal };
          action "t___x" appliesTo { principal: [User], resource: [Gateway], context: { input: {
            @doc("a") "quo\\"te"?: decimal, "\\u{1f600}": Long, "tab\\tbed": String,
            rows?: Set<{ @deprecated price?: decimal }>, money: Money, who?: User, ip?: ipaddr } } };
          action "t___none" appliesTo { principal: [User], resource: [Gateway] };
          action "group";
        }"""
    )
    assert tool_inputs(schema) == {
        "t___x": {
            "attrs": {
                "ip": "ipaddr",
                "money": "Money",
                'quo"te': "decimal",
                "rows": {"set": {"attrs": {"price": "decimal"}, "optional": ["price"]}},
                "tab\tbed": "String",
                "who": "User",
                "\U0001f600": "Long",
            },
            "optional": ["ip", 'quo"te', "rows", "who"],
        },
        "t___none": OPAQUE,
    }


def test_a_tool_without_context_gets_arguments_as_sent(tmp_path: Path) -> None:
    (tmp_path / "schema.cedarschema").write_text(
        'namespace Teleport { entity User; entity Gateway; action "t___x" appliesTo { principal: [User], '
        "resource: [Gateway] }; }",
        encoding="utf-8",
    )
    (tmp_path / "p.cedar").write_text("permit (principal, action, resource);", encoding="utf-8")
    engine = PolicyEngine.load(tmp_path)
    decision = engine.authorize(ALICE, "t___x", {"n": None})
    assert (decision.allowed, decision.reason) == (False, Reason.POLICY_ERROR)


def test_a_schema_text_that_cannot_be_read_refuses_the_set(monkeypatch: pytest.MonkeyPatch) -> None:
    source = PolicySource({}, render(SHOP))
    schema = parse_schema(source)

    class Garbled:
        def __str__(self) -> str:
            return str(schema).replace("amount: decimal", "amount: <decimal")

    with pytest.raises(PolicySetInvalid, match="cannot be read from Cedar's schema text"):
        tool_inputs(Garbled())  # type: ignore[arg-type]


def test_the_bundle_holds_the_input_types(engine: PolicyEngine) -> None:
    body = json.loads(engine.compiled.to_json())
    assert body["inputs"][TOOL]["attrs"]["amount"] == "decimal"
    assert body["inputs"][TOOL]["optional"] == ["count", "items", "limit", "must", "note", "reason"]
