"""`teleport-policy` (policy_toolkit.cli): what a policy author relies on, command by command.

Every test works on copies of `policies/` and `template.yaml` in tmp_path and calls `main([...])` in-process.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cedarpy
import pytest

import interceptor.wiring  # noqa: F401 (creates the service logger before `explain --event` touches it)
from interceptor.logs import SERVICE
from interceptor.policy import PolicyEngine
from interceptor.reasons import Reason
from interceptor.tokens import Identity
from policy_toolkit import cases as tc
from policy_toolkit.cli import main
from policy_toolkit.schema import generate

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("schema", "validate", "build", "format", "expand", "test", "explain", "diff")
DEMO_CASES = 17
DEMO_POLICIES = 6

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A private copy of the policy folder and the template."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    return tmp_path


@pytest.fixture
def policies(work: Path) -> Path:
    return work / "policies"


@pytest.fixture
def cli(work: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """`teleport-policy --dir <copy>/policies <argv...>`: (exit code, stdout)."""

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--dir", str(work / "policies"), *argv])
        return code, capsys.readouterr().out

    return run


@pytest.fixture
def schema_cmd(cli: Run, work: Path) -> Run:
    def run(*argv: str) -> tuple[int, str]:
        return cli("schema", "--template", str(work / "template.yaml"), *argv)

    return run


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


# --------------------------------------------------------------------------------------------------------------
# schema


INVENTORY_TARGET = """
  InventoryTarget:
    Type: AWS::BedrockAgentCore::GatewayTarget
    Metadata:
      ToolAnnotations:
        adjust_stock: { destructiveHint: false, openWorldHint: false, title: Adjust stock }
    Properties:
      GatewayIdentifier: !GetAtt Gateway.GatewayIdentifier
      Name: inventory
      TargetConfiguration:
        Mcp:
          Lambda:
            LambdaArn: !GetAtt OrdersFunction.Arn
            ToolSchema:
              InlinePayload:
                - Name: zap_stock
                  Description: Remove an item.
                  InputSchema:
                    Type: object
                    Properties:
                      sku: { Type: string }
                    Required: [sku]
                - Name: adjust_stock
                  Description: Change the stock of an item.
                  InputSchema:
                    Type: object
                    Properties:
                      sku: { Type: string }
                      delta: { Type: integer }
                      dry_run: { Type: boolean }
                      tags: { Type: array, Items: { Type: string } }
                      labels: { Type: array, Items: { Type: number } }
                      price: { Type: number }
                      anything: { Description: untyped }
                      meta: { Type: object }
                      location:
                        Type: object
                        Properties:
                          warehouse: { Type: string }
                          bin: { Type: integer }
                        Required: [warehouse]
                      "odd-name": { Type: string }
                      "has space": { Type: string }
                    Required: [sku, delta, location]
"""

# The same tools as a saved MCP `tools/list` response (lower-case JSON Schema keywords, gateway-prefixed names).
INVENTORY_LISTING = {
    "jsonrpc": "2.0",
    "id": 2,
    "result": {
        "tools": [
            {
                "name": "inventory___zap_stock",
                "inputSchema": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]},
            },
            {
                "name": "inventory___adjust_stock",
                "annotations": {"destructiveHint": False, "openWorldHint": False, "title": "Adjust stock"},
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string"},
                        "delta": {"type": "integer"},
                        "dry_run": {"type": "boolean"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "labels": {"type": "array", "items": {"type": "number"}},
                        "price": {"type": "number"},
                        "anything": {"description": "untyped"},
                        "meta": {"type": "object"},
                        "location": {
                            "type": "object",
                            "properties": {"warehouse": {"type": "string"}, "bin": {"type": "integer"}},
                            "required": ["warehouse"],
                        },
                        "odd-name": {"type": "string"},
                        "has space": {"type": "string"},
                    },
                    "required": ["sku", "delta", "location"],
                },
            },
        ]
    },
}

ADJUST_STOCK_ACTION = """\
  // Target inventory.
  action "inventory";
  action "inventory___adjust_stock" in [Action::"inventory"] appliesTo {
    principal: [User, Agent],
    resource: [Gateway],
    context: { agent?: Agent, input: {
      delta: Long,
      dry_run?: Bool,
      "has space"?: String,
      labels?: Set<decimal>,
      location: {
        bin?: Long,
        warehouse: String,
      },
      meta?: {},
      "odd-name"?: String,
      price?: decimal,
      sku: String,
      tags?: Set<String>,
    } },
  };
  action "inventory___zap_stock" in [Action::"inventory", Action::"destructive", Action::"open_world"] appliesTo {
    principal: [User, Agent],
    resource: [Gateway],
    context: { agent?: Agent, input: {
      sku: String,
    } },
  };
"""


def add_target(template: Path, block: str = INVENTORY_TARGET) -> None:
    edit(template, "\nOutputs:", block + "\nOutputs:")


def add_orders_tool(template: Path, name: str) -> None:
    """A new tool in the template's orders target, inserted before update_order (not in sorted position)."""
    lines = template.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == "- Name: update_order")
    pad = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at:at] = [
        f"{pad}- Name: {name}\n",
        f"{pad}  InputSchema:\n",
        f"{pad}    Type: object\n",
        f"{pad}    Properties:\n",
        f"{pad}      order_id: {{ Type: string }}\n",
    ]
    template.write_text("".join(lines), encoding="utf-8")


def action_names(schema_text: str) -> list[str]:
    return re.findall(r'^  action "([^"]+)"', schema_text, re.MULTILINE)


def test_generated_schema_equals_the_committed_one() -> None:
    generated = generate(ROOT / "template.yaml", ROOT / "policies" / "tools")
    assert generated == (ROOT / "policies" / "schema.cedarschema").read_text(encoding="utf-8")


def test_schema_check_passes_on_the_repository(schema_cmd: Run, policies: Path) -> None:
    code, out = schema_cmd("--check")
    assert code == 0, out
    assert f"{policies / 'schema.cedarschema'}: up to date" in out


def test_schema_check_fails_after_a_tool_is_added_to_the_template(schema_cmd: Run, work: Path) -> None:
    add_orders_tool(work / "template.yaml", "cancel_order")
    committed = (work / "policies" / "schema.cedarschema").read_text(encoding="utf-8")
    code, out = schema_cmd("--check")
    assert code == 1
    assert "stale" in out
    assert "+++ generated" in out
    groups = 'Action::"destructive", Action::"open_world"'  # the new tool has no annotations
    assert f'+  action "orders___cancel_order" in [Action::"orders", {groups}] appliesTo {{' in out
    # --check never writes
    assert (work / "policies" / "schema.cedarschema").read_text(encoding="utf-8") == committed


