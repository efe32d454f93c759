"""`make deploy` and `make delete`: the built template, the project's samconfig.toml, and the audience settled.

The token audience is the gateway's own URL (`mcp+https://<gateway>/mcp`), which exists only once the gateway
does, yet the gateway's authorizer and the interceptor both need it. So `deploy` deploys with the best audience it
knows (the stack's `TeleportAppUri` output, else a placeholder), reads the output again and, if it differs,
deploys a second time with it. A custom domain fixes the audience up front: one deploy. At the end it prints what
to create in Teleport, rendered from `teleport/*.yaml`. `delete` removes the stack and says what is retained.

SAM runs through `Sam` (its `run` is swapped in tests); stack state is read with `describe` on a CloudFormation
client (stubbed in tests).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Template
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TELEPORT_DIR = ROOT / "teleport"
# The template's McpAudience default: every token is refused until the real audience is deployed.
PLACEHOLDER_AUDIENCE = "mcp+https://pending.invalid/mcp"
# Letters, digits, single hyphens; the gateway (named after the stack) allows at most 48 of those, and
# `<stack>-interceptor` must fit Lambda's 64-character function names.
STACK_NAME = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")
STACK_NAME_MAX = 48
PROXY_URL = re.compile(r"https://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")
DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
AUDIENCE = re.compile(r"mcp\+https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/mcp")
OWN_PARAMETERS = ("TeleportProxyUrl", "McpAudience")

Run = Callable[[Sequence[str]], int]


class DeployError(Exception):
    """A step failed or left the stack in a state that would refuse every request; the message says which."""


@dataclass(frozen=True)
class StackState:
    outputs: dict[str, str]
    parameters: dict[str, str]


def _run(argv: Sequence[str]) -> int:
    """Run SAM attached to the terminal (it may ask to confirm a changeset), telemetry off."""
    print("+ " + shlex.join(argv), flush=True)
    return subprocess.run(argv, env={**os.environ, "SAM_CLI_TELEMETRY": "0"}, check=False).returncode


@dataclass(frozen=True)
class Sam:
    """The SAM CLI commands of one stack, always with the project's samconfig.toml (SAM would otherwise look
    for it next to the built template)."""

    executable: str
    stack: str
    config_file: Path
    region: str
    extra_args: tuple[str, ...] = ()
    run: Run = _run

    def _common(self) -> list[str]:
        return ["--config-file", str(self.config_file), "--stack-name", self.stack, "--region", self.region]

    def deploy(self, template: Path, parameters: Mapping[str, str]) -> None:
        overrides = [f"{key}={value}" for key, value in parameters.items()]
        argv = [self.executable, "deploy", "--template-file", str(template), *self._common()]
        argv += ["--no-fail-on-empty-changeset", "--parameter-overrides", *overrides, *self.extra_args]
        if code := self.run(argv):
            raise DeployError(f"sam deploy failed (exit {code})")

    def delete(self) -> None:
        if code := self.run([self.executable, "delete", *self._common(), *self.extra_args]):
            raise DeployError(f"sam delete failed (exit {code})")


def describe(cfn: Any, stack: str) -> StackState | None:
    """The stack's outputs and parameters, or None when it does not exist; any other error propagates."""
    from botocore.exceptions import ClientError

    try:
        (found,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error.response.get("Error", {}).get("Message", "")):
            return None
        raise
    return StackState(
        outputs={o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])},
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("Parameters", [])},
    )


def audience_for_domain(domain: str) -> str:
    return f"mcp+https://{domain}/mcp"


def gateway_audience(state: StackState | None) -> str | None:
    """The audience the stack's gateway URL implies, checked so nothing odd reaches a parameter or Teleport."""
    value = state.outputs.get("TeleportAppUri") if state else None
    if value is not None and not AUDIENCE.fullmatch(value):
        raise DeployError(f"unexpected TeleportAppUri output {value!r}")
    return value


