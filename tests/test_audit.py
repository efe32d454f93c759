"""The audit line: one JSON line per decision that is both the audit record and the EMF metrics, its shape (what
CloudWatch Logs Insights queries and EMF extraction read), bounded size, and failures that never change an answer.

Records are captured through the injected sink (`audit_log` in conftest.py), not scraped from logs."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import interceptor.app as app
from devtools.gateway import request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer
from interceptor.audit import CLOUDWATCH_EVENT_BYTES, MAX_DETAIL, MAX_NAMES, MAX_TEXT, Auditor, AuditRecord
from interceptor.metrics import method_dimension
from interceptor.pipeline import Interceptor
from interceptor.reasons import Reason

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


@pytest.mark.parametrize(
    ("now", "timestamp"),
    [
        (-0.5, "1969-12-31 23:59:59,500+0000"),
        (0.0, "1970-01-01 00:00:00,000+0000"),
        (59.999, "1970-01-01 00:00:59,999+0000"),
    ],
)
def test_each_second_is_formatted_from_the_same_millisecond_as_the_metric(now: float, timestamp: str) -> None:
    # the first line of an auditor formats its second too, whatever the clock says (no second is assumed cached)
    captured: list[str] = []
    Auditor(captured.append, clock=lambda: now).write(AuditRecord(phase="REQUEST", mode="enforce", reason="allowed"))
    [line] = lines_of(captured)
    assert (line["timestamp"], line["_aws"]["Timestamp"]) == (timestamp, round(now * 1000))


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


def test_a_stdout_that_is_not_utf8_still_gets_the_record_in_utf8_after_what_was_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii")  # PYTHONIOENCODING=ascii: its encoder would refuse "ë"
    monkeypatch.setattr(sys, "stdout", ascii_out)
    print("printed first")  # still in the text layer's buffer: the record must not overtake it
    Auditor().write(AuditRecord(phase="REQUEST", mode="enforce", user="zoë", tool="t\U0001f680", reason="allowed"))
    printed, line = raw.getvalue().decode("utf-8").splitlines()
    assert printed == "printed first"
    record = json.loads(line)["audit"]
    assert (record["user"], record["tool"], record["reason"]) == ("zoë", "t\U0001f680", "allowed")


def test_a_text_only_stdout_gets_the_record_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()  # no binary buffer under it
    monkeypatch.setattr(sys, "stdout", out)
    Auditor().write(AuditRecord(phase="REQUEST", mode="enforce", user="zoë", reason="allowed"))
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["audit"]["user"] == "zoë"


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
    assert len(record["argument_names"]) == MAX_NAMES + 1
    assert record["argument_names"][-1] == "...(+400 more)"
    assert record["argument_names"][0].startswith("a0000y")
    assert all(len(name) <= MAX_TEXT + 20 for name in record["argument_names"])


ASTRAL = "\U0001f600"  # the costliest character: 12 bytes of JSON (a surrogate pair of \\u escapes)
CAPPED_TEXT = re.compile(r".*\.\.\.\(\+\d+ chars\)", re.DOTALL)
MORE = re.compile(r"\.\.\.\(\+\d+ more\)")


def huge(n: int = 100_000, tag: str = "") -> str:
    return tag + ASTRAL * n


def worst_record() -> AuditRecord:
    """Every caller-derived field of a record at its worst at once."""
    record = AuditRecord(
        phase="RESPONSE",
        mode="log_only",
        lambda_request_id="c5a1f7e2-0c1b-4bb8-9a8e-7d1b2c3d4e5f",
        mcp_session_id="s" * 100_000,
        rpc_id=huge(tag="r"),
        method=huge(tag="m"),
        tool=huge(tag="t"),
        user=huge(16 * 1024, "u"),  # a verified token holds at most 16 KiB
        roles=[huge(1000, f"role{i}") for i in range(2000)],
        bot=False,
        policy_ids=[f"policy-{i}-" + "p" * 300 for i in range(10_000)],
        argument_names=[huge(1000, f"a{i}") for i in range(500)],
        spoofed_arguments=[huge(1000, f"_meta._teleport_{i}") for i in range(500)],
        detail="; ".join(f"argument {huge(50)!r} is not a number" for _ in range(10_000)),
    )
    record.extra.update(
        {
            "tools_kept": 0,
            "tools_hidden": 500,
            "hidden_tools": [huge(5000, f"target___tool{i}") for i in range(500)],
            "content_dropped": 0,
            "policy_set": "a795f0477020",
        }
    )
    return record


@pytest.mark.parametrize("escaped", [False, True], ids=["orjson", "standard-encoder"])
def test_a_worst_case_record_fits_one_cloudwatch_event(escaped: bool) -> None:
    """Every caller-derived field at its worst at once: the line stays one valid JSON event, capped field by field
    (the whole-line fallback is not needed). An id beyond 64 bits sends the record to the standard encoder, which
    escapes every astral character in 12 bytes (orjson writes 4): the worst case of all."""
    record = worst_record()
    if escaped:
        record.rpc_id = 2**100
    captured: list[str] = []
    Auditor(captured.append).write(record)
    [text] = captured
    assert len(text.encode("utf-8")) + 1 < CLOUDWATCH_EVENT_BYTES  # with its newline
    assert len(text.encode("utf-8")) < 200_000  # README "Audit"
    assert ("\\ud83d" in text) is escaped
    audit = json.loads(text)["audit"]
    assert "audit_truncated" not in audit
    assert audit["rpc_id"] == 2**100 if escaped else CAPPED_TEXT.fullmatch(audit["rpc_id"])
    for key in ("mcp_session_id", "method", "tool", "user", "detail"):
        assert CAPPED_TEXT.fullmatch(audit[key]), key
    for key in ("roles", "policy_ids", "argument_names", "spoofed_arguments", "hidden_tools"):
        *names, marker = audit[key]
        assert MORE.fullmatch(marker), key
        assert 0 < len(names) <= MAX_NAMES, key
        assert all(len(name) <= MAX_TEXT + 20 for name in names), key
    assert audit["roles"][0].startswith("role0" + ASTRAL)
    assert audit["hidden_tools"][0].startswith("target___tool0")
    assert (audit["tools_hidden"], audit["policy_set"]) == (500, "a795f0477020")


def test_a_worst_case_delegated_record_fits_one_cloudwatch_event() -> None:
    """A delegated call's record (README "Agents") at its worst too: the agent, its jti and both gates' policy
    lists, capped like the rest; still one event without the whole-line fallback."""
    record = worst_record()
    record.extra.update(
        {
            "agent": huge(2048, "spiffe://"),
            "agent_jti": huge(16 * 1024, "j"),
            "user_decision": "deny",
            "user_policy_ids": [huge(300, f"u{i}") for i in range(10_000)],
            "agent_decision": "deny",
            "agent_policy_ids": [huge(300, f"a{i}") for i in range(10_000)],
        }
    )
    captured: list[str] = []
    Auditor(captured.append).write(record)
    [text] = captured
    assert len(text) + 1 < CLOUDWATCH_EVENT_BYTES and len(text) < 245_000  # README "Audit"
    audit = json.loads(text)["audit"]
    assert "audit_truncated" not in audit
    for key in ("agent", "agent_jti"):
        assert CAPPED_TEXT.fullmatch(audit[key]), key
    for key in ("user_policy_ids", "agent_policy_ids"):
        *names, marker = audit[key]
        assert MORE.fullmatch(marker) and 0 < len(names) <= MAX_NAMES, key


def test_worst_case_requests_through_the_handler_fit_one_event(
    issuer: Issuer, interceptor: Interceptor, audit_log: list[str]
) -> None:
    """A call and a tool list at their worst: a 16 KiB token of one long user and many roles, huge names and ids,
    hundreds of argument names and reserved-name spoofs, 500 hidden tools with long names."""
    token = issuer.mint(user="u" * 1500, roles=[f"role-{i:03d}-" + "r" * 40 for i in range(110)])
    assert len(token) <= 16 * 1024
    arguments: dict[str, Any] = {huge(300, f"a{i}"): 1 for i in range(500)}
    arguments.update({f"_teleport_{i}" + "x" * 2000: 1 for i in range(300)})
    body = tool_call("t___" + huge(), arguments, rpc_id=huge(tag="id"))
    body["params"]["_meta"] = {f"_teleport_{i}" + "y" * 2000: 1 for i in range(300)}
    interceptor.handle(request_event(body, token, headers={"Mcp-Session-Id": "s" * 100_000}))
    listed = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": huge(3000, f"x___{i}")} for i in range(500)]}}
    interceptor.handle(response_event(request_event(rpc("tools/list", rpc_id=1), token), listed))
    call, tool_list = [json.loads(text)["audit"] for text in audit_log]
    assert all(len(text) + 1 < CLOUDWATCH_EVENT_BYTES for text in audit_log)
    assert (call["reason"], tool_list["reason"], tool_list["tools_hidden"]) == ("tool_unknown", "tools_filtered", 500)
    assert CAPPED_TEXT.fullmatch(call["user"]) and call["user"].startswith("u" * MAX_TEXT)
    assert MORE.fullmatch(call["roles"][-1]) and len(call["roles"]) == MAX_NAMES + 1
    assert MORE.fullmatch(call["argument_names"][-1])
    assert MORE.fullmatch(call["spoofed_arguments"][-1])
    assert MORE.fullmatch(tool_list["hidden_tools"][-1])


def test_integer_ids_and_details_are_capped_too() -> None:
    captured: list[str] = []
    auditor = Auditor(captured.append)
    auditor.write(AuditRecord(phase="REQUEST", mode="enforce", rpc_id=10**1000, detail="d" * 5000))
    auditor.write(AuditRecord(phase="REQUEST", mode="enforce", rpc_id=-(10**MAX_TEXT) + 1, detail="d" * MAX_DETAIL))
    big, kept = [line["audit"] for line in lines_of(captured)]
    assert big["rpc_id"] == "1" + "0" * (MAX_TEXT - 1) + f"...(+{1001 - MAX_TEXT} chars)"
    assert big["detail"] == "d" * MAX_DETAIL + f"...(+{5000 - MAX_DETAIL} chars)"
    assert (kept["rpc_id"], kept["detail"]) == (-(10**MAX_TEXT) + 1, "d" * MAX_DETAIL)


def test_an_extra_is_capped_whether_it_adds_a_key_or_reuses_a_record_field() -> None:
    """Keys only extras add are checked on records that have extras; a record field an extra overwrites is checked
    after the merge, so neither way round leaves a value uncapped."""
    captured: list[str] = []
    record = AuditRecord(phase="REQUEST", mode="enforce", tool="t")
    record.extra.update(tool="x" * 5000, agent="a" * 5000, hidden_tools=["h" * 5000])
    Auditor(captured.append).write(record)
    [line] = lines_of(captured)
    assert all(CAPPED_TEXT.fullmatch(value) for value in (line["audit"]["tool"], line["audit"]["agent"]))
    assert CAPPED_TEXT.fullmatch(line["audit"]["hidden_tools"][0])


def test_a_line_that_still_does_not_fit_keeps_its_outcome() -> None:
    """A field nobody capped (none today) cannot cost the record: the outcome is written, and the size it had."""
    captured: list[str] = []
    record = AuditRecord(phase="REQUEST", mode="enforce", method="tools/call", rpc_id=3, latency_us=9)
    record.conclude("deny", Reason.POLICY_DENIED, False, "no policy allows this call")
    record.extra["zz_uncapped"] = "z" * 300_000
    Auditor(captured.append).write(record)
    [line] = lines_of(captured)
    assert line["audit"]["audit_truncated"] > 300_000
    assert {k: line["audit"][k] for k in ("phase", "decision", "forwarded", "reason", "latency_us")} == {
        "phase": "REQUEST",
        "decision": "deny",
        "forwarded": False,
        "reason": "policy_denied",
        "latency_us": 9,
    }
    assert "zz_uncapped" not in line["audit"]
    assert (line["Outcome"], line["Method"]) == ("policy_denied", "tools/call")


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