def test_schema_check_fails_after_a_tool_is_added_to_a_saved_listing(schema_cmd: Run, policies: Path) -> None:
    listing_path = policies / "tools" / "db.json"
    listing = json.loads(listing_path.read_text(encoding="utf-8"))
    listing["result"]["tools"].append(
        {"name": "db___drop_table", "inputSchema": {"type": "object", "properties": {"table": {"type": "string"}}}}
    )
    write(listing_path, json.dumps(listing))
    code, out = schema_cmd("--check")
    assert code == 1
    assert "stale" in out
    assert (
        '+  action "db___drop_table" in [Action::"db", Action::"destructive", Action::"open_world"] appliesTo {' in out
    )
    assert "+      table?: String," in out


def test_schema_writes_and_then_check_passes(schema_cmd: Run, work: Path, policies: Path) -> None:
    add_target(work / "template.yaml")
    code, out = schema_cmd()
    assert code == 0
    assert f"wrote {policies / 'schema.cedarschema'}" in out
    written = (policies / "schema.cedarschema").read_text(encoding="utf-8")
    assert ADJUST_STOCK_ACTION in written
    assert schema_cmd("--check")[0] == 0
    assert schema_cmd()[0] == 0
    assert (policies / "schema.cedarschema").read_text(encoding="utf-8") == written


def test_schema_output_is_stable_sorted_and_parses(work: Path, policies: Path) -> None:
    add_target(work / "template.yaml")
    add_orders_tool(work / "template.yaml", "archive_order")
    write(policies / "tools" / "crm.json", json.dumps({"tools": [{"name": "z_last"}, {"name": "a_first"}]}))
    first = generate(work / "template.yaml", policies / "tools")
    assert generate(work / "template.yaml", policies / "tools") == first
    names = action_names(first)
    # annotation groups first, then targets sorted, each group declared before its tools, tools sorted within it
    assert names == [
        "destructive",
        "idempotent",
        "open_world",
        "read_only",
        "crm",
        "crm___a_first",
        "crm___z_last",
        "db",
        "db___run_query",
        "inventory",
        "inventory___adjust_stock",
        "inventory___zap_stock",
        "orders",
        "orders___archive_order",
        "orders___get_order_tool",
        "orders___list_my_orders",
        "orders___update_order",
    ]
    schema = cedarpy.Schema.from_str(first)
    assert 'action "orders___archive_order"' in str(schema)


def test_json_schema_mapping_from_cloudformation_pascal_case(work: Path, policies: Path) -> None:
    """string/integer/number/boolean/array/nested object, required vs optional; untyped left out; odd property
    names quoted; annotations from the target's Metadata."""
    add_target(work / "template.yaml")
    text = generate(work / "template.yaml", policies / "tools")
    assert ADJUST_STOCK_ACTION in text
    assert "anything" not in text


def test_saved_listing_maps_like_the_template(work: Path, policies: Path) -> None:
    """The MCP (lower-case) form of the same tools gives the same schema as the CloudFormation form, and the
    gateway's `<target>___` prefix in a saved listing is not doubled."""
    write(policies / "tools" / "inventory.json", json.dumps(INVENTORY_LISTING))
    from_listing = generate(work / "template.yaml", policies / "tools")
    assert ADJUST_STOCK_ACTION in from_listing
    assert "inventory___inventory___" not in from_listing

    (policies / "tools" / "inventory.json").unlink()
    add_target(work / "template.yaml")
    assert generate(work / "template.yaml", policies / "tools") == from_listing


def test_saved_listing_result_only_form(work: Path, policies: Path) -> None:
    write(
        policies / "tools" / "crm.json",
        json.dumps(
            {"tools": [{"name": "find_customer", "inputSchema": {"properties": {"email": {"type": "string"}}}}]}
        ),
    )
    text = generate(work / "template.yaml", policies / "tools")
    assert (
        'action "crm___find_customer" in [Action::"crm", Action::"destructive", Action::"open_world"] appliesTo {'
        in text
    )
    assert "      email?: String,\n" in text
    cedarpy.Schema.from_str(text)


def test_a_target_in_template_and_listing_uses_the_template(schema_cmd: Run, work: Path, policies: Path) -> None:
    listing = {
        "tools": [
            {"name": "orders___secret_tool", "inputSchema": {"type": "object"}},
            {
                "name": "orders___get_order_tool",
                "inputSchema": {"type": "object", "properties": {"order_id": {"type": "integer"}}},
            },
        ]
    }
    write(policies / "tools" / "orders.json", json.dumps(listing))
    text = generate(work / "template.yaml", policies / "tools")
    assert "secret_tool" not in text
    assert text == (ROOT / "policies" / "schema.cedarschema").read_text(encoding="utf-8")
    assert schema_cmd("--check")[0] == 0


def test_generated_schema_types_what_policies_and_calls_may_use(schema_cmd: Run, work: Path, policies: Path) -> None:
    """Policies can use the mapped arguments (nested, quoted, decimal); arguments left out of the schema are
    refused."""
    add_target(work / "template.yaml")
    assert schema_cmd()[0] == 0
    write(
        policies / "inventory.cedar",
        '@id("stockers-adjust-in-main")\n'
        "permit (\n"
        '  principal in Teleport::Role::"stocker",\n'
        '  action == Teleport::Action::"inventory___adjust_stock",\n'
        "  resource\n"
        ")\n"
        'when { context.input.location.warehouse == "main" && !(context.input has "odd-name") };\n',
    )
    engine = PolicyEngine.load(policies)
    stocker = Identity("sam", ("stocker",), {}, "test", 0)
    base = {"sku": "A1", "delta": -2, "location": {"warehouse": "main"}}
    allowed = engine.authorize(stocker, "inventory___adjust_stock", base)
    assert (allowed.allowed, allowed.policy_ids) == (True, ("stockers-adjust-in-main",))
    assert engine.authorize(stocker, "inventory___adjust_stock", {**base, "odd-name": "x"}).allowed is False
    untyped = engine.authorize(stocker, "inventory___adjust_stock", {**base, "anything": 1})
    assert (untyped.allowed, untyped.reason) == (False, Reason.POLICY_ERROR)

    write(
        policies / "inventory.cedar",
        'permit (principal, action == Teleport::Action::"inventory___adjust_stock", resource)\n'
        'when { context.input has price && context.input.price.lessThan(decimal("2.5")) };\n',
    )
    engine = PolicyEngine.load(policies)
    assert engine.authorize(stocker, "inventory___adjust_stock", {**base, "price": 1.5}).allowed
    assert not engine.authorize(stocker, "inventory___adjust_stock", {**base, "price": 2.5}).allowed
    write(policies / "inventory.cedar", "permit (principal, action, resource) when { context.input.price > 0 };\n")
    with pytest.raises(Exception, match="price"):
        PolicyEngine.load(policies)  # a decimal is no Long: Cedar's validator says so at load


