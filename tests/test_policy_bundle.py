"""The compiled policy bundle: `teleport-policy build` validates and indexes a policy folder and writes
`policies.bundle.json`; the engine loads it only when its digest names exactly the files it reads, and otherwise
validates the folder itself (never serving an unvalidated set)."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.gateway import request_event, tool_call
from devtools.issuer import Issuer
from interceptor import policy
from interceptor.policy import (
    BUNDLE_FILE,
    PolicyEngine,
    PolicySetInvalid,
    PolicySource,
    bundle_digest,
    compile_policies,
    parse_schema,
)
from interceptor.tokens import Identity
from policy_toolkit.cli import main

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"
GET = "orders___get_order_tool"
UPDATE = "orders___update_order"
QUERY = "db___run_query"
CALLS: list[tuple[Identity, str, dict[str, Any]]] = [
    (Identity("alice", ("developer",), {}, "iss", 0), GET, {"order_id": "1"}),
    (Identity("alice", ("developer",), {}, "iss", 0), UPDATE, {"order_id": "1", "status": "shipped"}),
    (Identity("olga", ("order-admin",), {}, "iss", 0), UPDATE, {"order_id": "1", "status": "lost"}),
    (Identity("bot-ci", ("order-admin",), {}, "iss", 0), UPDATE, {"order_id": "1", "status": "shipped"}),
    (Identity("dana", ("db-reader",), {"db_names": ("sales",)}, "iss", 0), QUERY, {"database": "sales", "query": "q"}),
    (Identity("dana", ("db-reader",), {"db_names": ("sales",)}, "iss", 0), QUERY, {"database": "hr", "query": "q"}),
    (Identity("olga", ("order-admin",), {}, "iss", 0), GET, {"order_id": 1}),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, copy, ignore=shutil.ignore_patterns(BUNDLE_FILE, "tests", "tools"))
    return copy


def build(folder: Path, *extra: str) -> int:
    return main(["build", str(folder), *extra])


def decisions(engine: PolicyEngine) -> list[Any]:
    return [engine.authorize(identity, tool, arguments) for identity, tool, arguments in CALLS]


def test_a_built_bundle_is_loaded_and_decides_like_validating_at_init(folder: Path) -> None:
    validated = PolicyEngine.load(folder)
    assert validated.bundle_status == "absent"
    assert build(folder) == 0
    assert (folder / BUNDLE_FILE).is_file()
    bundled = PolicyEngine.load(folder)
    assert bundled.bundle_status == "loaded"
    assert bundled.compiled == validated.compiled
    assert decisions(bundled) == decisions(validated)
    assert [d.allowed for d in decisions(bundled)] == [True, False, False, False, True, False, False]


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda d: (d / "orders.cedar").write_text((d / "orders.cedar").read_text() + "\n"), "stale"),
        (lambda d: (d / "zz.cedar").write_text(""), "stale"),
        (lambda d: (d / "db.cedar").rename(d / "db2.cedar"), "stale"),
        (lambda d: (d / "schema.cedarschema").write_text((d / "schema.cedarschema").read_text() + "\n"), "stale"),
        (lambda d: (d / BUNDLE_FILE).write_text((d / BUNDLE_FILE).read_text()[:-20]), "stale"),
        (lambda d: (d / BUNDLE_FILE).write_text('{"format": 1}'), "stale"),
        (lambda d: (d / BUNDLE_FILE).write_bytes(b"\xff\xfe"), "absent"),
        (lambda d: (d / BUNDLE_FILE).unlink(), "absent"),
    ],
    ids=[
        "policy-edited",
        "file-added",
        "file-renamed",
        "schema-edited",
        "truncated",
        "not-a-bundle",
        "not-text",
        "gone",
    ],
)
def test_anything_but_the_files_it_was_built_from_is_validated_at_init(
    folder: Path, change: Callable[[Path], Any], expect: str
) -> None:
    assert build(folder) == 0
    change(folder)
    engine = PolicyEngine.load(folder)
    assert engine.bundle_status == expect
    source = PolicySource.read(folder)
    assert decisions(engine) == decisions(PolicyEngine(PolicySource(source.files, source.schema)))


def test_a_stale_bundle_never_serves_policies_that_no_longer_validate(folder: Path) -> None:
    assert build(folder) == 0
    (folder / "orders.cedar").write_text(
        (folder / "orders.cedar").read_text() + '\npermit (principal, action, resource) when { principal.nme == "x" };'
    )
    with pytest.raises(PolicySetInvalid) as info:
        PolicyEngine.load(folder)
    assert any("orders.cedar" in p for p in info.value.problems)


def test_the_digest_names_the_validator_version_and_the_compiler(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = PolicySource.read(folder)
    digest = bundle_digest(source)
    assert policy._cedarpy_version() == importlib.metadata.version("cedarpy")
    monkeypatch.setattr(policy, "_cedarpy_version", lambda: "0.0.0")
    assert bundle_digest(source) != digest
    monkeypatch.undo()
    monkeypatch.setattr(policy, "__file__", str(folder / "orders.cedar"))
    assert bundle_digest(source) != digest
    monkeypatch.undo()
    assert bundle_digest(source) == digest


def test_a_bundle_from_another_cedarpy_is_not_loaded(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build(folder) == 0
    monkeypatch.setattr(policy, "_cedarpy_version", lambda: "99.0.0")
    assert PolicyEngine.load(folder).bundle_status == "stale"


def test_build_is_deterministic_and_check_detects_staleness(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build(folder, "--check") == 1
    assert "missing or stale" in capsys.readouterr().out
    assert build(folder) == 0
    first = (folder / BUNDLE_FILE).read_text()
    assert "6 policies, 4 tools" in capsys.readouterr().out
    assert build(folder) == 0
    assert (folder / BUNDLE_FILE).read_text() == first
    assert build(folder, "--check") == 0
    (folder / "db.cedar").write_text((folder / "db.cedar").read_text() + "// a comment changes the digest too\n")
    assert build(folder, "--check") == 1
    assert (folder / BUNDLE_FILE).read_text() == first, "--check writes nothing"


def test_build_refuses_an_invalid_set_and_writes_nothing(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "bad.cedar").write_text('permit (principal, action == Teleport::Action::"nope", resource);')
    assert build(folder) == 1
    assert "bad.cedar" in capsys.readouterr().out
    assert not (folder / BUNDLE_FILE).exists()


def test_build_defaults_to_the_dir_option(folder: Path) -> None:
    assert main(["--dir", str(folder), "build"]) == 0
    assert PolicyEngine.load(folder).bundle_status == "loaded"


def test_a_bundle_with_an_unknown_format_is_not_loaded(folder: Path) -> None:
    assert build(folder) == 0
    body = json.loads((folder / BUNDLE_FILE).read_text())
    (folder / BUNDLE_FILE).write_text(json.dumps({**body, "format": body["format"] + 1}))
    assert PolicyEngine.load(folder).bundle_status == "stale"


def test_compiling_ignores_any_bundle(folder: Path) -> None:
    assert build(folder) == 0
    source = PolicySource.read(folder)
    assert source.bundle is not None
    body = json.loads(source.bundle)
    body["policies"] = []
    forged = PolicySource(source.files, source.schema, json.dumps(body))
    assert len(compile_policies(forged, parse_schema(forged)).policies) == 6


@pytest.mark.parametrize(("built", "status"), [(True, "loaded"), (False, "absent")])
def test_cold_start_says_whether_it_loaded_the_bundle(
    folder: Path,
    built: bool,
    status: str,
    issuer: Issuer,
    make_interceptor: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    if built:
        assert build(folder) == 0
    interceptor = make_interceptor(POLICY_DIR=str(folder))
    [loaded] = [r for r in caplog.records if r.getMessage() == "policies loaded"]
    assert loaded.__dict__["bundle"] == status
    token = issuer.mint(user="alice", roles=["developer"])
    assert (
        "transformedGatewayRequest"
        in interceptor.handle(request_event(tool_call(GET, {"order_id": "1"}), token))["mcp"]
    )


def test_cold_start_warns_about_a_stale_bundle(
    folder: Path, make_interceptor: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    assert build(folder) == 0
    (folder / "db.cedar").write_text((folder / "db.cedar").read_text() + "\n")
    make_interceptor(POLICY_DIR=str(folder))
    assert "policy bundle does not match the policy files" in caplog.text


def test_the_engine_types_arguments_by_the_bundles_input_types(folder: Path) -> None:
    """Input types are compiled into the bundle (covered by its digest) and read from it at init."""
    assert build(folder) == 0
    alice = Identity("alice", ("developer",), {}, "iss", 0)
    nullable = {"status": None, "limit": 5.0}
    assert PolicyEngine.load(folder).authorize(alice, "orders___list_my_orders", nullable).allowed
    body = json.loads((folder / BUNDLE_FILE).read_text())
    body["inputs"]["orders___list_my_orders"]["optional"] = []
    (folder / BUNDLE_FILE).write_text(json.dumps(body))
    decision = PolicyEngine.load(folder).authorize(alice, "orders___list_my_orders", nullable)
    assert decision.errors == ("argument 'status' is null where the tool's schema requires a value",)
    body["inputs"] = []
    (folder / BUNDLE_FILE).write_text(json.dumps(body))
    assert PolicyEngine.load(folder).bundle_status == "stale"
