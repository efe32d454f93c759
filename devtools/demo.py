"""`make demo`: the whole product in five short steps, for a person to read.

A local Teleport-like issuer (127.0.0.1) signs the tokens: OIDC ID tokens for the humans (a fresh RSA key) and,
under `/workload-identity`, JWT-SVIDs for an agent (a fresh P-256 key). The interceptor is built from environment
settings exactly as the Lambda builds it at cold start, with AWS sessions on (moto standing in for STS) and
AGENT_MODE=optional over the repository's policies plus the demo's agent policies (devtools/agents/agents.cedar).
Each step prints only the parts of each payload that matter, and each audit record (a JSON line in CloudWatch) as
a one-line summary.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devtools import agents
from devtools.gateway import request_event, response_event, rpc, tool_call
from devtools.issuer import TRUST_DOMAIN, Issuer
from devtools.sts_standin import AssumeRoleRequest, local_sts
from interceptor.audit import Auditor
from interceptor.config import DEFAULT_AGENT_HEADER
from interceptor.logs import SERVICE
from interceptor.wiring import build
from tool_identity import SESSION_ARG

SESSION_ROLE_ARN = "arn:aws:iam::123456789012:role/orders-session"
SESSION_TOOLS = "orders___*"
UPDATE = "orders___update_order"
LISTED_TOOLS = ["db___run_query", "orders___get_order_tool", "orders___list_my_orders", UPDATE]
AGENT = f"spiffe://{TRUST_DOMAIN}/agents/orders-assistant"
AGENT_PATTERNS = f"spiffe://{TRUST_DOMAIN}/agents/*"
STEPS = 5
WIDTH = 120


@contextmanager
def _warnings_only() -> Iterator[None]:
    """Routine operational log lines (e.g. "policies loaded") stay out of the demo; a real problem still shows."""
    handlers = logging.getLogger(SERVICE).handlers  # the standard logger behind the Powertools Logger
    saved = {handler: handler.level for handler in handlers}
    for handler in handlers:
        handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, level in saved.items():
            handler.setLevel(level)


class Demo:
    """Sends events to one interceptor and prints what a person needs to see of each answer."""

    def __init__(self, env: dict[str, str], sts: list[AssumeRoleRequest]) -> None:
        self.audits: list[dict[str, Any]] = []  # the audit object of each line, summarized instead of printed
        self.interceptor = build(env, Auditor(lambda line: self.audits.append(json.loads(line)["audit"])))
        self.sts = sts
        self.events = 0

    def send(self, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(interceptor output, its audit record)."""
        self.events += 1
        self.audits.clear()
        output = self.interceptor.handle(event, f"demo-{self.events}")
        [audit] = self.audits
        return output, audit

    def same_call_three_users(self, carol: str, alice: str, bot: str) -> None:
        arguments = {"order_id": "42", "status": "shipped"}
        _heading(1, "One tools/call, three Teleport users", f"{UPDATE} {json.dumps(arguments)}")
        for who, token in [
            ("carol (order-admin)", carol),
            ("alice (developer, db-reader)", alice),
            ("bot-reporter (Machine ID bot with order-admin)", bot),
        ]:
            output, audit = self.send(request_event(tool_call(UPDATE, arguments), token))
            print(f"  {who}")
            forwarded = output["mcp"].get("transformedGatewayRequest")
            if forwarded is not None:
                stamped = forwarded["body"]["params"]["arguments"]
                _wrapped("    ALLOWED  ", f"forwarded to the tool as {_arguments(stamped)}")
            else:
                text = output["mcp"]["transformedGatewayResponse"]["body"]["result"]["content"][0]["text"]
                _wrapped("    DENIED   ", f"the agent reads: {text}")
            _audit(audit)

    def spoof(self, alice: str) -> None:
        _heading(2, "A spoof attempt", "alice's agent claims to be mallory in the arguments and in params._meta")
        body = rpc(
            "tools/call",
            {
                "name": "orders___get_order_tool",
                "arguments": {"order_id": "42", "_teleport_user": "mallory", "_teleport_roles": ["order-admin"]},
                "_meta": {"progressToken": "p-1", "_teleport_user": "mallory"},
            },
        )
        output, audit = self.send(request_event(body, alice))
        forwarded = output["mcp"]["transformedGatewayRequest"]["body"]["params"]
        for label, params in [("sent by the agent", body["params"]), ("forwarded to tool", forwarded)]:
            _wrapped(f"  {label:<18} arguments ", _arguments(params["arguments"]))
            _wrapped(f"  {'':<18} _meta     ", json.dumps(params["_meta"]))
        _audit(audit)

    def filtered_lists(self, alice: str, carol: str) -> None:
        _heading(3, "A tools/list response, filtered per caller", "each sees only the tools some call could allow")
        print(f"  the gateway lists            {', '.join(LISTED_TOOLS)}")
        gateway_answer = {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in LISTED_TOOLS]},
        }
        for who, token in [("alice (developer, db-reader)", alice), ("carol (order-admin)", carol)]:
            event = response_event(request_event(rpc("tools/list", {}), token), gateway_answer)
            output, audit = self.send(event)
            tools = output["mcp"]["transformedGatewayResponse"]["body"]["result"]["tools"]
            print(f"  {who:<28} sees {', '.join(t['name'] for t in tools)}")
            _audit(audit)

    def session(self, alice: str) -> None:
        tool, arguments = "orders___list_my_orders", {"status": "pending"}
        _heading(4, "An AWS session in the human's name", f"{tool} {json.dumps(arguments)} by alice")
        sent_before = len(self.sts)
        output, audit = self.send(request_event(tool_call(tool, arguments), alice))
        [request] = self.sts[sent_before:]
        print("  sts:AssumeRole as sent (moto answers it but keeps no tags, so the request itself is shown):")
        print(f"    RoleArn            {request.role_arn}")
        print(f"    RoleSessionName    {request.session_name}")
        print(f"    SourceIdentity     {request.source_identity}")
        print(f"    DurationSeconds    {request.duration_s}")
        for n, (key, value) in enumerate(request.tags):
            print(f"    {'Tags' if n == 0 else '':<18} {key} = {value}")
        print(f"    TransitiveTagKeys  {', '.join(request.transitive_tag_keys)}")
        session = output["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"][SESSION_ARG]
        print(f"  the tool receives {SESSION_ARG}:")
        print(
            f"    accessKeyId {_mask(session['accessKeyId'])}, secretAccessKey ****, sessionToken ****, "
            f"expiration {session['expiration']}"
        )
        _audit(audit)

    def delegated(self, carol: str, agent: str) -> None:
        _heading(5, "carol through an agent: two gates", f"the agent sends its own JWT-SVID ({AGENT})")
        for tool, arguments in [
            ("orders___get_order_tool", {"order_id": "42"}),
            (UPDATE, {"order_id": "42", "status": "shipped"}),
        ]:
            event = request_event(tool_call(tool, arguments), carol, {DEFAULT_AGENT_HEADER: f"Bearer {agent}"})
            output, audit = self.send(event)
            print(f"  {tool} {json.dumps(arguments)}")
            forwarded = output["mcp"].get("transformedGatewayRequest")
            if forwarded is not None:
                stamped = forwarded["body"]["params"]["arguments"]
                _wrapped("    ALLOWED  ", f"forwarded to the tool as {_arguments(stamped)}")
                request = self.sts[-1]
                tag = dict(request.tags)["teleport-agent"]
                print(f"    AWS      SourceIdentity {request.source_identity}, session tag teleport-agent = {tag}")
            else:
                text = output["mcp"]["transformedGatewayResponse"]["body"]["result"]["content"][0]["text"]
                _wrapped("    DENIED   ", f"the agent reads: {text}")
            _audit(audit)