@pytest.mark.parametrize("name", ["in", "if", "is"])
def test_reserved_word_property_names_are_quoted(name: str, work: Path, policies: Path) -> None:
    listing = {"tools": [{"name": "route", "inputSchema": {"properties": {name: {"type": "string"}}}}]}
    write(policies / "tools" / "travel.json", json.dumps(listing))
    text = generate(work / "template.yaml", policies / "tools")
    cedarpy.Schema.from_str(text)
    assert f'"{name}"?: String,' in text


def test_reserved_names_a_tool_declares_stay_out_of_the_schema(work: Path, policies: Path) -> None:
    # a tool may declare the identity it receives; policy never reads it (removed before, stamped after policy)
    text_type, list_type = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
    properties = {"city": text_type, "_teleport_user": text_type, "_Teleport_Roles": list_type}
    nested = {"type": "object", "properties": {"_teleport_note": {"type": "string"}}}
    listing = {"tools": [{"name": "route", "inputSchema": {"properties": {**properties, "trip": nested}}}]}
    write(policies / "tools" / "travel.json", json.dumps(listing))
    text = generate(work / "template.yaml", policies / "tools")
    route = text[text.index('action "travel___route"') :]
    assert "city?: String," in route
    assert "_teleport_note?: String" in route  # inside an argument's value: not an argument name
    assert "_teleport_user" not in route and "_Teleport_Roles" not in route


# --------------------------------------------------------------------------------------------------------------
# validate

ORDERS_FOOTER = """
// A few comments and another policy before the one under test.
// (line numbers must still point at the right policy)

@id("admins-read-orders")
permit (
  principal in Teleport::Role::"order-admin",
  action == Teleport::Action::"orders___get_order_tool",
  resource
);

@id("the-bad-one")
permit (
  principal in Teleport::Role::"developer",
  action == Teleport::Action::ACTION,
  resource
)
when { CONDITION };
"""


def test_validate_passes_on_the_repository(cli: Run) -> None:
    code, out = cli("validate")
    assert code == 0, out
    assert f"{DEMO_POLICIES} policies in 3 files, 4 tools" in out
    assert "0 errors, 0 warnings" in out
    assert cli("validate", "--strict")[0] == 0


@pytest.mark.parametrize(
    ("condition", "action", "message"),
    [
        ("true", '"orders___get_ordr_tool"', 'unrecognized action `Teleport::Action::"orders___get_ordr_tool"`'),
        ('principal.nme == "alice"', '"orders___get_order_tool"', "attribute `nme`"),
        ('context.input.oder_id == "42"', '"orders___get_order_tool"', "input.oder_id"),
    ],
    ids=["tool-name", "role-attribute", "argument-name"],
)
def test_validate_reports_typos_at_file_and_line(
    cli: Run, policies: Path, condition: str, action: str, message: str
) -> None:
    target = policies / "orders.cedar"
    footer = ORDERS_FOOTER.replace("CONDITION", condition).replace("ACTION", action)
    write(target, target.read_text(encoding="utf-8") + footer)
    line = line_of(target, '@id("the-bad-one")')
    assert line > 20
    code, out = cli("validate")
    assert code == 1
    errors = [row for row in out.splitlines() if ": error:" in row]
    assert errors, out
    assert all(row.startswith(f"{target}:{line}: error:") for row in errors), out
    assert any(message in row for row in errors), out


def test_validate_reports_the_right_file(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-extra.cedar",
        "// extra\n\n"
        '@id("fine")\npermit (principal, action == Teleport::Action::"db___run_query", resource);\n\n'
        '@id("typo")\npermit (principal, action, resource) when { principal.nme == "x" };\n',
    )
    code, out = cli("validate")
    assert code == 1
    errors = [row for row in out.splitlines() if ": error:" in row]
    # one error per principal type the policy applies to (the tools apply to Users and Agents)
    assert errors == [f"{policies / 'zz-extra.cedar'}:6: error: {row.split(': error: ', 1)[1]}" for row in errors]
    assert len(errors) == 2 and all("nme" in row for row in errors)
    assert "2 errors, 0 warnings" in out


def test_validate_names_policies_by_id_never_by_cedar_position(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-names.cedar",
        '@id("fine")\npermit (principal, action == Teleport::Action::"db___run_query", resource);\n'
        '@id("typo")\npermit (principal, action, resource) when { principal.nme == "x" };\n'
        'permit (principal, action, resource) when { principal.nme == "y" };\n',
    )
    code, out = cli("validate")
    assert code == 1
    errors = [row for row in out.splitlines() if ": error:" in row]
    assert any("policy `typo`" in row for row in errors), out
    assert any("policy `zz-names.cedar#2`" in row for row in errors), out
    assert not re.search(r"`policy\d+`", out), out


def test_validate_fails_on_a_duplicate_id(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-dup.cedar",
        '@id("developers-read-orders")\npermit (principal, action == Teleport::Action::"db___run_query", resource);\n',
    )
    code, out = cli("validate")
    assert code == 1
    assert "zz-dup.cedar" in out
    assert "'developers-read-orders' is used twice" in out
    assert "1 errors" in out


def test_validate_fails_on_a_schema_that_types_a_reserved_argument(cli: Run, policies: Path) -> None:
    typed = "      limit?: Long,\n      _Teleport_User?: String,\n"
    edit(policies / "schema.cedarschema", "      limit?: Long,\n", typed)  # the bundle no longer matches: compiled
    code, out = cli("validate")
    assert code == 1
    assert (
        f"{policies / 'schema.cedarschema'}: error: tool 'orders___list_my_orders' declares argument '_Teleport_User'"
        in out
    )
    assert "1 errors" in out


