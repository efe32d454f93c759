"""The handler in-process, and how `make invoke` / `make smoke` judge the built artifact's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.events import sample_events
from devtools.gateway import request_event, tool_call
from devtools.invoke import EXPECTED, Answer, answer_of, audit_problem, sources, verdict


def test_allowed_call_is_forwarded_with_identity(issuer, interceptor):
    token = issuer.mint(user="alice", roles=["developer"])
    out = interceptor.handle(request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token))
    args = out["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"]
    assert args == {"order_id": "42", "_teleport_user": "alice", "_teleport_roles": ["developer"]}


# `make invoke` / `make smoke` judge each answer by what the event's name promises (devtools.invoke.EXPECTED).


def test_every_sample_event_gives_what_its_name_promises(issuer, interceptor):
    events = sample_events(issuer)
    assert set(events) == set(EXPECTED)
    for name, event in events.items():
        assert verdict(name, answer_of(interceptor.handle(event))) == ("ok", str(EXPECTED[name])), name


def test_every_sample_event_leaves_exactly_one_audit_record_with_its_reason(
    issuer, interceptor, capsys: pytest.CaptureFixture[str]
):
    # what `make smoke` reads from the real runtime's stdout, here from the handler in-process
    for name, event in sample_events(issuer).items():
        capsys.readouterr()
        answer = answer_of(interceptor.handle(event))
        assert audit_problem(capsys.readouterr().out, answer) is None, name


@pytest.mark.parametrize(
    ("log", "problem"),
    [
        ("", "0 audit records on stdout, expected exactly one"),
        ('{"message": "audit", "audit": {"reason": "policy_denied"}}\n' * 2, "2 audit records"),
        ('{"message": "audit", "audit": {"reason": "allowed"}}', "audit record says 'allowed', the answer"),
        ('{"level": "ERROR", "message": "x"}\nnot json\n', "0 audit records"),
    ],
)
def test_a_missing_doubled_or_contradicting_audit_record_fails(log: str, problem: str):
    denied = Answer(200, "policy_denied")
    assert problem in (audit_problem(log, denied) or "")
    assert audit_problem('{"message": "audit", "audit": {"reason": "policy_denied"}}', denied) is None


def test_a_refusal_where_an_answer_was_expected_fails(issuer, make_interceptor):
    wrong_audience = make_interceptor(TELEPORT_AUDIENCE="mcp+https://other.example.com/mcp")
    answer = answer_of(wrong_audience.handle(sample_events(issuer)["denied-call"]))
    assert answer == Answer(401, "audience_mismatch")
    mark, text = verdict("denied-call", answer)
    assert mark == "FAIL"
    assert "answered 401 (audience_mismatch)" in text and "expected answered 200 (policy_denied)" in text


def test_a_spoofed_identity_that_got_through_fails():
    forged = {
        "interceptorOutputVersion": "1.0",
        "mcp": {
            "transformedGatewayRequest": {
                "body": tool_call("orders___get_order_tool", {"order_id": "42", "_teleport_user": "carol"})
            }
        },
    }
    assert verdict("spoofed-identity", answer_of(forged))[0] == "FAIL"


def test_an_event_with_another_name_is_shown_but_never_passed():
    mark, text = verdict("my-event", Answer(401, "signature_invalid"))
    assert mark == "??"
    assert "answered 401 (signature_invalid)" in text and "not checked" in text


def test_output_breaking_the_contract_raises():
    with pytest.raises(ValueError, match="not an interceptor output"):
        answer_of({"mcp": {}})
    with pytest.raises(KeyError):
        answer_of({"interceptorOutputVersion": "1.0", "mcp": {}})


def test_sample_events_are_swapped_for_freshly_minted_copies(tmp_path):
    (tmp_path / "denied-call.json").write_text("{}")
    events, env_file = sources([Path("events/denied-call.json"), Path("mine.json")], Path("events/env.json"), tmp_path)
    assert events == [tmp_path / "denied-call.json", Path("mine.json")]
    assert env_file == tmp_path / "env.json"
    assert sources([Path("events/denied-call.json")], Path("events/env.json"), None) == (
        [Path("events/denied-call.json")],
        Path("events/env.json"),
    )