def main() -> None:
    with Issuer().serve() as issuer, local_sts() as sts, _warnings_only(), agents.policy_folder() as policies:
        env = {
            "TELEPORT_ISSUER": issuer.url,
            "TELEPORT_AUDIENCE": issuer.audience,
            "SESSION_ROLE_ARN": SESSION_ROLE_ARN,
            "SESSION_TOOLS": SESSION_TOOLS,
            "AGENT_MODE": "optional",
            "AGENT_ID_PATTERNS": AGENT_PATTERNS,
            "POLICY_DIR": str(policies),
        }
        print("Teleport identity for AgentCore Gateway: demo")
        print(f"  issuer    {issuer.url} (local, fresh RSA key; RS256 ID tokens shaped like Teleport's)")
        print(f"  agents    {issuer.workload.url} (fresh P-256 key; ES256 JWT-SVIDs), AGENT_MODE=optional")
        print(f"  audience  {issuer.audience}")
        print(f"  sessions  {SESSION_TOOLS} get an AWS session on {SESSION_ROLE_ARN} (moto's STS)")
        print("  Each audit record (one JSON line in CloudWatch) is summarized below as an 'audit:' line.")
        demo = Demo(env, sts)
        carol = issuer.mint(user="carol", roles=["order-admin"])
        alice = issuer.mint(user="alice", roles=["developer", "db-reader"], traits={"db_names": ["sales"]})
        bot = issuer.mint(user="bot-reporter", roles=["bot-reporter", "order-admin"])
        demo.same_call_three_users(carol, alice, bot)
        demo.spoof(alice)
        demo.filtered_lists(alice, carol)
        demo.session(alice)
        demo.delegated(carol, issuer.workload.mint(agent=AGENT))
        print(
            f"\n{demo.events} events; {len(issuer.requests)} requests to the issuer (discovery and keys, then cached);"
        )
        print(f"{len(sts)} sts:AssumeRole requests (allowed calls of {SESSION_TOOLS} only).")