def settle(
    sam: Sam,
    read: Callable[[], StackState | None],
    template: Path,
    parameters: Mapping[str, str],
    custom_domain: str | None = None,
) -> tuple[str, StackState]:
    """Deploy until the stack's McpAudience is the audience its clients will present; returns it and the state."""
    fixed = audience_for_domain(custom_domain) if custom_domain else None
    audience = fixed or gateway_audience(read()) or PLACEHOLDER_AUDIENCE
    sam.deploy(template, {**parameters, "McpAudience": audience})
    state = read()
    if state is None:
        raise DeployError(f"stack {sam.stack} does not exist after sam deploy (was the changeset declined?)")
    if not custom_domain:
        actual = gateway_audience(state)
        if actual is None:
            raise DeployError(f"stack {sam.stack} has no TeleportAppUri output (was the changeset declined?)")
        if actual != audience:
            print(f"setting McpAudience to the gateway's URL: {actual}", flush=True)
            audience = actual
            sam.deploy(template, {**parameters, "McpAudience": audience})
            state = read()
    deployed = state.parameters.get("McpAudience") if state else None
    if state is None or deployed != audience:
        raise DeployError(
            f"stack {sam.stack} has McpAudience={deployed!r}, not {audience!r}: every request is refused until "
            "they match; run `make deploy` again"
        )
    return audience, state


@dataclass(frozen=True)
class Teleport:
    """What Teleport needs for one stack: names derived from the stack, the audience as the app uri."""

    stack: str
    audience: str
    proxy_url: str

    @property
    def app_name(self) -> str:
        return self.stack.lower()  # Teleport app names are lower-case DNS labels

    @property
    def role_name(self) -> str:
        return f"{self.app_name}-mcp-user"

    def render(self, name: str) -> str:
        """teleport/<name> with its placeholders filled; a missing value raises rather than leaving one in."""
        values = {"APP_NAME": self.app_name, "ROLE_NAME": self.role_name, "STACK": self.stack}
        return Template((TELEPORT_DIR / name).read_text()).substitute(values, AUDIENCE=self.audience)

    def instructions(self, out: Path, log_group: str | None) -> str:
        """Writes the rendered resources under `out` and returns the steps that use them."""
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in ("app.yaml", "role.yaml"):
            (out / name).write_text(text := self.render(name))
            files[name] = text
        lines = [
            "",
            f"Deployed stack {self.stack}. Teleport app uri / token audience: {self.audience}",
            "",
            "1. In Teleport (an admin; an App Service must select apps labelled mcp-gateway=agentcore, see README):",
            f"     tctl create -f {out / 'app.yaml'}",
            f"     tctl create -f {out / 'role.yaml'}",
            f"   and grant the role {self.role_name} to your users (or map it from your SSO connector).",
            "",
            *(
                f"   --- {name}\n" + "\n".join(f"   {line}".rstrip() for line in text.splitlines())
                for name, text in files.items()
            ),
            "",
            "2. Each user:",
            f"     tsh login --proxy={tsh_proxy(self.proxy_url)}",
            "     tsh mcp ls",
            f"     tsh mcp config {self.app_name} --client-config=claude   # or cursor: writes the client's config",
            f"   which makes the client run: tsh mcp connect {self.app_name}",
        ]
        if log_group:
            lines += ["", f"3. Audit records: CloudWatch log group {log_group} (one JSON line per decision)."]
        return "\n".join(lines)


def tsh_proxy(proxy_url: str) -> str:
    """`tsh login --proxy` takes host[:port], not a URL."""
    match = PROXY_URL.fullmatch(proxy_url)
    if not match:
        raise DeployError(
            f"TELEPORT_PROXY_URL={proxy_url!r}: expected the proxy's public URL, https://host[:port], "
            "without path or trailing slash"
        )
    if match["port"] == "443":
        raise DeployError("TELEPORT_PROXY_URL: drop ':443' (Teleport's token issuer never carries it)")
    return match["host"] + (f":{match['port']}" if match["port"] else "")


