"""`make demo` shows the five features a person should see, and nothing it must not show: no error line, no raw
log JSON, no token, no AWS secret."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools import demo
from devtools.issuer import Issuer, WorkloadIssuer

ROOT = Path(__file__).resolve().parents[1]
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


@pytest.fixture(scope="module")
def output() -> str:
    """The demo as `make demo` runs it: its own process, so import-time and logging noise would show."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-m", "devtools.demo"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def step(output: str, number: int) -> str:
    """The text of one step, from its heading to the next."""
    match = re.search(rf"^=== {number}/5 .*?(?=^=== |\Z)", output, re.MULTILINE | re.DOTALL)
    assert match, f"step {number} missing"
    return match[0]


def blocks(section: str) -> dict[str, str]:
    """Each block of a step (a line indented by two spaces and the lines indented deeper under it), keyed by
    that line's first words, with wrapped lines joined back."""
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=  \S)", section.split("\n\n", 1)[1]):
        found[block.split("  ")[1].strip()] = " ".join(block.split())
    return found


def test_one_call_three_users(output: str) -> None:
    users = blocks(step(output, 1))
    carol = users["carol (order-admin)"]
    assert "ALLOWED" in carol and '"_teleport_user": "carol"' in carol
    assert "policies=order-admins-manage-orders" in carol
    alice = users["alice (developer, db-reader)"]
    assert "DENIED the agent reads: Teleport user 'alice' may not call tool 'orders___update_order': " in alice
    assert "no policy allows this call (reason: policy_denied)" in alice
    bot = users["bot-reporter (Machine ID bot with order-admin)"]
    assert "DENIED" in bot and "forbidden by policy 'no-destructive-tools-for-bots'" in bot
    assert "policies=no-destructive-tools-for-bots" in bot


def test_spoof_shown_before_and_after_stamping(output: str) -> None:
    shown = blocks(step(output, 2))
    sent, forwarded = shown["sent by the agent"], shown["forwarded to tool"]
    assert sent.count('"_teleport_user": "mallory"') == 2  # in the arguments and in params._meta
    assert "mallory" not in forwarded
    assert '"_teleport_user": "alice"' in forwarded and '"_teleport_roles": ["developer", "db-reader"]' in forwarded
    assert '_meta {"progressToken": "p-1"' in forwarded  # the caller's other _meta entries stay


def test_tool_list_filtered_differently_for_two_users(output: str) -> None:
    seen = dict(re.findall(r"^  (\w+) \(.*?\)\s+sees (.+)$", step(output, 3), re.MULTILINE))
    assert seen["alice"].split(", ") == ["db___run_query", "orders___get_order_tool", "orders___list_my_orders"]
    assert seen["carol"].split(", ") == ["orders___get_order_tool", "orders___list_my_orders", "orders___update_order"]


def test_minted_session_shows_what_sts_was_asked(output: str) -> None:
    session = " ".join(step(output, 4).split())
    for shown in [
        "RoleSessionName alice",
        "SourceIdentity alice",
        "Tags teleport-user = alice teleport-roles = :developer:db-reader: teleport-tool = orders___list_my_orders",
        "TransitiveTagKeys teleport-user, teleport-roles, teleport-tool, teleport-cluster",
        "secretAccessKey ****, sessionToken ****",
    ]:
        assert shown in session


def test_a_delegated_call_allowed_and_one_refused_by_the_agent_gate(output: str) -> None:
    calls = blocks(step(output, 5))
    agent = "spiffe://example.teleport.sh/agents/orders-assistant"
    allowed = calls['orders___get_order_tool {"order_id": "42"}']
    assert (
        "ALLOWED" in allowed and '"_teleport_user": "carol"' in allowed and f'"_teleport_agent": "{agent}"' in allowed
    )
    assert f"SourceIdentity carol, session tag teleport-agent = {agent}" in allowed
    assert "user_gate=allow:order-admins-manage-orders agent_gate=allow:orders-agents-use-orders" in allowed
    refused = calls['orders___update_order {"order_id": "42", "status": "shipped"}']
    assert f"DENIED the agent reads: the agent '{agent}' may not call tool 'orders___update_order'" in refused
    assert "forbidden by policy 'no-destructive-tools-for-agents' (reason: agent_denied)" in refused
    assert "user_gate=allow:order-admins-manage-orders agent_gate=deny:no-destructive-tools-for-agents" in refused


def test_no_error_no_log_json_no_token(output: str) -> None:
    assert "ERROR" not in output
    assert not [line for line in output.splitlines() if line.lstrip().startswith("{")]
    assert not TOKEN_LIKE.search(output)
    assert "FQoGZXIvYXdzE" not in output  # the prefix of every session token moto issues


def test_never_prints_the_tokens_or_credentials_it_handles(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens: list[str] = []
    secrets: list[str] = []
    mint, mint_svid, client = Issuer.mint, WorkloadIssuer.mint, boto3.client

    def recording_mint(self: Issuer, *args: Any, **kwargs: Any) -> str:
        tokens.append(mint(self, *args, **kwargs))
        return tokens[-1]

    def recording_svid(self: WorkloadIssuer, *args: Any, **kwargs: Any) -> str:
        tokens.append(mint_svid(self, *args, **kwargs))
        return tokens[-1]

    def recording_client(*args: Any, **kwargs: Any) -> Any:
        made = client(*args, **kwargs)
        made.meta.events.register("after-call.sts.AssumeRole", record_credentials)
        return made

    def record_credentials(parsed: dict[str, Any], **_: Any) -> None:
        secrets.extend([parsed["Credentials"]["SecretAccessKey"], parsed["Credentials"]["SessionToken"]])

    monkeypatch.setattr(Issuer, "mint", recording_mint)
    monkeypatch.setattr(WorkloadIssuer, "mint", recording_svid)
    monkeypatch.setattr(boto3, "client", recording_client)
    demo.main()
    printed = capsys.readouterr().out
    assert len(tokens) == 4 and len(secrets) == 8
    assert "SourceIdentity" in printed
    assert not [value for value in tokens + secrets if value in printed]