def _heading(step: int, title: str, subtitle: str) -> None:
    print(f"\n=== {step}/{STEPS}  {title} ".ljust(WIDTH, "="))
    print(f"    {subtitle}\n")


def _arguments(arguments: dict[str, Any]) -> str:
    """Arguments as JSON, with an AWS session argument reduced to a placeholder (step 4 shows one)."""
    shown = {k: f"<AWS session for {v['sessionName']}>" if k == SESSION_ARG else v for k, v in arguments.items()}
    return json.dumps(shown)


def _audit(record: dict[str, Any]) -> None:
    fields = [f"{record['decision']} ({record['reason']})", f"user={record['user']}"]
    if "agent" in record:
        fields.append(f"agent={record['agent']} agent_jti={record['agent_jti'][:8]}...")
    if record["tool"]:
        fields.append(f"tool={record['tool']}")
    if "agent_decision" in record:
        for gate in ("user", "agent"):
            fields.append(f"{gate}_gate={record[f'{gate}_decision']}:{','.join(record[f'{gate}_policy_ids']) or '-'}")
    elif record["policy_ids"]:
        fields.append(f"policies={','.join(record['policy_ids'])}")
    if record["spoofed_arguments"]:
        fields.append(f"spoofed={','.join(record['spoofed_arguments'])}")
    if "tools_hidden" in record:
        fields.append(f"kept={record['tools_kept']} hidden={record['tools_hidden']}")
    if "aws_session_name" in record:
        fields.append(f"aws_session={record['aws_session_name']}")
    _wrapped("    audit: ", " ".join(fields))


def _wrapped(prefix: str, text: str) -> None:
    """Long payloads wrap under their label instead of running off a terminal."""
    print(
        textwrap.fill(text, WIDTH, initial_indent=prefix, subsequent_indent=" " * len(prefix), break_on_hyphens=False)
    )


def _mask(value: str) -> str:
    return f"{value[:4]}...{value[-4:]}"


if __name__ == "__main__":
    main()