def test_validate_warns_about_a_policy_without_id(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-anon.cedar",
        "// no @id below\n\n"
        'permit (principal in Teleport::Role::"developer", action == Teleport::Action::"db___run_query", resource);\n',
    )
    code, out = cli("validate")
    assert code == 0, out
    assert f"{policies / 'zz-anon.cedar'}:3: warning: no @id annotation" in out
    assert "zz-anon.cedar#0" in out
    assert "0 errors, 1 warnings" in out
    code, out = cli("validate", "--strict")
    assert code == 1
    assert "0 errors, 1 warnings" in out


def test_validate_flags_a_policy_whose_action_scope_matches_no_tool(cli: Run, policies: Path) -> None:
    """An action group declared in the schema but holding no tool: the policy can never apply. (Cedar's own
    validator rejects it, so it is reported as an error, before the toolkit's own `can never apply` check.)"""
    edit(policies / "schema.cedarschema", "  // Target orders.", '  action "retired";\n\n  // Target orders.')
    write(
        policies / "zz-retired.cedar",
        '// tools of a retired target\n@id("retired-tools")\n'
        'permit (principal, action in Teleport::Action::"retired", resource);\n',
    )
    code, out = cli("validate")
    assert code == 1
    flagged = [row for row in out.splitlines() if row.startswith(f"{policies / 'zz-retired.cedar'}:2: ")]
    assert flagged, out
    assert any("applicable action" in row or "can never apply" in row for row in flagged)


def test_validate_warns_about_a_condition_that_is_always_false(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-never.cedar",
        '@id("never")\npermit (principal, action == Teleport::Action::"db___run_query", resource) when { false };\n',
    )
    code, out = cli("validate", "--strict")
    assert f"{policies / 'zz-never.cedar'}:1: warning:" in out
    assert code == 1


def test_validate_reports_a_syntax_error_in_its_file(cli: Run, policies: Path) -> None:
    write(policies / "zz-broken.cedar", "// broken\n\npermit (principal, action resource);\n")
    code, out = cli("validate")
    assert code == 1
    assert re.search(rf"^{re.escape(str(policies / 'zz-broken.cedar'))}:\d+: error: .*resource", out, re.MULTILINE)


def test_validate_line_ignores_policy_keywords_inside_strings(cli: Run, policies: Path) -> None:
    target = write(
        policies / "zz-sql.cedar",
        '@id("sql-guard")\n'
        "forbid (\n"
        "  principal,\n"
        '  action == Teleport::Action::"db___run_query",\n'
        "  resource\n"
        ")\n"
        'when { context.input.query like "*permit (*" };\n'
        "\n"
        '@id("typo")\n'
        'permit (principal, action == Teleport::Action::"db___run_quer", resource);\n',
    )
    code, out = cli("validate")
    assert code == 1
    assert f"{target}:9: error:" in out, out


# --------------------------------------------------------------------------------------------------------------
# format

UNFORMATTED = (
    "// Order admins, written in a hurry.\n"
    '@id("sloppy")   permit(principal in Teleport::Role::"order-admin",'
    'action==Teleport::Action::"orders___get_order_tool",resource) // inline\n'
    'when { context.input.order_id == "42" }; // trailing\n'
)


def test_format_check_passes_on_the_repository(cli: Run) -> None:
    assert cli("format", "--check") == (0, "")


def test_format_check_fails_then_format_fixes(cli: Run, policies: Path) -> None:
    sloppy = write(policies / "zz-sloppy.cedar", UNFORMATTED)
    code, out = cli("format", "--check")
    assert code == 1
    assert out.splitlines() == [f"{sloppy}: not formatted; run `teleport-policy format`"]
    assert sloppy.read_text(encoding="utf-8") == UNFORMATTED

    code, out = cli("format")
    assert code == 0
    assert out.splitlines() == [f"formatted {sloppy}"]
    formatted = sloppy.read_text(encoding="utf-8")
    assert formatted != UNFORMATTED
    for comment in ("// Order admins, written in a hurry.", "// inline", "// trailing"):
        assert comment in formatted
    assert "action == Teleport::Action::" in formatted
    assert cli("format", "--check") == (0, "")
    assert cli("format") == (0, "")
    assert sloppy.read_text(encoding="utf-8") == formatted
    # same policies after formatting
    assert cli("validate")[0] == 0
    assert "sloppy" in PolicyEngine.load(policies).policy_ids


@pytest.mark.parametrize("check", [True, False])
def test_format_refuses_a_syntax_error_and_leaves_the_file(cli: Run, policies: Path, check: bool) -> None:
    broken_text = "// broken\npermit (principal, action resource);\n"
    broken = write(policies / "broken.cedar", broken_text)
    code, out = cli("format", *(["--check"] if check else []))
    assert code == 1
    assert f"{broken}: cannot format" in out
    assert broken.read_text(encoding="utf-8") == broken_text


# --------------------------------------------------------------------------------------------------------------
# expand / test


def demo_yaml(policies: Path) -> Path:
    return policies / "tests" / "demo.yaml"


def demo_json(policies: Path) -> Path:
    return policies / "tests" / "demo.cedartests.json"


def test_repository_tests_pass_with_coverage(cli: Run) -> None:
    code, out = cli("test", "--coverage")
    assert code == 0, out
    assert f"{DEMO_CASES} passed, 0 failed" in out
    assert f"coverage: {DEMO_POLICIES}/{DEMO_POLICIES} policies determine a decision" in out
    assert "FAIL" not in out
    assert "STALE" not in out
    assert "UNCOVERED" not in out


def test_expand_reproduces_the_committed_json(cli: Run, policies: Path) -> None:
    code, out = cli("expand")
    assert code == 0
    assert f"wrote {demo_json(policies)}" in out
    assert demo_json(policies).read_bytes() == (ROOT / "policies" / "tests" / "demo.cedartests.json").read_bytes()


def test_a_wrong_decision_fails_with_expected_and_actual(cli: Run, policies: Path) -> None:
    edit(
        demo_yaml(policies),
        "  expect: allow\n  policies: [developers-read-orders]",
        "  expect: deny\n  policies: [developers-read-orders]",
    )
    assert cli("expand")[0] == 0
    code, out = cli("test")
    assert code == 1
    lines = out.splitlines()
    at = lines.index("FAIL demo.cedartests.json: developer reads an order")
    assert lines[at + 1].split() == ["expected", "deny", "by", "['developers-read-orders']"]
    assert lines[at + 2].split() == ["got", "allow", "(allowed)", "by", "['developers-read-orders']"]
    assert f"{DEMO_CASES - 1} passed, 1 failed" in out


