"""`teleport-policy`: schema, validate, build, format, expand, test, explain and diff for the interceptor's policies.

Exit codes: 0 success, 1 a check failed (stale schema or bundle, invalid policy, unformatted file, failing or uncovered
test, changed decisions with --fail-on-change), 2 usage or input error. Messages name file and line.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import cedarpy

from interceptor import spiffe
from interceptor.agents import Agent
from interceptor.contract import json_problem
from interceptor.logs import SERVICE
from interceptor.policy import (
    BUNDLE_FILE,
    SCHEMA_FILE,
    Decision,
    PolicyEngine,
    PolicySetInvalid,
    PolicySource,
    Shape,
    compile_policies,
    parse_schema,
    tool_inputs,
)
from interceptor.tokens import Identity
from policy_toolkit import cases as tc
from policy_toolkit.schema import generate
from tool_identity import tool_arguments

_POLICY_START = re.compile(r'((?:@\w+\s*(?:\(\s*"(?:[^"\\]|\\.)*"\s*\))?\s*)*)\b(permit|forbid)\s*\(')
_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*')


def _blank(match: re.Match[str]) -> str:
    """Comments and string contents cannot start a policy: blank them, keeping quotes and line breaks."""
    token = match.group(0)
    if token.startswith('"'):
        return '"' + re.sub(r"[^\n]", " ", token[1:-1]) + '"'
    return " " * len(token)


def policy_lines(text: str) -> list[int]:
    """1-based line of each policy in a file, in order (where its annotations start)."""
    bare = _COMMENT.sub(_blank, text)
    return [bare.count("\n", 0, m.start()) + 1 for m in _POLICY_START.finditer(bare)]


def never_applies(policy: dict[str, Any]) -> bool:
    """A `when { false }` or `unless { true }` condition (scopes that match no tool fail validation already)."""
    return any(
        condition["body"] == {"Value": condition["kind"] != "when"} for condition in policy.get("conditions", [])
    )


def _parsed(text: str) -> dict[str, Any]:
    """Cedar's JSON form of a policy file's static policies, keyed by Cedar's positional ids (`policy0`, ...);
    empty when the text does not parse (validation reports the parse error)."""
    try:
        policies: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    except ValueError:
        return {}
    return policies


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def cmd_schema(args: argparse.Namespace) -> int:
    text = generate(args.template, args.dir / "tools")
    target = args.dir / SCHEMA_FILE
    cedarpy.Schema.from_str(text)  # refuse to write a schema Cedar cannot parse
    stale = "stale; run `teleport-policy schema` and commit the result"
    return _generated(target, text, args.check, "", stale, show_diff=True)


def _generated(target: Path, text: str, check: bool, summary: str, stale: str, *, show_diff: bool = False) -> int:
    """Write a generated file, or with `check` compare it (showing the diff of a readable one) and fail when it
    differs."""
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            if show_diff:
                diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(target), "generated")
                sys.stdout.writelines(diff)
            _out(f"{target}: {stale}")
            return 1
        _out(f"{target}: up to date{summary}")
        return 0
    target.write_text(text, encoding="utf-8")
    _out(f"wrote {target}{summary}")
    return 0


def _set_problems(folder: Path, problems: Sequence[str]) -> list[str]:
    """What validating each file on its own cannot see: an id used in two files, a schema the engine refuses."""
    found = []
    for problem in problems:
        if "used twice" in problem:
            found.append(f"{folder}/{problem}")
        elif problem.startswith("schema: "):
            found.append(f"{folder / SCHEMA_FILE}: error: {problem.removeprefix('schema: ')}")
    return found


def cmd_validate(args: argparse.Namespace) -> int:
    source = PolicySource.read(args.dir)
    try:
        schema = cedarpy.Schema.from_str(source.schema)
    except ValueError as exc:
        _out(f"{args.dir / SCHEMA_FILE}: {exc}")
        return 1
    errors = warnings = 0
    for name, text in source.files.items():
        lines = policy_lines(text)
        result = cedarpy.validate_policies(text, schema)
        policies = _parsed(text)
        names = [p.get("annotations", {}).get("id") or f"{name}#{i}" for i, p in enumerate(policies.values())]
        for error in result.errors:
            index = list(policies).index(error.policy_id) if error.policy_id in policies else -1
            where = f"{args.dir / name}:{lines[index] if 0 <= index < len(lines) else 1}"
            # Cedar names policies by position (`policy3`); authors, audit records and the engine use `@id`.
            text_of_error = (
                error.error.replace(f"`{error.policy_id}`", f"`{names[index]}`") if index >= 0 else error.error
            )
            _out(f"{where}: error: {text_of_error}")
            errors += 1
        if not result.validation_passed:
            continue
        for index, policy in enumerate(policies.values()):
            where = f"{args.dir / name}:{lines[index] if index < len(lines) else 1}"
            if "id" not in policy.get("annotations", {}):
                _out(f"{where}: warning: no @id annotation (audit records will name it {name}#{index})")
                warnings += 1
            if never_applies(policy):
                _out(f"{where}: warning: can never apply: a condition is constantly false")
                warnings += 1
    try:
        engine = PolicyEngine(source)
    except PolicySetInvalid as exc:
        found = _set_problems(args.dir, exc.problems)
        for line in found:
            _out(line)
        errors += len(found)
    else:
        _out(f"{len(engine.policy_ids)} policies in {len(source.files)} files, {len(engine.tools)} tools")
    _out(f"{errors} errors, {warnings} warnings")
    return 1 if errors or (args.strict and warnings) else 0


def cmd_build(args: argparse.Namespace) -> int:
    folder = args.folder or args.dir
    source = PolicySource.read(folder)
    compiled = compile_policies(source, parse_schema(source))
    target = folder / BUNDLE_FILE
    text = compiled.to_json()
    summary = f" ({len(compiled.policies)} policies, {len(compiled.tools)} tools, digest {compiled.digest[:12]})"
    return _generated(target, text, args.check, summary, "missing or stale; run `teleport-policy build`")


def cmd_format(args: argparse.Namespace) -> int:
    changed = 0
    for path in sorted(args.dir.glob("*.cedar")):
        text = path.read_text(encoding="utf-8")
        try:
            formatted = cedarpy.format_policies(text).rstrip("\n") + "\n"
        except ValueError as exc:
            _out(f"{path}: cannot format: {exc}")
            return 1
        if formatted != text:
            changed += 1
            if args.check:
                _out(f"{path}: not formatted; run `teleport-policy format`")
            else:
                path.write_text(formatted, encoding="utf-8")
                _out(f"formatted {path}")
    return 1 if args.check and changed else 0


def _load_cases(folder: Path) -> list[tc.Case]:
    """Every run-tests case in `folder`."""
    return [case for path in sorted(folder.glob(f"*{tc.JSON_SUFFIX}")) for case in tc.load_json(path)]


def _stale(folder: Path, inputs: Mapping[str, Shape]) -> list[str]:
    """YAML files in `folder` whose JSON is missing or stale (given the schema's tool `inputs`)."""
    problems = []
    for yaml_path in sorted(folder.glob("*.yaml")):
        expected = tc.cedar_text(tc.load_yaml(yaml_path), inputs)
        json_file = tc.json_path(yaml_path)
        if not json_file.exists() or json_file.read_text(encoding="utf-8") != expected:
            problems.append(f"{json_file}: missing or older than {yaml_path.name}; run `teleport-policy expand`")
    return problems


def cmd_expand(args: argparse.Namespace) -> int:
    inputs = tool_inputs(parse_schema(PolicySource.read(args.dir)))
    for yaml_path in sorted(args.tests.glob("*.yaml")):
        target = tc.json_path(yaml_path)
        target.write_text(tc.cedar_text(tc.load_yaml(yaml_path), inputs), encoding="utf-8")
        _out(f"wrote {target}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    engine = PolicyEngine.load(args.dir)
    problems = _stale(args.tests, engine.compiled.inputs)
    loaded = _load_cases(args.tests)
    failed, covered = 0, set[str]()
    for case in loaded:
        decision = case.run(engine)
        covered.update(decision.policy_ids)
        ok = decision.allowed == case.expect_allow and set(case.policies) <= set(decision.policy_ids)
        ok = ok and len(decision.errors) == case.num_errors
        if ok:
            _out(f"PASS {case.source}: {case.name}")
            continue
        failed += 1
        _out(f"FAIL {case.source}: {case.name}")
        _out(f"     expected {'allow' if case.expect_allow else 'deny'} by {list(case.policies)}")
        _out(
            f"     got      {'allow' if decision.allowed else 'deny'} ({decision.reason.value}) by "
            f"{list(decision.policy_ids)}" + (f", errors {list(decision.errors)}" if decision.errors else "")
        )
    uncovered = sorted(engine.policy_ids - covered)
    for policy_id in uncovered:
        _out(f"UNCOVERED {policy_id}: no test case where it determines the decision")
    for problem in problems:
        _out(f"STALE {problem}")
    _out(f"{len(loaded) - failed} passed, {failed} failed")
    _out(f"coverage: {len(engine.policy_ids) - len(uncovered)}/{len(engine.policy_ids)} policies determine a decision")
    return 1 if failed or problems or (args.coverage and uncovered) else 0


def _print_decision(
    tool: str, identity: Identity, engine: PolicyEngine, arguments: dict[str, Any], agent: Agent | None = None
) -> int:
    decision = engine.authorize(identity, tool, tool_arguments(arguments), agent)  # as the gateway strips them
    through = "" if agent is None else f" through agent {agent.spiffe_id}"
    _out(f"user {identity.user} (roles {list(identity.roles)}, bot {identity.bot}){through} -> {tool}")
    _out(f"decision: {'ALLOW' if decision.allowed else 'DENY'} ({decision.reason.value})")
    _out(f"determining policies: {list(decision.policy_ids) or 'none (default deny)'}")
    for gate in decision.gates:
        _out(f"  {gate.who} gate: {'allow' if gate.allowed else 'deny'} by {list(gate.policy_ids) or 'none'}")
    for error in decision.errors:
        _out(f"error: {error}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    if args.event:
        return _explain_event(args)
    if not (args.user and args.tool):
        _out("explain needs --user and --tool, or --event")
        return 2
    traits: dict[str, tuple[str, ...]] = {}
    for trait in args.trait:
        name, _, values = trait.partition("=")
        traits[name] = tuple(v for v in values.split(",") if v)
    roles = tuple(r for r in args.roles.split(",") if r)
    agent = None
    if args.agent:
        parsed = spiffe.parse_id(args.agent)
        if parsed is None:
            _out("--agent must be a workload's SPIFFE ID (spiffe://<trust domain>/<path>)")
            return 2
        agent = Agent(args.agent, *parsed, "explain", 0)
    identity = Identity(args.user, roles, traits, "explain", 0)
    arguments = json.loads(args.args)
    problem = "it is not an object" if not isinstance(arguments, dict) else json_problem(arguments)
    if problem is not None:  # the engine sees only what a gateway body could hold
        raise ValueError(f"--args must be a JSON object as a gateway body holds it: {problem}")
    return _print_decision(args.tool, identity, PolicyEngine.load(args.dir), arguments, agent)


def _explain_event(args: argparse.Namespace) -> int:
    """Run the whole interceptor on a sample event (token verification included) with the env file's settings."""
    import logging  # noqa: PLC0415

    from interceptor.audit import Auditor  # noqa: PLC0415 (only explain --event runs the whole interceptor)
    from interceptor.wiring import build  # noqa: PLC0415

    env = {k: str(v) for k, v in json.loads(args.env.read_text()).get("InterceptorFunction", {}).items()}
    lines: list[str] = []  # the audit line, collected instead of printed: the summary below replaces it
    service_log = logging.getLogger(SERVICE)  # the standard logger behind the interceptor's Powertools Logger
    levels = {handler: handler.level for handler in service_log.handlers}
    for handler in levels:
        handler.setLevel(logging.WARNING)  # routine init lines too; warnings and errors still show
    try:
        interceptor = build({**env, "POLICY_DIR": str(args.dir)}, Auditor(lines.append))
        output = interceptor.handle(json.loads(args.event.read_text()))
    finally:
        for handler, level in levels.items():
            handler.setLevel(level)
    audit = json.loads(lines[-1])["audit"]
    through = f" through agent {audit['agent']}" if "agent" in audit else ""
    _out(
        f"user {audit['user']} (roles {audit['roles']}, bot {audit['bot']}){through} -> {audit['method']} "
        f"{audit['tool'] or ''}"
    )
    _out(f"decision: {audit['decision'].upper()} ({audit['reason']}), forwarded: {audit['forwarded']}")
    _out(f"determining policies: {audit['policy_ids']}")
    for who in ("user", "agent"):
        if f"{who}_decision" in audit:
            _out(f"  {who} gate: {audit[f'{who}_decision']} by {audit[f'{who}_policy_ids'] or 'none'}")
    if audit.get("detail"):
        _out(f"detail: {audit['detail']}")
    _out(json.dumps(output, indent=2))
    return 0


def _verdict(decision: Decision) -> str:
    return f"{'allow' if decision.allowed else 'deny'} {list(decision.policy_ids)}"


def cmd_diff(args: argparse.Namespace) -> int:
    if args.base.startswith("-"):
        _out(f"--base {args.base!r} is not a git ref")
        return 2
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, check=True, text=True)
        folder = Path(os.path.relpath(args.dir.resolve(), Path(top.stdout.strip()).resolve()))
        archive = subprocess.run(
            ["git", "-C", top.stdout.strip(), "archive", "--format=tar", args.base, str(folder)],
            capture_output=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        _out(f"git archive {args.base} {args.dir}: {exc.stderr.decode().strip()}")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        before = PolicyEngine.load(Path(tmp) / folder)
    after = PolicyEngine.load(args.dir)
    loaded = _load_cases(args.tests)
    changed = 0
    for case in loaded:
        old, new = case.run(before), case.run(after)
        if (old.allowed, old.policy_ids) != (new.allowed, new.policy_ids):
            changed += 1
            _out(f"CHANGED {case.source}: {case.name}: {_verdict(old)} -> {_verdict(new)}")
    _out(f"{changed} of {len(loaded)} test requests change decision between {args.base} and the working tree")
    return 1 if changed and args.fail_on_change else 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="teleport-policy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root.add_argument("--dir", type=Path, default=Path("policies"), help="policy folder (default: policies)")
    root.add_argument("--tests", type=Path, default=None, help="test folder (default: <dir>/tests)")
    sub = root.add_subparsers(dest="command", required=True)
    schema = sub.add_parser("schema", help="generate <dir>/schema.cedarschema from the gateway's tools")
    schema.add_argument("--template", type=Path, default=Path("template.yaml"))
    schema.add_argument("--check", action="store_true", help="fail when the committed schema is stale")
    validate = sub.add_parser("validate", help="strict validation against the schema, with warnings")
    validate.add_argument("--strict", action="store_true", help="warnings fail too")
    build = sub.add_parser(
        "build", help=f"validate strictly and index: write <folder>/{BUNDLE_FILE}, what the function loads at init"
    )
    build.add_argument("folder", nargs="?", type=Path, help="policy folder (default: --dir)")
    build.add_argument("--check", action="store_true", help="fail when the bundle is missing or stale")
    fmt = sub.add_parser("format", help="canonical Cedar formatting")
    fmt.add_argument("--check", action="store_true", help="fail when a file is not formatted")
    sub.add_parser("expand", help="write <name>.cedartests.json (Cedar run-tests format) from each YAML test file")
    test = sub.add_parser("test", help="run the policy tests through the interceptor's engine")
    test.add_argument("--coverage", action="store_true", help="fail when a policy determines no test's decision")
    explain = sub.add_parser("explain", help="decision and determining policies for one request or event")
    explain.add_argument("--user")
    explain.add_argument("--roles", default="", help="comma-separated Teleport roles")
    explain.add_argument("--trait", action="append", default=[], help="name=v1,v2 (repeatable)")
    explain.add_argument("--tool", help="gateway tool name <target>___<tool>")
    explain.add_argument("--agent", help="SPIFFE ID of the agent acting for the user (a delegated call: two gates)")
    explain.add_argument("--args", default="{}", help="tool arguments as JSON")
    explain.add_argument("--event", type=Path, help="a sample interceptor event (runs the whole interceptor)")
    explain.add_argument("--env", type=Path, default=Path("events/env.json"), help="env file for --event")
    diff = sub.add_parser("diff", help="test requests whose decision differs between a git ref and the working tree")
    diff.add_argument("--base", default="HEAD", help="git ref of the old policy set (default: HEAD)")
    diff.add_argument("--fail-on-change", action="store_true")
    return root


COMMANDS = {
    "schema": cmd_schema,
    "validate": cmd_validate,
    "build": cmd_build,
    "format": cmd_format,
    "expand": cmd_expand,
    "test": cmd_test,
    "explain": cmd_explain,
    "diff": cmd_diff,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.tests = args.tests or args.dir / "tests"
    try:
        return COMMANDS[args.command](args)
    except (PolicySetInvalid, tc.CaseError) as exc:
        _out(f"error: {exc}")
        return 1 if isinstance(exc, PolicySetInvalid) else 2
    except (OSError, ValueError) as exc:
        _out(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
