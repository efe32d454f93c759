"""The audit line: one JSON line per decision that is both the audit record and the EMF metrics, its shape (what
CloudWatch Logs Insights queries and EMF extraction read), bounded size, and failures that never change an answer.

Records are captured through the injected sink (`audit_log` in conftest.py), not scraped from logs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import interceptor.app as app
from devtools.gateway import request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer
from interceptor.audit import MAX_NAMES, MAX_TEXT, Auditor, AuditRecord
from interceptor.metrics import method_dimension
from interceptor.pipeline import Interceptor

GET = "orders___get_order_tool"
Make = Callable[..., Interceptor]
EMF_KEYS = {"_aws", "Phase", "Method", "Outcome", "Decisions", "Latency"}


def lines_of(audit_log: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in audit_log]


def list_event(token: str) -> dict[str, Any]:
    listed = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": GET, "inputSchema": {"type": "object"}}]}}
    return response_event(request_event(rpc("tools/list"), token), listed)


# ---------------------------------------------------------------------------------------------------------------
# one line: the audit record and the metrics


def test_each_invocation_writes_one_line_carrying_its_metrics(
    monkeypatch: pytest.MonkeyPatch, issuer: Issuer, make_interceptor: Make, audit_log: list[str]
) -> None:
    monkeypatch.setattr(app, "INTERCEPTOR", make_interceptor())
    token = issuer.mint(user="zz-user-4c1e", roles=["zz-role-77"], traits={"zz_trait": ["zz-value-9b"]})
    context = SimpleNamespace(aws_request_id="r")
    app.lambda_handler(list_event(token), context)  # type: ignore[arg-type]
    app.lambda_handler(request_event(tool_call(GET, {"order_id": "1"}), token), context)  # type: ignore[arg-type]
    app.lambda_handler(request_event(rpc("x-vendor/odd-method"), None), context)  # type: ignore[arg-type]
    lines = lines_of(audit_log)
    assert len(lines) == 3
    for line in lines:
        assert line["message"] == "audit"
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "TeleportAgentCoreInterceptor"
        assert directive["Dimensions"] == [["Phase", "Method", "Outcome", "service"]]
        assert directive["Metrics"] == [
            {"Name": "Decisions", "Unit": "Count"},
            {"Name": "Latency", "Unit": "Microseconds"},
        ]
        assert type(line["_aws"]["Timestamp"]) is int
        assert line["Decisions"] == 1
        assert line["Latency"] == line["audit"]["latency_us"]
        assert line["service"] == "teleport-agentcore-interceptor"
    assert [(x["Phase"], x["Method"], x["Outcome"]) for x in lines][:2] == [
        ("RESPONSE", "tools/list", "tools_filtered"),
        ("REQUEST", "tools/call", "policy_denied"),
    ]
    assert (lines[2]["Phase"], lines[2]["Method"]) == ("REQUEST", "other")  # a method name callers chose
    for line in lines:
        assert (line["Phase"], line["Outcome"]) == (line["audit"]["phase"], line["audit"]["reason"])
    dimensions = json.dumps([{k: x[k] for k in EMF_KEYS} for x in lines])
    for secret in ("zz-user-4c1e", "zz-role-77", "zz-value-9b", "zz_trait", token):
        assert secret not in dimensions  # nothing per user in what EMF extracts


def test_direct_handle_calls_write_exactly_one_line_each(
    issuer: Issuer, interceptor: Interceptor, audit_log: list[str]
) -> None:
    """No batching and no backlog: the metrics of a decision leave with its record, whoever calls `handle`."""
    token = issuer.mint(user="alice", roles=["developer"])
    for n in range(1, 151):
        interceptor.handle(list_event(token))
        assert len(audit_log) == n
    assert all(line["Decisions"] == 1 for line in lines_of(audit_log))


def test_the_line_keeps_the_powertools_shape_that_queries_read(
    interceptor: Interceptor, issuer: Issuer, audit_log: list[str]
) -> None:
    """`filter message = "audit" | stats count() by audit.decision` (README "Deploy") keeps working."""
    interceptor.handle(request_event(rpc("ping"), issuer.mint()), "r-9")
    [text] = audit_log
    assert "\n" not in text
    line = json.loads(text)
    assert {"level", "message", "timestamp", "service", "audit"} <= set(line)
    assert (line["level"], line["message"]) == ("INFO", "audit")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0000", line["timestamp"])
    assert (line["audit"]["lambda_request_id"], line["audit"]["method"]) == ("r-9", "ping")


def test_timestamps_agree_and_are_utc() -> None:
    captured: list[str] = []
    auditor = Auditor(captured.append, clock=lambda: 1_738_324_800.123)  # 2025-01-31 12:00:00.123 UTC
    auditor.write(AuditRecord(phase="REQUEST", mode="enforce", reason="allowed", latency_us=42))
    auditor.write(AuditRecord(phase="REQUEST", mode="enforce", reason="allowed", latency_us=43))
    first, second = lines_of(captured)
    assert first["timestamp"] == second["timestamp"] == "2025-01-31 12:00:00,123+0000"
    assert first["_aws"]["Timestamp"] == 1_738_324_800_123
    assert (first["Latency"], second["Latency"]) == (42, 43)


def test_record_fields_and_extras_sit_under_audit_only() -> None:
    captured: list[str] = []
    record = AuditRecord(phase="RESPONSE", mode="log_only", method="tools/list", reason="tools_filtered")
    record.extra.update({"tools_kept": 3, "policy_set": "abc"})
    Auditor(captured.append, service="svc").write(record)
    [line] = lines_of(captured)
    assert line["audit"]["tools_kept"] == 3
    assert line["audit"]["policy_set"] == "abc"
    assert "extra" not in line["audit"]
    assert "tools_kept" not in line
    assert (line["service"], line["Method"], line["Outcome"]) == ("svc", "tools/list", "tools_filtered")


def test_xray_trace_id_is_added_when_lambda_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[str] = []
    auditor = Auditor(captured.append)
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    auditor.write(AuditRecord(phase="REQUEST", mode="enforce"))
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    auditor.write(AuditRecord(phase="REQUEST", mode="enforce"))
    without, with_trace = lines_of(captured)
    assert "xray_trace_id" not in without
    assert with_trace["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


def test_the_default_sink_is_one_line_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    Auditor().write(AuditRecord(phase="REQUEST", mode="enforce", reason="allowed"))
    out = capsys.readouterr().out
    assert out.endswith("\n")
    assert out.count("\n") == 1
    assert json.loads(out)["audit"]["reason"] == "allowed"


# ---------------------------------------------------------------------------------------------------------------
# bounded lines


def test_caller_chosen_strings_are_capped(issuer: Issuer, interceptor: Interceptor, audit_log: list[str]) -> None:
    long = "x" * 100_000
    arguments = {f"a{i:04d}{'y' * 300}": 1 for i in range(500)}
    body = tool_call("t___" + long, arguments, rpc_id="r" + long)
    event = request_event(body, issuer.mint(), headers={"Mcp-Session-Id": "s" + long})
    interceptor.handle(event)
    [text] = audit_log
    assert len(text) < 80_000
    record = json.loads(text)["audit"]
    for key in ("tool", "rpc_id", "mcp_session_id"):
        assert record[key].startswith(("t___xxx", "rxxx", "sxxx"))
        assert len(record[key]) <= MAX_TEXT + 20
        assert record[key].endswith("chars)")
    assert len(record["argument_names"]) == MAX_NAMES
    assert record["argument_names"][0].startswith("a0000y")
    assert all(len(name) <= MAX_TEXT + 20 for name in record["argument_names"])


def test_short_values_are_kept_exactly() -> None:
    captured: list[str] = []
    record = AuditRecord(phase="REQUEST", mode="enforce", tool="t" * MAX_TEXT, rpc_id=2**40)
    record.argument_names = [f"n{i}" for i in range(MAX_NAMES)]
    Auditor(captured.append).write(record)
    [line] = lines_of(captured)
    assert line["audit"]["tool"] == "t" * MAX_TEXT
    assert line["audit"]["rpc_id"] == 2**40
    assert line["audit"]["argument_names"] == record.argument_names


@pytest.mark.parametrize(
    ("method", "dimension"),
    [
        ("tools/list", "tools/list"),
        ("tools/call", "tools/call"),
        ("initialize", "initialize"),
        ("notifications/initialized", "notifications"),
        ("notifications/zz-anything", "notifications"),
        ("x-vendor/zz-anything", "other"),
        (None, "other"),
    ],
)
def test_method_dimension_is_bounded(method: str | None, dimension: str) -> None:
    assert method_dimension(method) == dimension


# ---------------------------------------------------------------------------------------------------------------
# failures


def test_a_failing_sink_never_changes_the_answer(
    issuer: Issuer, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(line: str) -> None:
        raise OSError("stdout closed")

    caplog.set_level(logging.ERROR)
    interceptor = app.build(env, Auditor(broken))
    out = interceptor.handle(request_event(tool_call(GET, {"order_id": "42"}), issuer.mint(roles=["developer"])))
    assert "transformedGatewayRequest" in out["mcp"]
    assert "audit record not written" in caplog.text