def test_a_wrong_determining_policy_fails(cli: Run, policies: Path) -> None:
    edit(demo_yaml(policies), "policies: [order-admins-manage-orders]", "policies: [order-status-must-be-known]")
    assert cli("expand")[0] == 0
    code, out = cli("test")
    assert code == 1
    assert "FAIL demo.cedartests.json: order admin ships an order" in out
    assert "expected allow by ['order-status-must-be-known']" in out
    assert "got      allow (allowed) by ['order-admins-manage-orders']" in out


def test_unexpected_evaluation_errors_fail(cli: Run, policies: Path) -> None:
    edit(demo_yaml(policies), "{order_id: 42}\n  expect: deny\n  num_errors: 1", "{order_id: 42}\n  expect: deny")
    assert cli("expand")[0] == 0
    code, out = cli("test")
    assert code == 1
    assert "FAIL demo.cedartests.json: arguments that do not match the tool's input schema are refused" in out
    assert "deny (policy_error)" in out
    assert "errors [" in out
    assert "the arguments do not match the tool's input schema" in out


def test_yaml_edited_without_expand_is_stale(cli: Run, policies: Path) -> None:
    edit(demo_yaml(policies), "- name: developer reads an order", "- name: developer reads order 42")
    code, out = cli("test")
    assert code == 1
    assert f"STALE {demo_json(policies)}: missing or older than demo.yaml" in out
    assert f"{DEMO_CASES} passed, 0 failed" in out
    assert cli("expand")[0] == 0
    code, out = cli("test")
    assert code == 0, out
    assert "PASS demo.cedartests.json: developer reads order 42" in out


def test_yaml_without_json_is_stale(cli: Run, policies: Path) -> None:
    shutil.copy(demo_yaml(policies), policies / "tests" / "more.yaml")
    code, out = cli("test")
    assert code == 1
    assert f"STALE {policies / 'tests' / 'more.cedartests.json'}: missing" in out
    assert cli("expand")[0] == 0
    code, out = cli("test", "--coverage")
    assert code == 0, out
    assert f"{2 * DEMO_CASES} passed, 0 failed" in out


def test_an_uncovered_policy_fails_only_with_coverage(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-auditors.cedar",
        '@id("auditors-read-orders")\n'
        "permit (\n"
        '  principal in Teleport::Role::"auditor",\n'
        '  action == Teleport::Action::"orders___get_order_tool",\n'
        "  resource\n"
        ");\n",
    )
    code, out = cli("test")
    assert code == 0, out
    assert "UNCOVERED auditors-read-orders: no test case where it determines the decision" in out
    assert f"coverage: {DEMO_POLICIES}/{DEMO_POLICIES + 1} policies" in out
    code, out = cli("test", "--coverage")
    assert code == 1
    assert "UNCOVERED auditors-read-orders" in out
    assert f"{DEMO_CASES} passed, 0 failed" in out


def test_expanded_json_has_the_cedar_run_tests_shape(policies: Path) -> None:
    entries = json.loads(demo_json(policies).read_text(encoding="utf-8"))
    assert isinstance(entries, list)
    assert len(entries) == DEMO_CASES
    for entry in entries:
        assert set(entry) == {"name", "request", "entities", "decision", "reason", "num_errors"}
        assert set(entry["request"]) == {"principal", "action", "resource", "context"}
        request = entry["request"]
        assert request["principal"]["type"] == "Teleport::User"
        assert request["action"]["type"] == "Teleport::Action"
        assert request["resource"] == {"type": "Teleport::Gateway", "id": "agentcore"}
        assert set(request["context"]) == {"input"}
        assert entry["decision"] in {"allow", "deny"}
        assert isinstance(entry["reason"], list)
        assert isinstance(entry["num_errors"], int)
        uids = [e["uid"] for e in entry["entities"]]
        assert request["principal"] in uids
        assert request["resource"] in uids
        for entity in entry["entities"]:
            assert {"uid", "attrs", "parents"} <= set(entity)


