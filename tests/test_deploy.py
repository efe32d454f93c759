"""`make deploy` / `make delete` as far as a dry run reaches: the Makefile's commands, the audience settling against
a stubbed CloudFormation, the SAM command lines, and the Teleport resources printed at the end."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from devtools import deploy
from devtools.deploy import PLACEHOLDER_AUDIENCE, DeployError, Sam, StackState, Teleport

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_URI = "mcp+https://teleport-agentcore-abc123.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp"
TEMPLATE = Path(".aws-sam/build-arm64/template.yaml")
MAKE_VARIABLES = ("STACK", "ARCH", "TELEPORT_PROXY_URL", "CUSTOM_DOMAIN", "ENFORCEMENT_MODE", "REGION", "PARAMS")


# --- the Makefile ---------------------------------------------------------------------------------------------


def make_dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`make -n` with none of the deploy variables inherited (make reads them from the environment too)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", *MAKE_VARIABLES}}
    return subprocess.run(["make", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def script_args(dry_run: str) -> list[str]:
    """The arguments the recipe passes to `python -m devtools.deploy`."""
    (line,) = [line for line in dry_run.replace("\\\n", " ").splitlines() if "-m devtools.deploy" in line]
    argv = shlex.split(line)
    return argv[argv.index("devtools.deploy") + 1 :]


def test_dry_run_deploys_the_built_template_with_the_project_config():
    run = make_dry_run("deploy", "STACK=x", "TELEPORT_PROXY_URL=https://t.example.com")
    assert run.returncode == 0, run.stderr
    assert "sam build" in run.stdout  # `deploy` builds first
    args = deploy.build_parser().parse_args(script_args(run.stdout))
    assert args.command == "deploy"
    assert args.template_file == Path(".aws-sam/build-arm64/template.yaml")
    assert args.config_file == ROOT / "samconfig.toml"
    assert args.stack_name == "x"
    assert args.proxy_url == "https://t.example.com"
    assert args.custom_domain is None
    assert args.parameter_overrides == ["Architecture=arm64", "EnforcementMode=enforce"]
    assert args.sam.endswith(".venv-deploy/bin/sam")


def test_dry_run_passes_architecture_domain_and_extra_parameters():
    run = make_dry_run(
        "deploy",
        "TELEPORT_PROXY_URL=https://t.example.com",
        "ARCH=x86_64",
        "CUSTOM_DOMAIN=mcp.example.com",
        "PARAMS=LogRetentionDays=30",
        "REGION=eu-west-1",
    )
    assert run.returncode == 0, run.stderr
    args = deploy.build_parser().parse_args(script_args(run.stdout))
    assert args.stack_name == "teleport-agentcore"
    assert args.template_file == Path(".aws-sam/build-x86_64/template.yaml")
    assert args.custom_domain == "mcp.example.com"
    assert args.region == "eu-west-1"
    assert args.parameter_overrides == ["Architecture=x86_64", "EnforcementMode=enforce", "LogRetentionDays=30"]


def test_dry_run_refuses_without_proxy_url_before_building():
    run = make_dry_run("deploy", "STACK=x")
    assert run.returncode != 0
    assert "TELEPORT_PROXY_URL" in run.stderr
    assert "sam build" not in run.stdout


def test_dry_run_delete_names_the_stack_and_config():
    run = make_dry_run("delete", "STACK=x")
    assert run.returncode == 0, run.stderr
    args = deploy.build_parser().parse_args(script_args(run.stdout))
    assert (args.command, args.stack_name, args.config_file) == ("delete", "x", ROOT / "samconfig.toml")


# --- SAM command lines ---------------------------------------------------------------------------------------


class Recorder:
    """Stands in for running SAM: records each command line, answers with `code`."""

    def __init__(self, code: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.code = code

    def __call__(self, argv: Sequence[str]) -> int:
        self.calls.append(list(argv))
        return self.code

    def audiences(self) -> list[str]:
        return [a.removeprefix("McpAudience=") for call in self.calls for a in call if a.startswith("McpAudience=")]


def sam(recorder: Recorder, stack: str = "teleport-agentcore") -> Sam:
    return Sam("sam", stack, ROOT / "samconfig.toml", "us-east-1", ("--no-confirm-changeset",), run=recorder)


def test_sam_deploy_uses_the_given_template_config_stack_and_parameters():
    recorder = Recorder()
    sam(recorder).deploy(TEMPLATE, {"TeleportProxyUrl": "https://t.example.com", "McpAudience": GATEWAY_URI})
    (argv,) = recorder.calls
    assert argv[:4] == ["sam", "deploy", "--template-file", str(TEMPLATE)]
    assert argv[argv.index("--config-file") + 1] == str(ROOT / "samconfig.toml")
    assert argv[argv.index("--stack-name") + 1] == "teleport-agentcore"
    assert argv[argv.index("--region") + 1] == "us-east-1"
    assert "--no-fail-on-empty-changeset" in argv  # re-running with nothing to change is a success
    overrides = argv[argv.index("--parameter-overrides") + 1 : argv.index("--no-confirm-changeset")]
    assert overrides == ["TeleportProxyUrl=https://t.example.com", f"McpAudience={GATEWAY_URI}"]


def test_sam_failure_stops_the_deploy():
    with pytest.raises(DeployError, match="exit 2"):
        sam(Recorder(code=2)).deploy(TEMPLATE, {})


# --- settling the audience against a stubbed CloudFormation -----------------------------------------------------


@pytest.fixture
def cfn(aws_env: None) -> Any:
    return boto3.client("cloudformation", region_name="us-east-1")


def stack(audience: str, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "teleport-agentcore",
                "CreationTime": "2026-01-01T00:00:00Z",
                "StackStatus": "UPDATE_COMPLETE",
                "Parameters": [{"ParameterKey": "McpAudience", "ParameterValue": audience}],
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
            }
        ]
    }


def built(audience: str) -> dict[str, Any]:
    """A deployed stack whose gateway URL is GATEWAY_URI and whose McpAudience is `audience`."""
    return stack(audience, {"TeleportAppUri": GATEWAY_URI, "OrdersTableName": "orders-T1"})


def missing(stubber: Stubber) -> None:
    stubber.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id teleport-agentcore does not exist", 400
    )


def settle(cfn: Any, stubber: Stubber, recorder: Recorder, domain: str | None = None) -> str:
    with stubber:
        audience, _ = deploy.settle(
            sam(recorder), lambda: deploy.describe(cfn, "teleport-agentcore"), TEMPLATE, {}, domain
        )
        stubber.assert_no_pending_responses()
    return audience


def test_new_stack_is_deployed_with_the_placeholder_then_with_the_gateway_url(cfn):
    stubber, recorder = Stubber(cfn), Recorder()
    missing(stubber)
    stubber.add_response("describe_stacks", built(PLACEHOLDER_AUDIENCE))
    stubber.add_response("describe_stacks", built(GATEWAY_URI))
    assert settle(cfn, stubber, recorder) == GATEWAY_URI
    assert recorder.audiences() == [PLACEHOLDER_AUDIENCE, GATEWAY_URI]


def test_stack_with_the_right_audience_is_deployed_once_without_the_placeholder(cfn):
    stubber, recorder = Stubber(cfn), Recorder()
    stubber.add_response("describe_stacks", built(GATEWAY_URI))
    stubber.add_response("describe_stacks", built(GATEWAY_URI))
    assert settle(cfn, stubber, recorder) == GATEWAY_URI
    assert recorder.audiences() == [GATEWAY_URI]


def test_custom_domain_fixes_the_audience_in_one_deploy(cfn):
    stubber, recorder = Stubber(cfn), Recorder()
    stubber.add_response("describe_stacks", built("mcp+https://mcp.example.com/mcp"))
    assert settle(cfn, stubber, recorder, "mcp.example.com") == "mcp+https://mcp.example.com/mcp"
    assert recorder.audiences() == ["mcp+https://mcp.example.com/mcp"]


def test_a_declined_second_changeset_is_an_error_not_a_success(cfn):
    stubber, recorder = Stubber(cfn), Recorder()
    missing(stubber)
    stubber.add_response("describe_stacks", built(PLACEHOLDER_AUDIENCE))
    stubber.add_response("describe_stacks", built(PLACEHOLDER_AUDIENCE))
    with pytest.raises(DeployError, match="every request is refused"):
        settle(cfn, stubber, recorder)


def test_stack_missing_after_deploy_is_an_error(cfn):
    stubber, recorder = Stubber(cfn), Recorder()
    missing(stubber)
    missing(stubber)
    with pytest.raises(DeployError, match="does not exist after sam deploy"):
        settle(cfn, stubber, recorder)


def test_an_odd_gateway_output_never_becomes_the_audience(cfn):
    stubber, recorder = Stubber(cfn), Recorder()
    stubber.add_response("describe_stacks", stack(GATEWAY_URI, {"TeleportAppUri": 'mcp+https://x/mcp" evil'}))
    with pytest.raises(DeployError, match="unexpected TeleportAppUri"):
        settle(cfn, stubber, recorder)
    assert recorder.calls == []


def test_other_cloudformation_errors_propagate(cfn):
    stubber = Stubber(cfn)
    stubber.add_client_error("describe_stacks", "AccessDenied", "not authorized", 403)
    with stubber, pytest.raises(ClientError):
        deploy.describe(cfn, "teleport-agentcore")


# --- the whole deploy and delete commands, I/O substituted ------------------------------------------------------


def built_state(audience: str) -> StackState:
    return StackState(
        {"TeleportAppUri": GATEWAY_URI, "InterceptorLogGroupName": "/aws/lambda/Teleport-Agentcore-interceptor"},
        {"McpAudience": audience},
    )


def test_deploy_prints_and_writes_the_teleport_resources(tmp_path, capsys):
    recorder = Recorder()
    states = iter([None, StackState({"TeleportAppUri": GATEWAY_URI}, {}), built_state(GATEWAY_URI)])
    template = tmp_path / "template.yaml"
    template.write_text("{}")
    args = deploy.build_parser().parse_args(
        shlex.split(
            f"--stack-name Teleport-Agentcore --config-file samconfig.toml deploy --template-file {template} "
            f"--proxy-url https://teleport.example.com:3080 --out {tmp_path / 'out'} "
            "--parameter-overrides Architecture=arm64"
        )
    )
    deploy.deploy(args, sam(recorder, "Teleport-Agentcore"), lambda: next(states))
    out = capsys.readouterr().out
    app = yaml.safe_load((tmp_path / "out" / "Teleport-Agentcore" / "app.yaml").read_text())
    assert app["spec"]["uri"] == GATEWAY_URI
    assert app["metadata"]["name"] == "teleport-agentcore"
    for line in (
        "tsh login --proxy=teleport.example.com:3080",
        "tsh mcp ls",
        "tsh mcp config teleport-agentcore --client-config=claude",
        "tsh mcp connect teleport-agentcore",
        f"tctl create -f {tmp_path / 'out' / 'Teleport-Agentcore' / 'app.yaml'}",
        "teleport-agentcore-mcp-user",
        "name: Authorization",
        "/aws/lambda/Teleport-Agentcore-interceptor",
    ):
        assert line in out
    assert all("Architecture=arm64" in call for call in recorder.calls)
    assert all("TeleportProxyUrl=https://teleport.example.com:3080" in call for call in recorder.calls)


def test_deploy_refuses_a_missing_build_and_reserved_overrides(tmp_path):
    parser = deploy.build_parser()
    common = ["--stack-name", "s", "--config-file", "c", "deploy", "--proxy-url", "https://t.example.com"]
    no_build = parser.parse_args([*common, "--template-file", str(tmp_path / "none.yaml")])
    with pytest.raises(DeployError, match="make build"):
        deploy.deploy(no_build, sam(Recorder()), lambda: None)
    (tmp_path / "t.yaml").write_text("{}")
    reserved = parser.parse_args(
        [*common, "--template-file", str(tmp_path / "t.yaml"), "--parameter-overrides", "McpAudience=x"]
    )
    with pytest.raises(DeployError, match="set by make deploy"):
        deploy.deploy(reserved, sam(Recorder()), lambda: None)


def test_delete_says_what_is_retained_and_how_to_remove_it(capsys):
    recorder = Recorder()
    states = iter([StackState({"OrdersTableName": "teleport-agentcore-OrdersTable-X1"}, {}), None])
    deploy.delete(sam(recorder), lambda: next(states))
    (argv,) = recorder.calls
    assert argv[:2] == ["sam", "delete"]
    assert argv[argv.index("--stack-name") + 1] == "teleport-agentcore"
    assert argv[argv.index("--config-file") + 1] == str(ROOT / "samconfig.toml")
    out = capsys.readouterr().out
    assert "aws dynamodb delete-table --table-name teleport-agentcore-OrdersTable-X1 --region us-east-1" in out


def test_delete_of_a_missing_stack_does_nothing_and_a_surviving_stack_is_an_error(capsys):
    recorder = Recorder()
    deploy.delete(sam(recorder), lambda: None)
    assert recorder.calls == []
    assert "nothing to delete" in capsys.readouterr().out
    with pytest.raises(DeployError, match="still exists"):
        deploy.delete(sam(recorder), lambda: StackState({}, {}))


@pytest.mark.parametrize(
    ("stack_name", "proxy", "domain", "message"),
    [
        ("9lives", None, None, "STACK"),
        ("two--hyphens", None, None, "STACK"),
        ("a" * 49, None, None, "STACK"),
        ("ok", "https://t.example.com/", None, "TELEPORT_PROXY_URL"),
        ("ok", "http://t.example.com", None, "TELEPORT_PROXY_URL"),
        ("ok", "https://t.example.com:443", None, ":443"),
        ("ok", "https://t.example.com", "https://mcp.example.com", "CUSTOM_DOMAIN"),
    ],
)
def test_inputs_that_would_fail_later_are_refused_up_front(stack_name, proxy, domain, message):
    with pytest.raises(DeployError, match=message):
        deploy.check_inputs(stack_name, proxy, domain)


def test_good_inputs_pass():
    deploy.check_inputs("teleport-agentcore-2", "https://teleport.example.com:3080", "mcp.example.com")


# --- the Teleport resources -------------------------------------------------------------------------------------


def rendered(stack_name: str = "teleport-agentcore") -> tuple[dict[str, Any], dict[str, Any]]:
    teleport = Teleport(stack=stack_name, audience=GATEWAY_URI, proxy_url="https://teleport.example.com")
    return yaml.safe_load(teleport.render("app.yaml")), yaml.safe_load(teleport.render("role.yaml"))


def test_app_is_the_tctl_resource_form_with_the_audience_as_uri():
    app, _ = rendered()
    assert (app["kind"], app["version"]) == ("app", "v3")
    assert app["metadata"]["name"] == "teleport-agentcore"
    assert app["spec"]["uri"] == GATEWAY_URI
    assert app["spec"]["uri"].startswith("mcp+https://") and app["spec"]["uri"].endswith("/mcp")
    # name/value pairs: the "Authorization: Bearer ..." string form is for static apps in teleport.yaml.
    assert app["spec"]["rewrite"]["headers"] == [{"name": "Authorization", "value": "Bearer {{internal.id_token}}"}]
    assert app["metadata"]["labels"]["mcp-gateway"] == "agentcore"  # what the App Service selects (README)


def test_role_grants_exactly_this_app_and_its_mcp_tools():
    app, role = rendered()
    assert (role["kind"], role["version"]) == ("role", "v8")
    assert role["metadata"]["name"] == "teleport-agentcore-mcp-user"
    allow = role["spec"]["allow"]
    assert allow["mcp"] == {"tools": ["*"]}
    assert allow["app_labels"]
    assert allow["app_labels"].items() <= app["metadata"]["labels"].items()
    _, other = rendered("other-stack")
    assert not other["spec"]["allow"]["app_labels"].items() <= app["metadata"]["labels"].items()


def test_names_that_yaml_would_read_as_booleans_stay_strings():
    app, role = rendered("On")
    assert app["metadata"]["labels"]["agentcore-stack"] == "On"
    assert role["spec"]["allow"]["app_labels"] == {"agentcore-stack": "On"}


def test_committed_files_parse_and_every_placeholder_is_filled():
    for name in ("app.yaml", "role.yaml"):
        raw = (ROOT / "teleport" / name).read_text()
        assert yaml.safe_load(raw)["kind"] in {"app", "role"}
        assert "${" in raw
        teleport = Teleport(stack="s", audience=GATEWAY_URI, proxy_url="https://teleport.example.com")
        assert "$" not in teleport.render(name)


def test_readme_shows_the_tctl_form_of_the_app():
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    apps = [yaml.safe_load(textwrap.dedent(block)) for block in blocks if "kind: app" in block]
    assert apps
    for app in apps:
        app_file, _ = rendered()
        assert app["version"] == app_file["version"]
        assert app["spec"]["rewrite"] == app_file["spec"]["rewrite"]
        assert app["metadata"]["labels"] == app_file["metadata"]["labels"]
