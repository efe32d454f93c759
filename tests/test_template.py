"""The SAM template wires what the code expects: handlers, gateway interception, IAM scoping, tool schemas."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.deploy import AUDIENCE, PLACEHOLDER_AUDIENCE
from interceptor.config import BUNDLED_POLICY_DIR
from interceptor.policy import PolicyEngine

ROOT = Path(__file__).resolve().parent.parent


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation intrinsics (!Ref, !GetAtt, !Sub) as {"Fn": value} dicts."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)  # type: ignore[arg-type]
    return {tag_suffix: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_function_handlers_resolve_to_callables(template):
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == {"InterceptorFunction", "OrdersFunction"}
    for function in functions.values():
        props = function["Properties"]
        assert props["CodeUri"] == "src/"
        module, _, attr = props["Handler"].rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr))
    assert template["Globals"]["Function"]["Runtime"] == "python3.13"
    assert template["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"


def test_gateway_passes_headers_to_both_interception_points(template):
    gateway = resources(template, "AWS::BedrockAgentCore::Gateway")["Gateway"]["Properties"]
    assert gateway["AuthorizerType"] == "CUSTOM_JWT"
    jwt = gateway["AuthorizerConfiguration"]["CustomJWTAuthorizer"]
    assert jwt["DiscoveryUrl"] == {"Sub": "${TeleportProxyUrl}/.well-known/openid-configuration"}
    assert jwt["AllowedAudience"] == [{"Ref": "McpAudience"}]
    (interceptor,) = gateway["InterceptorConfigurations"]
    assert interceptor["InterceptionPoints"] == ["REQUEST", "RESPONSE"]
    assert interceptor["InputConfiguration"] == {"PassRequestHeaders": True}
    assert interceptor["Interceptor"]["Lambda"]["Arn"] == {"GetAtt": "InterceptorFunction.Arn"}


def test_gateway_role_invokes_exactly_the_two_functions(template):
    role = template["Resources"]["GatewayRole"]["Properties"]
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == [{"GetAtt": "InterceptorFunction.Arn"}, {"GetAtt": "OrdersFunction.Arn"}]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "bedrock-agentcore.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_session_role_trusts_only_the_interceptor_and_confines_rows(template):
    role = template["Resources"]["OrdersSessionRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"GetAtt": "InterceptorRole.Arn"}}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]
    own, admin = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert own["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:PrincipalTag/teleport-user}"]}
    }
    assert admin["Condition"] == {"StringLike": {"aws:PrincipalTag/teleport-roles": "*:order-admin:*"}}
    grant = template["Resources"]["InterceptorAssumesSessionRole"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert sorted(grant["Action"]) == sorted(trust["Action"])
    assert grant["Resource"] == {"GetAtt": "OrdersSessionRole.Arn"}
    env = template["Resources"]["InterceptorFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SESSION_ROLE_ARN"] == {"GetAtt": "OrdersSessionRole.Arn"}
    assert env["SESSION_TOOLS"] == "orders___*"


def test_orders_target_tools_are_exactly_the_schema_tools_of_that_target(template):
    target = resources(template, "AWS::BedrockAgentCore::GatewayTarget")["OrdersTarget"]["Properties"]
    tools = target["TargetConfiguration"]["Mcp"]["Lambda"]["ToolSchema"]["InlinePayload"]
    names = {f"{target['Name']}___{tool['Name']}" for tool in tools}
    engine = PolicyEngine.load(BUNDLED_POLICY_DIR)
    assert names == {t for t in engine.tools if t.startswith("orders___")}


def test_gateway_is_named_after_the_stack_unless_named_explicitly(template):
    parameter = template["Parameters"]["GatewayName"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("teleport-agentcore")
    assert not pattern.fullmatch("a" * 49)  # AgentCore allows at most 48 letters and digits
    assert template["Conditions"]["GatewayNamed"] == {"Not": [{"Equals": [{"Ref": "GatewayName"}, ""]}]}
    gateway = template["Resources"]["Gateway"]["Properties"]
    assert gateway["Name"] == {"If": ["GatewayNamed", {"Ref": "GatewayName"}, {"Ref": "AWS::StackName"}]}


def test_audience_placeholder_and_output_are_what_make_deploy_settles_with(template):
    audience = template["Parameters"]["McpAudience"]
    assert audience["Default"] == PLACEHOLDER_AUDIENCE
    assert re.fullmatch(audience["AllowedPattern"], PLACEHOLDER_AUDIENCE)
    assert template["Outputs"]["TeleportAppUri"]["Value"] == {"Sub": "mcp+${Gateway.GatewayUrl}"}
    assert AUDIENCE.fullmatch("mcp+https://teleport-agentcore-x1.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp")
    names = {"InterceptorLogGroupName", "OrdersTableName", "GatewayUrl"}
    assert names <= set(template["Outputs"])  # printed by make deploy / make delete


def test_interceptor_memory_is_a_parameter_whose_default_is_the_documented_one(template):
    parameter = template["Parameters"]["InterceptorMemorySize"]
    assert parameter["Default"] == 512
    assert 1024 in parameter["AllowedValues"]  # what the README recommends for gateways over ~1,000 tools
    interceptor = template["Resources"]["InterceptorFunction"]["Properties"]
    assert interceptor["MemorySize"] == {"Ref": "InterceptorMemorySize"}