def test_run_tests_json_means_the_same_to_plain_cedar(policies: Path) -> None:
    """Evaluate each run-tests entry with cedarpy directly (whole policy set, `@id` as policy id, as the Cedar
    CLI does): same decision and the expected reasons."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(policies.glob("*.cedar")))
    as_json = json.loads(cedarpy.policies_to_json_str(text))
    as_json["staticPolicies"] = {p["annotations"]["id"]: p for p in as_json["staticPolicies"].values()}
    policy_set = cedarpy.PolicySet.from_json_str(json.dumps(as_json))
    schema = cedarpy.Schema.from_str((policies / "schema.cedarschema").read_text(encoding="utf-8"))
    for entry in json.loads(demo_json(policies).read_text(encoding="utf-8")):
        result = cedarpy.is_authorized(entry["request"], policy_set, entry["entities"], schema)
        assert result.allowed == (entry["decision"] == "allow"), entry["name"]
        assert set(entry["reason"]) <= set(result.diagnostics.reasons), entry["name"]
        assert len(result.diagnostics.errors) == entry["num_errors"], entry["name"]


def test_cases_round_trip_through_run_tests_json(policies: Path) -> None:
    """A case reads back as the same question: its arguments as Cedar saw them (null optional arguments gone,
    decimals as exact numbers), the same decision, and the same run-tests JSON when written again."""
    engine = PolicyEngine.load(policies)
    inputs = engine.compiled.inputs
    cases = tc.load_yaml(demo_yaml(policies))
    assert len(cases) == DEMO_CASES
    assert any(case.identity.traits for case in cases)
    assert any(None in case.arguments.values() for case in cases)
    assert any(isinstance(value, float) for case in cases for value in case.arguments.values())
    for case in cases:
        back = tc.from_cedar(json.loads(json.dumps(case.to_cedar(inputs))), case.source)
        assert dataclasses.replace(back, arguments=case.arguments) == case
        assert back.identity.bot == case.identity.bot
        assert back.run(engine) == case.run(engine)
        assert back.to_cedar(inputs) == case.to_cedar(inputs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: no tool\n  user: alice\n  expect: allow\n", "each case needs name, user, tool and expect"),
        (
            "- name: maybe\n  user: alice\n  tool: orders___get_order_tool\n  expect: perhaps\n",
            "maybe: expect must be allow or deny",
        ),
        ("name: not a list\nuser: alice\n", "expected a list of cases"),
        (
            "- name: dated\n  user: alice\n  tool: orders___get_order_tool\n  expect: allow\n"
            "  arguments: {order_id: 2024-01-01}\n",
            "dated: arguments must be JSON values, as a gateway body holds them (a value is not a JSON type); "
            "quote dates",
        ),
        (
            "- name: not a number\n  user: alice\n  tool: orders___list_my_orders\n  expect: deny\n"
            "  arguments: {filters: [.nan]}\n",
            "not a number: arguments must be JSON values, as a gateway body holds them (a number is not finite)",
        ),
        (
            "- name: endless\n  user: alice\n  tool: orders___list_my_orders\n  expect: deny\n"
            "  arguments: {filters: &x [*x]}\n",
            "endless: arguments must be JSON values, as a gateway body holds them (nested deeper than 64 levels)",
        ),
    ],
    ids=["missing-field", "bad-expect", "not-a-list", "yaml-date", "yaml-nan", "yaml-cycle"],
)
@pytest.mark.parametrize("command", ["test", "expand"])
def test_malformed_yaml_case_is_a_usage_error(cli: Run, policies: Path, text: str, message: str, command: str) -> None:
    write(policies / "tests" / "broken.yaml", text)
    code, out = cli(command)
    assert code == 2
    assert "broken.yaml" in out
    assert message in out
    assert not (policies / "tests" / "broken.cedartests.json").exists()


def test_malformed_run_tests_json_is_a_usage_error(cli: Run, policies: Path) -> None:
    write(policies / "tests" / "hand.cedartests.json", json.dumps([{"name": "no request", "decision": "allow"}]))
    code, out = cli("test")
    assert code == 2
    assert "hand.cedartests.json" in out
    assert "'no request'" in out


def test_a_run_tests_input_no_gateway_body_holds_is_a_usage_error(cli: Run, policies: Path) -> None:
    # json.loads reads NaN; a gateway body cannot hold it, so the engine is never asked about it
    entries = json.loads(demo_json(policies).read_text(encoding="utf-8"))
    entries[0]["request"]["context"]["input"]["order_id"] = float("nan")
    write(policies / "tests" / "hand.cedartests.json", json.dumps(entries[:1]))
    code, out = cli("test")
    assert code == 2
    assert "hand.cedartests.json" in out
    assert "context.input is not strict JSON: a number is not finite" in out


def test_a_malformed_decimal_in_run_tests_json_is_a_usage_error(cli: Run, policies: Path) -> None:
    entries = json.loads(demo_json(policies).read_text(encoding="utf-8"))
    decimal = next(e for e in entries if isinstance(e["request"]["context"]["input"].get("timeout_s"), dict))
    decimal["request"]["context"]["input"]["timeout_s"]["__extn"]["arg"] = "twelve"
    write(policies / "tests" / "hand.cedartests.json", json.dumps([decimal]))
    code, out = cli("test")
    assert code == 2
    assert "hand.cedartests.json" in out
    assert "is not a run-tests case" in out


def test_yaml_syntax_error_is_a_usage_error(cli: Run, policies: Path) -> None:
    write(policies / "tests" / "broken.yaml", "- name: x\n  user: alice\n  roles: [developer\n")
    code, out = cli("test")
    assert code == 2
    assert "broken.yaml" in out


@pytest.mark.parametrize(
    "field",
    ["  roles: developer\n", "  traits: {db_names: sales}\n", "  arguments: [42]\n", "  arguments: [order_id]\n"],
    ids=["roles-string", "trait-string", "arguments-list-of-int", "arguments-list-of-str"],
)
def test_wrongly_typed_yaml_fields_are_usage_errors(cli: Run, policies: Path, field: str) -> None:
    write(
        policies / "tests" / "typed.yaml",
        f"- name: typed\n  user: alice\n{field}  tool: orders___get_order_tool\n  expect: allow\n",
    )
    code, out = cli("expand")
    assert code == 2
    assert "typed.yaml" in out


# --------------------------------------------------------------------------------------------------------------
# explain


def explained(out: str) -> tuple[str, str, list[str]]:
    """(ALLOW/DENY, reason, determining @ids) from explain's output."""
    decision = re.search(r"^decision: (ALLOW|DENY) \((\w+)\)", out, re.MULTILINE)
    determining = re.search(r"^determining policies: (.*)$", out, re.MULTILINE)
    assert decision, out
    assert determining, out
    ids = [] if determining.group(1).startswith("none") else ast.literal_eval(determining.group(1))
    return decision.group(1), decision.group(2), ids


EXPLAIN_CASES = [
    pytest.param(
        "alice",
        "developer",
        [],
        "orders___get_order_tool",
        {"order_id": "42"},
        ("ALLOW", "allowed", ["developers-read-orders"]),
        id="developer-reads",
    ),
    pytest.param(
        "alice",
        "developer",
        ["logins=alice"],
        "orders___update_order",
        {"order_id": "42", "status": "shipped"},
        ("DENY", "policy_denied", []),
        id="default-deny",
    ),
    pytest.param(
        "bot-reporter",
        "bot-reporter,order-admin",
        [],
        "orders___update_order",
        {"order_id": "42", "status": "shipped"},
        ("DENY", "policy_denied", ["no-destructive-tools-for-bots"]),
        id="bot-forbidden",
    ),
    pytest.param(
        "carol",
        "order-admin",
        [],
        "orders___update_order",
        {"order_id": "42", "status": "lost"},
        ("DENY", "policy_denied", ["order-status-must-be-known"]),
        id="argument-condition",
    ),
    pytest.param(
        "dana",
        "db-reader",
        ["db_names=sales,marketing"],
        "db___run_query",
        {"database": "marketing", "query": "select 1"},
        ("ALLOW", "allowed", ["db-readers-own-databases"]),
        id="trait-condition-allows",
    ),
    pytest.param(
        "dana",
        "db-reader",
        ["db_names=sales"],
        "db___run_query",
        {"database": "hr", "query": "select 1"},
        ("DENY", "policy_denied", []),
        id="trait-condition-denies",
    ),
    pytest.param(
        "alice",
        "developer",
        [],
        "payroll___pay",
        {"amount": 1},
        ("DENY", "tool_unknown", []),
        id="unknown-tool",
    ),
    pytest.param(
        "alice",
        "developer",
        [],
        "orders___get_order_tool",
        {"order_id": 42},
        ("DENY", "policy_error", []),
        id="arguments-off-schema",
    ),
]