def check_inputs(stack: str, proxy_url: str | None, custom_domain: str | None) -> None:
    """Refuse before anything is deployed what would fail later or leave a stack refusing every request."""
    if not STACK_NAME.fullmatch(stack) or len(stack) > STACK_NAME_MAX:
        raise DeployError(
            f"STACK={stack!r}: use a letter, then letters, digits and single hyphens, at most {STACK_NAME_MAX} "
            "characters (the gateway is named after the stack)"
        )
    if proxy_url is not None:
        tsh_proxy(proxy_url)
    if custom_domain is not None and not DOMAIN.fullmatch(custom_domain):
        raise DeployError(f"CUSTOM_DOMAIN={custom_domain!r}: expected a lower-case host name, e.g. mcp.example.com")


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE pairs; the proxy URL and the audience are this script's to set."""
    parameters: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"parameter override {item!r}: expected Key=Value")
        if key in OWN_PARAMETERS:
            raise DeployError(f"{key} is set by make deploy itself (TELEPORT_PROXY_URL, CUSTOM_DOMAIN)")
        parameters[key] = value
    return parameters


def deploy(args: argparse.Namespace, sam: Sam, read: Callable[[], StackState | None]) -> None:
    template: Path = args.template_file
    if not template.is_file():
        raise DeployError(f"no built template at {template}: run `make build` (make deploy does)")
    parameters = {**parse_overrides(args.parameter_overrides), "TeleportProxyUrl": args.proxy_url}
    audience, state = settle(sam, read, template, parameters, args.custom_domain)
    teleport = Teleport(stack=sam.stack, audience=audience, proxy_url=args.proxy_url)
    print(teleport.instructions(args.out / sam.stack, state.outputs.get("InterceptorLogGroupName")))
    if args.custom_domain:
        print(
            f"\nCUSTOM_DOMAIN: route https://{args.custom_domain}/mcp to {state.outputs.get('GatewayUrl')} "
            "(AgentCore documents a CloudFront distribution with an ACM certificate for this; not part of this "
            "stack). Until then Teleport cannot reach the gateway."
        )


def delete(sam: Sam, read: Callable[[], StackState | None]) -> None:
    before = read()
    if before is None:
        print(f"stack {sam.stack} does not exist: nothing to delete")
        return
    sam.delete()
    if read() is not None:
        raise DeployError(f"stack {sam.stack} still exists (deletion declined or not finished)")
    print(f"\nDeleted stack {sam.stack}.")
    table = before.outputs.get("OrdersTableName")
    if table:
        print(
            f"Retained (DeletionPolicy Retain, so orders survive a mistaken delete): DynamoDB table {table}.\n"
            f"Remove it with: aws dynamodb delete-table --table-name {table} --region {sam.region}"
        )


def build_parser() -> argparse.ArgumentParser:
    """The command line `make deploy` and `make delete` speak (tests parse the Makefile's dry run with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam", default="sam", help="SAM CLI executable")
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--config-file", type=Path, required=True, help="the project's samconfig.toml")
    parser.add_argument("--region", help="default: the AWS SDK's (AWS_DEFAULT_REGION, profile)")
    parser.add_argument("--sam-args", default="", help="extra SAM arguments, e.g. --no-confirm-changeset")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("deploy", help="deploy, settle the audience, print the Teleport steps")
    up.add_argument("--template-file", type=Path, required=True, help="the BUILT template")
    up.add_argument("--proxy-url", required=True, help="Teleport proxy URL (the token issuer)")
    up.add_argument("--custom-domain", help="the gateway's custom domain; fixes the audience up front")
    up.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE")
    up.add_argument("--out", type=Path, default=ROOT / ".aws-sam" / "teleport", help="rendered Teleport files")
    commands.add_parser("delete", help="delete the stack; say what is retained")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_inputs(args.stack_name, getattr(args, "proxy_url", None), getattr(args, "custom_domain", None))
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        # One region for boto3 and SAM (SAM would not read AWS_REGION, for one).
        region = args.region or boto3.session.Session().region_name
        if not region:
            raise DeployError("no AWS region: set REGION=... (or AWS_DEFAULT_REGION, or your profile's region)")
        try:
            cfn = boto3.client("cloudformation", region_name=region)
            sam = Sam(args.sam, args.stack_name, args.config_file, region, tuple(shlex.split(args.sam_args)))
            read = partial(describe, cfn, args.stack_name)
            if args.command == "deploy":
                deploy(args, sam, read)
            else:
                delete(sam, read)
        except (BotoCoreError, ClientError) as error:
            raise DeployError(f"AWS: {error}") from error
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