@pytest.mark.parametrize(("user", "roles", "traits", "tool", "arguments", "expected"), EXPLAIN_CASES)
def test_explain_agrees_with_the_engine(
    cli: Run,
    policies: Path,
    user: str,
    roles: str,
    traits: list[str],
    tool: str,
    arguments: dict[str, Any],
    expected: tuple[str, str, list[str]],
) -> None:
    argv = ["explain", "--user", user, "--roles", roles, "--tool", tool, "--args", json.dumps(arguments)]
    for trait in traits:
        argv += ["--trait", trait]
    code, out = cli(*argv)
    assert code == 0
    assert explained(out) == expected

    trait_map = {name: tuple(values.split(",")) for name, _, values in (t.partition("=") for t in traits)}
    identity = Identity(user, tuple(roles.split(",")), trait_map, "test", 0)
    decision = PolicyEngine.load(policies).authorize(identity, tool, arguments)
    assert explained(out) == (
        "ALLOW" if decision.allowed else "DENY",
        decision.reason.value,
        list(decision.policy_ids),
    )
    for error in decision.errors:
        assert f"error: {error}" in out
    assert f"user {user} (roles {list(identity.roles)}, bot {identity.bot}) -> {tool}" in out


def test_explain_follows_the_policy_folder(cli: Run, policies: Path) -> None:
    write(
        policies / "zz-devs-update.cedar",
        '@id("developers-update-orders")\n'
        'permit (principal in Teleport::Role::"developer", action == Teleport::Action::"orders___update_order",'
        " resource);\n",
    )
    args = json.dumps({"order_id": "42", "status": "shipped"})
    code, out = cli(
        "explain", "--user", "alice", "--roles", "developer", "--tool", "orders___update_order", "--args", args
    )
    assert code == 0
    assert explained(out) == ("ALLOW", "allowed", ["developers-update-orders"])


def test_explain_and_test_cases_strip_reserved_names_as_the_gateway_does(cli: Run, policies: Path) -> None:
    # the gateway removes every `_teleport_` name (any case) before policy: the toolkit decides the same call alike
    args = json.dumps({"order_id": "42", "_Teleport_User": "root", "_teleport_roles": ["admin"]})
    code, out = cli(
        "explain", "--user", "alice", "--roles", "developer", "--tool", "orders___get_order_tool", "--args", args
    )
    assert code == 0
    assert explained(out) == ("ALLOW", "allowed", ["developers-read-orders"])
    edit(demo_yaml(policies), 'arguments: {order_id: "42"}', 'arguments: {order_id: "42", _TELEPORT_user: root}')
    assert cli("expand")[0] == 0
    assert "_TELEPORT_user" not in demo_json(policies).read_text(encoding="utf-8")  # Cedar's own tests agree
    code, out = cli("test")
    assert code == 0, out
    assert f"{DEMO_CASES} passed, 0 failed" in out
    test_run_tests_json_means_the_same_to_plain_cedar(policies)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "--user", "alice"], "explain needs --user and --tool, or --event"),
        (["explain", "--user", "alice", "--tool", "orders___get_order_tool", "--args", "{not json"], "error:"),
        (
            ["explain", "--user", "alice", "--tool", "orders___get_order_tool", "--args", "[1]"],
            "error: --args must be a JSON object as a gateway body holds it: it is not an object",
        ),
        (
            ["explain", "--user", "alice", "--tool", "orders___list_my_orders", "--args", '{"limit": NaN}'],
            "error: --args must be a JSON object as a gateway body holds it: a number is not finite",
        ),
    ],
    ids=["no-tool", "bad-args", "args-not-an-object", "args-nan"],
)
def test_explain_usage_errors(cli: Run, argv: list[str], message: str) -> None:
    code, out = cli(*argv)
    assert code == 2
    assert message in out


@pytest.fixture(scope="session")
def fresh_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sample events with tokens minted now (the committed ones expire 30 days after generation)."""
    out = tmp_path_factory.mktemp("events")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    subprocess.run(
        [sys.executable, "-m", "devtools.events", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture
def keep_log_levels() -> Iterator[None]:
    """`explain --event` quiets the interceptor's log handlers; put them back for the tests that follow."""
    log = logging.getLogger(SERVICE)
    saved = [(handler, handler.level) for handler in log.handlers]
    yield
    for handler, level in saved:
        handler.setLevel(level)


@pytest.mark.usefixtures("keep_log_levels")
@pytest.mark.parametrize(
    ("event", "first_line", "expected"),
    [
        (
            "denied-call",
            "user alice (roles ['developer'], bot False) -> tools/call orders___update_order",
            ("DENY", "policy_denied", []),
        ),
        (
            "bot-denied",
            "user bot-reporter (roles ['bot-reporter', 'order-admin'], bot True) -> tools/call orders___update_order",
            ("DENY", "policy_denied", ["no-destructive-tools-for-bots"]),
        ),
        (
            "allowed-call",
            "user alice (roles ['developer'], bot False) -> tools/call orders___get_order_tool",
            ("ALLOW", "allowed", ["developers-read-orders"]),
        ),
        (
            "unknown-tool",
            "user alice (roles ['developer'], bot False) -> tools/call payroll___pay",
            ("DENY", "tool_unknown", []),
        ),
        (
            "expired-token",
            "user None (roles [], bot None) -> tools/call orders___get_order_tool",
            ("DENY", "token_expired", []),
        ),
    ],
)
def test_explain_event_runs_the_whole_interceptor(
    cli: Run, fresh_events: Path, event: str, first_line: str, expected: tuple[str, str, list[str]]
) -> None:
    code, out = cli("explain", "--event", str(fresh_events / f"{event}.json"), "--env", str(fresh_events / "env.json"))
    assert code == 0
    assert out.splitlines()[0] == first_line
    assert explained(out) == expected
    assert f"forwarded: {expected[0] == 'ALLOW'}" in out
    output = json.loads(out[out.index("\n{") + 1 :])
    assert output["interceptorOutputVersion"] == "1.0"


@pytest.mark.usefixtures("keep_log_levels")
def test_explain_event_verifies_the_token(cli: Run, fresh_events: Path, work: Path) -> None:
    """Same event, an env whose pinned JWKS is another key: the token is refused before any policy runs."""
    other = json.loads((fresh_events / "env.json").read_text(encoding="utf-8"))
    other_key = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    other["InterceptorFunction"]["TELEPORT_JWKS"] = other_key["InterceptorFunction"]["TELEPORT_JWKS"]
    assert other != json.loads((fresh_events / "env.json").read_text(encoding="utf-8"))
    env = write(work / "other-env.json", json.dumps(other))
    code, out = cli("explain", "--event", str(fresh_events / "allowed-call.json"), "--env", str(env))
    assert code == 0
    decision, reason, ids = explained(out)
    assert decision == "DENY"
    assert reason not in {"allowed", "policy_denied"}
    assert ids == []
    assert "forwarded: False" in out


@pytest.mark.usefixtures("keep_log_levels")
def test_explain_event_uses_the_policy_folder(cli: Run, fresh_events: Path, policies: Path) -> None:
    write(
        policies / "zz-devs-update.cedar",
        '@id("developers-update-orders")\n'
        'permit (principal in Teleport::Role::"developer", action == Teleport::Action::"orders___update_order",'
        " resource);\n",
    )
    code, out = cli(
        "explain", "--event", str(fresh_events / "denied-call.json"), "--env", str(fresh_events / "env.json")
    )
    assert code == 0
    assert explained(out) == ("ALLOW", "allowed", ["developers-update-orders"])


@pytest.mark.usefixtures("keep_log_levels")
def test_explain_event_leaves_the_log_handlers_as_they_were(cli: Run, fresh_events: Path) -> None:
    log = logging.getLogger(SERVICE)
    assert log.handlers
    before = [handler.level for handler in log.handlers]
    assert (
        cli("explain", "--event", str(fresh_events / "denied-call.json"), "--env", str(fresh_events / "env.json"))[0]
        == 0
    )
    assert [handler.level for handler in log.handlers] == before


# --------------------------------------------------------------------------------------------------------------
# diff


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        [
            "git",
            "-c",
            "user.name=Policy Tests",
            "-c",
            "user.email=tests@example.com",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository holding a committed copy of the policies; the working directory of the test."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(ROOT / "policies", root / "policies")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "policies")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def diff(repo: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["diff", *argv])
        return code, capsys.readouterr().out

    return run


def changed_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("CHANGED ")]


def test_diff_without_changes(diff: Run) -> None:
    code, out = diff("--base", "HEAD")
    assert code == 0
    assert changed_lines(out) == []
    assert f"0 of {DEMO_CASES} test requests change decision between HEAD and the working tree" in out
    assert diff("--fail-on-change")[0] == 0


def test_diff_lists_the_requests_whose_decision_changes(diff: Run, repo: Path) -> None:
    edit(
        repo / "policies" / "orders.cedar",
        'principal in Teleport::Role::"developer"',
        'principal in Teleport::Role::"dev"',
    )
    code, out = diff("--base", "HEAD")
    assert code == 0
    assert changed_lines(out) == [
        "CHANGED demo.cedartests.json: developer reads an order: allow ['developers-read-orders'] -> deny []",
        "CHANGED demo.cedartests.json: developer lists their orders: allow ['developers-read-orders'] -> deny []",
    ]
    assert f"2 of {DEMO_CASES} test requests change decision" in out
    code, out = diff("--base", "HEAD", "--fail-on-change")
    assert code == 1
    assert len(changed_lines(out)) == 2


def test_diff_sees_new_untracked_policy_files(diff: Run, repo: Path) -> None:
    write(
        repo / "policies" / "zz-devs-update.cedar",
        '@id("developers-update-orders")\n'
        'permit (principal in Teleport::Role::"developer", action == Teleport::Action::"orders___update_order",'
        " resource);\n",
    )
    code, out = diff()
    assert code == 0
    assert changed_lines(out) == [
        "CHANGED demo.cedartests.json: developer may not update orders (default deny): deny [] -> "
        "allow ['developers-update-orders']"
    ]


def test_diff_against_an_older_commit(diff: Run, repo: Path) -> None:
    edit(repo / "policies" / "bots.cedar", "when { principal.bot }", "when { false }")
    git(repo, "commit", "-q", "-am", "bots may update")
    assert changed_lines(diff("--base", "HEAD")[1]) == []
    code, out = diff("--base", "HEAD~1", "--fail-on-change")
    assert code == 1
    assert changed_lines(out) == [
        "CHANGED demo.cedartests.json: a bot never updates orders, even with the order-admin role: "
        "deny ['no-destructive-tools-for-bots'] -> allow ['order-admins-manage-orders']",
        "CHANGED demo.cedartests.json: a bot never queries a database (run_query declares no annotations, so it "
        "counts as destructive): deny ['no-destructive-tools-for-bots'] -> allow ['db-readers-own-databases']",
    ]
    assert "between HEAD~1 and the working tree" in out


def test_diff_with_a_bad_ref(diff: Run) -> None:
    code, out = diff("--base", "no-such-ref")
    assert code == 2
    assert "no-such-ref" in out


def test_diff_with_an_absolute_policy_dir(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(
        repo / "policies" / "orders.cedar",
        'principal in Teleport::Role::"developer"',
        'principal in Teleport::Role::"dev"',
    )
    capsys.readouterr()
    code = main(["--dir", str(repo / "policies"), "diff", "--fail-on-change"])
    out = capsys.readouterr().out
    assert len(changed_lines(out)) == 2, out
    assert code == 1


# --------------------------------------------------------------------------------------------------------------
# the command itself


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    capsys.readouterr()


def test_missing_schema_fails(cli: Run, policies: Path) -> None:
    (policies / "schema.cedarschema").unlink()
    code, out = cli("validate")
    assert code == 1
    assert "schema file missing" in out


def test_console_script_help_lists_the_subcommands() -> None:
    script = ROOT / ".venv" / "bin" / "teleport-policy"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "teleport-policy" in result.stdout
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_console_script_uses_paths_relative_to_the_working_directory(work: Path) -> None:
    script = ROOT / ".venv" / "bin" / "teleport-policy"
    result = subprocess.run(
        [str(script), "schema", "--check"], cwd=work, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policies/schema.cedarschema: up to date" in result.stdout
