"""`make bench`: cold start, tool lists and the warm path over generated gateways, with the limit in the same run.

Gateways come from `benchmarks.generate` (the README's Cedar model, issue 10's mix). Sizes (policies x tools): the
full run sweeps policies at 500 tools (10 / 100 / 1,000 / 10,000) and tools at 1,000 policies (50 / 500 / 5,000),
plus the small corner 10 x 50: seven gateways, not the whole 4 x 3 matrix (10,000 x 5,000 alone would take longer
than the rest, and the sweeps already show how each dimension grows). `--quick` runs 10 x 50, 100 x 500 and
1,000 x 500 with fewer iterations, for CI.

Per gateway:
- cold start: a fresh interpreter imports `interceptor.app` (init: settings, policy load, tool lister) with a
  pinned JWKS (`TELEPORT_JWKS`), then serves one allowed `tools/call` with a token it has never seen; median of
  several runs, split into imports, init and first request, plus the process's peak RSS (`VmHWM`: unlike
  `ru_maxrss` it does not carry the benchmark's own size across fork + exec). When the
  toolkit has `teleport-policy build`, the folder is built first (timed apart: it runs at build time, not in
  the function) and one cold start from the plain policy files is measured before, for comparison;
- tool lists: the RESPONSE handler on a `tools/list` of every tool, for a caller seen for the first time and for
  one whose visible tools are cached;
- warm path: the handler on an allowed `tools/call` with the token cached (Teleport reuses one per MCP session)
  and fresh (full RS256 verification), p50 and p99, sampled interleaved with the limit so drift hits both alike;
- the limit, the irreducible work as issue 10 measured it: Cedar over the tool's own policies
  (`cedarpy.is_authorized` with parsed policy, entity and schema handles) for a cached token; plus one RSA-2048
  verification and the claim checks for a fresh one. The ratio is handler p50 / limit p50. The handler calls
  the extension under `cedarpy.is_authorized` itself (`policy.decide`), so the parts also show that extension
  call alone (context text written beforehand, answer not read): the floor below the limit;
- throughput: decisions per second of one warm container calling the handler in a loop (median of 5 windows).

Audit lines are written as in Lambda (to stdout, here redirected to /dev/null), so their cost is measured. Results
go to stdout and `.bench/benchmarks.md`; `--write` writes `docs/benchmarks.md`. Medians from one run on a shared
machine: compare ratios within a run rather than absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cedarpy
from cedarpy import _internal as cedar_extension
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from benchmarks.generate import definitions, generate
from devtools.gateway import request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer
from interceptor import policy
from interceptor.audit import Auditor, AuditRecord
from interceptor.listing import ToolLister
from interceptor.pipeline import Interceptor
from interceptor.policy import ACTION_TYPE, GATEWAY, USER_TYPE, PolicyEngine, principal_entities
from interceptor.tokens import TokenVerifier
from interceptor.wiring import build, logger

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
SCRATCH = ROOT / ".bench" / "benchmarks.md"
ISSUER_URL = "https://teleport.example.com"
FULL = [(10, 50), (10, 500), (100, 500), (1000, 50), (1000, 500), (1000, 5000), (10000, 500)]
QUICK = [(10, 50), (100, 500), (1000, 500)]
MAIN = (1000, 500)  # where the warm-path targets are judged
Stats = tuple[float, float]  # (p50, p99) in microseconds


@dataclass
class Cold:
    """Median milliseconds of the cold-start steps, the process's peak RSS, and how the policies were loaded (the
    `bundle` field of the `policies loaded` log line: a prebuilt bundle used, stale, or none)."""

    total_ms: float
    imports_ms: float
    init_ms: float
    first_request_ms: float
    process_ms: float
    rss_mb: float
    bundle: str


@dataclass
class Result:
    policies: int
    tools: int
    cold: Cold
    warm: dict[str, Stats]
    throughput: float
    lists: dict[str, Stats]
    visible: int
    build_ms: float | None  # `teleport-policy build`, when the toolkit has it
    plain: Cold | None  # cold start from the plain policy files, when a bundle is what the function loads

    @property
    def name(self) -> str:
        return f"{self.policies:,} x {self.tools:,}"

    def ratio(self, path: str, limit: str) -> float:
        return self.warm[path][0] / self.warm[limit][0]


# ---------------------------------------------------------------------------------------------------------------
# sampling


def sample_interleaved(fns: dict[str, Callable[[], object]], n: int, rounds: int = 20) -> dict[str, Stats]:
    """p50 and p99 of each function over `n` calls, taken in `rounds` alternating blocks after a warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(min(200, n)):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            out = samples[name]
            for _ in range(max(1, n // rounds)):
                started = time.perf_counter_ns()
                fn()
                out.append((time.perf_counter_ns() - started) / 1000)
    return {name: _stats(values) for name, values in samples.items()}


def _stats(values: list[float]) -> Stats:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def throughput(fn: Callable[[], object], seconds: float, windows: int = 5) -> float:
    """Calls per second of `fn` in a tight loop: the median of `windows` windows over about `seconds`, so a burst
    of other work on a shared machine moves one window, not the figure."""
    rates = []
    for _ in range(windows):
        calls, started = 0, time.perf_counter()
        deadline = started + seconds / windows
        while (now := time.perf_counter()) < deadline:
            for _ in range(50):
                fn()
            calls += 50
        rates.append(calls / (now - started))
    return statistics.median(rates)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Audit lines go to /dev/null through the real stdout sink (write + flush, as in Lambda)."""
    saved = sys.stdout
    with Path(os.devnull).open("w") as devnull:
        sys.stdout = devnull
        try:
            yield
        finally:
            sys.stdout = saved


# ---------------------------------------------------------------------------------------------------------------
# the gateway under test


@dataclass(frozen=True)
class Call:
    """The benchmark's allowed call: a role x tool permit of the generated set, arguments the schema requires."""

    tool: str
    roles: list[str]
    traits: dict[str, list[str]]
    arguments: dict[str, Any]


def bench_call(folder: Path, tools: int) -> Call:
    text = (folder / "generated.cedar").read_text(encoding="utf-8")
    match = re.search(r'permit \(principal in Teleport::Role::"(r\d+)", action == Teleport::Action::"([^"]+)"', text)
    assert match, "the generated set has a role x tool permit"
    role, tool = match.groups()
    target, _, name = tool.partition("___")
    [schema] = [d["inputSchema"] for d in definitions(tools)[target] if d["name"] == name]
    arguments = dict.fromkeys(schema.get("required", []), "42")
    roles = [role, *(f"r{i}" for i in range(6) if f"r{i}" != role)]
    return Call(tool, roles, {"team": ["team1", "team2"]}, arguments)


def own_policies(folder: Path, tool: str) -> cedarpy.PolicySet:
    """The policies whose action scope can match `tool` (by name, in a list, through its target's group, or any
    action), read from the generated text independently of the engine's own slicing."""
    target = tool.partition("___")[0]
    names = (f'Action::"{tool}"', f'Action::"{target}"')
    text = (folder / "generated.cedar").read_text(encoding="utf-8")
    kept = [
        policy
        for policy in text.split("\n\n")
        if any(n in policy for n in names) or re.search(r"\(principal[^,]*, action, ", policy)
    ]
    return cedarpy.PolicySet.from_str("\n\n".join(kept))


def settings(issuer: Issuer, folder: Path) -> dict[str, str]:
    """The function's environment for a generated gateway, with the issuer's keys pinned."""
    return {
        "TELEPORT_ISSUER": issuer.url,
        "TELEPORT_AUDIENCE": issuer.audience,
        "TELEPORT_JWKS": json.dumps(issuer.jwks()),
        "POLICY_DIR": str(folder),
    }


def warm(issuer: Issuer, interceptor: Interceptor, folder: Path, tools: int, n: int) -> tuple[dict[str, Stats], float]:
    """Warm-path samples (handler, parts, limits) and decisions per second, token cached."""
    call = bench_call(folder, tools)
    token = issuer.mint(user="alice", roles=call.roles, traits=call.traits, ttl=4 * 3600)
    event = request_event(tool_call(call.tool, call.arguments), token)
    assert "transformedGatewayRequest" in interceptor.handle(event)["mcp"], "the benchmark call must be allowed"
    verifier, engine = interceptor._verifier, interceptor._engine  # private on purpose: parts, not an API
    assert isinstance(verifier, TokenVerifier) and isinstance(engine, PolicyEngine)
    identity = verifier.verify(token)

    def fresh_handler() -> object:
        verifier._cache.clear()  # the next verification is a full one, as for a token never seen
        return interceptor.handle(event)

    def fresh_verify() -> object:
        verifier._cache.clear()
        return verifier.verify(token)

    policies = own_policies(folder, call.tool)
    schema = cedarpy.Schema.from_str((folder / "schema.cedarschema").read_text(encoding="utf-8"))
    entities = cedarpy.Entities.from_json_str(
        json.dumps([{"uid": GATEWAY, "attrs": {}, "parents": []}, *principal_entities(identity)]), schema
    )
    request = {
        "principal": {"type": USER_TYPE, "id": identity.user},
        "action": {"type": ACTION_TYPE, "id": call.tool},
        "resource": GATEWAY,
        "context": {"input": call.arguments},
    }
    assert cedarpy.is_authorized(request, policies, entities, schema).allowed, "the limit must decide the same"
    extension_requests = [{**request, "context": policy.context_text({"input": call.arguments})}]
    [floor_answer] = cedar_extension.is_authorized_batch(extension_requests, policies, entities._inner, schema, False)
    assert json.loads(floor_answer)["decision"] == "Allow", "the floor must decide the same"
    rsa_and_claims = _rsa_and_claims(issuer, token)
    auditor = Auditor()
    record = AuditRecord(phase="REQUEST", mode="enforce", method="tools/call", tool=call.tool, user="alice")
    record.roles, record.decision, record.forwarded, record.reason = call.roles, "allow", True, "allowed"
    record.policy_ids, record.argument_names, record.lambda_request_id = ["g0"], sorted(call.arguments), "req-1"
    warm_stats = sample_interleaved(
        {
            "handler, token cached": lambda: interceptor.handle(event),
            "limit: Cedar over the tool's own policies": lambda: cedarpy.is_authorized(
                request, policies, entities, schema
            ),
            "handler, token fresh": fresh_handler,
            "limit: RSA-2048 verify + claims": rsa_and_claims,
            "Cedar's extension alone": lambda: cedar_extension.is_authorized_batch(
                extension_requests, policies, entities._inner, schema, False
            ),
        },
        n,
    )
    parts = sample_interleaved(
        {
            "token verification, cache hit": lambda: verifier.verify(token),
            "token verification, fresh": fresh_verify,
            "authorization (engine)": lambda: engine.authorize(identity, call.tool, call.arguments),
            "audit + EMF line (one write)": lambda: auditor.write(record),
        },
        n,
    )
    with _cedar_replayed():
        parts.update(
            sample_interleaved({"handler, token cached, Cedar's answer replayed": lambda: interceptor.handle(event)}, n)
        )
    parts.update(_in_place(lambda: interceptor.handle(event), n))
    rate = throughput(lambda: interceptor.handle(event), 2.0 if n >= 2000 else 0.5)
    cedar = warm_stats["limit: Cedar over the tool's own policies"][0]
    rsa = warm_stats["limit: RSA-2048 verify + claims"][0]
    warm_stats["limit, fresh: RSA-2048 verify + claims + Cedar"] = (rsa + cedar, float("nan"))
    return {**warm_stats, **parts}, rate


def _in_place(handle: Callable[[], object], n: int) -> dict[str, Stats]:
    """The handler's calls split in place: the Cedar call timed inside each one, and the rest of the same call.
    Against the hot loops of the limit and of the replayed run, this shows which side pays for sharing the CPU
    caches (the timer around Cedar costs ~0.1 us, counted in Cedar's share)."""
    real = policy.decide
    inside: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        started = time.perf_counter_ns()
        try:
            return real(*args, **kwargs)
        finally:
            inside.append((time.perf_counter_ns() - started) / 1000)

    totals: list[float] = []
    policy.decide = timed
    try:
        for _ in range(min(200, n)):
            handle()
        inside.clear()
        for _ in range(n):
            started = time.perf_counter_ns()
            handle()
            totals.append((time.perf_counter_ns() - started) / 1000)
    finally:
        policy.decide = real
    return {
        "in place: Cedar": _stats(inside),
        "in place: the rest": _stats([total - cedar for total, cedar in zip(totals, inside, strict=True)]),
    }


@contextlib.contextmanager
def _cedar_replayed() -> Iterator[None]:
    """Cedar answers with its first result again, instantly: the handler then costs what the path around Cedar
    costs when Cedar does not run between two calls (compare `_in_place`). Swapped for these samples only."""
    real = policy.decide
    answers: list[list[dict[str, Any]]] = []

    def replay(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if not answers:
            answers.append(real(*args, **kwargs))
        return answers[0]

    policy.decide = replay
    try:
        yield
    finally:
        policy.decide = real


def _rsa_and_claims(issuer: Issuer, token: str) -> Callable[[], object]:
    """The irreducible work on a fresh token: decode signature and payload, one RSA-2048 PKCS#1 v1.5 / SHA-256
    verification over the signing input, and the claim comparisons."""
    key = issuer.signing_key.public_key()
    signing_input, _, signature = token.rpartition(".")
    payload = signing_input.partition(".")[2]
    data = signing_input.encode()

    def check() -> object:
        key.verify(base64.urlsafe_b64decode(signature + "=="), data, padding.PKCS1v15(), hashes.SHA256())
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        now = time.time()
        ok = claims["iss"] == issuer.url and claims["aud"] == issuer.audience and claims["exp"] > now - 30
        assert ok and claims["iat"] <= now + 30 and claims["nbf"] <= now + 30
        return claims

    return check


def tool_lists(
    issuer: Issuer, interceptor: Interceptor, call: Call, tools: list[str], n: int
) -> tuple[dict[str, Stats], int]:
    """RESPONSE handler on a `tools/list` of every tool, by the benchmark caller (7 of the 50 roles, one of them
    granted the benchmark tool): caller's first list and caller's cached list."""
    token = issuer.mint(user="alice", roles=call.roles, traits=call.traits, ttl=4 * 3600)
    listed = [{"name": t, "description": t, "inputSchema": {"type": "object"}} for t in tools]
    body = {"jsonrpc": "2.0", "id": 1, "result": {"tools": listed, "nextCursor": "c"}}
    event = response_event(request_event(rpc("tools/list", {}), token), body)
    lister = interceptor._lister  # private on purpose: the benchmark empties its per-caller cache
    assert isinstance(lister, ToolLister)
    shown = interceptor.handle(event)["mcp"]["transformedGatewayResponse"]["body"]["result"]["tools"]
    assert call.tool in {t["name"] for t in shown}, "the caller sees the tool it may call"

    def first_list() -> object:
        lister._cache.clear()
        return interceptor.handle(event)

    stats = sample_interleaved(
        {
            f"caller's first list of {len(tools):,} tools": first_list,
            f"caller's cached list of {len(tools):,} tools": lambda: interceptor.handle(event),
        },
        max(20, n // 20),
    )
    return stats, len(shown)


# ---------------------------------------------------------------------------------------------------------------
# cold start


_COLD = """
import json, os, resource, sys, time
t0 = time.perf_counter()
import interceptor.wiring  # every dependency of the handler
t1 = time.perf_counter()
import interceptor.app as app  # init: settings, policy load, tool lister
t2 = time.perf_counter()
with open(sys.argv[1]) as f:
    event = json.load(f)
out = app.lambda_handler(event, None)
t3 = time.perf_counter()
try:  # this process's own peak: ru_maxrss also keeps the forking parent's size across exec (Linux)
    with open("/proc/self/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
allowed = "transformedGatewayRequest" in out["mcp"]
with open(sys.argv[2], "w") as f:
    json.dump({"imports": t1 - t0, "init": t2 - t1, "first": t3 - t2, "rss_kb": rss_kb, "allowed": allowed}, f)
"""


def cold_start(issuer: Issuer, folder: Path, tools: int, runs: int) -> Cold:
    """Median of `runs` fresh interpreters: import + init + first request, each on a token never seen."""
    call = bench_call(folder, tools)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "TELEPORT_", "POLICY_"))},
        **settings(issuer, folder),
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "POWERTOOLS_LOG_LEVEL": "INFO",  # as deployed (template.yaml)
    }
    runs_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        event_file, result_file = Path(tmp) / "event.json", Path(tmp) / "result.json"
        for _ in range(runs):
            token = issuer.mint(user="alice", roles=call.roles, traits=call.traits, ttl=4 * 3600)
            event_file.write_text(json.dumps(request_event(tool_call(call.tool, call.arguments), token)))
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", _COLD, str(event_file), str(result_file)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            process_s = time.perf_counter() - started
            result = json.loads(result_file.read_text())
            assert result["allowed"], (
                f"the cold-start call must be allowed; the function logged:\n{done.stdout[-4000:]}"
            )
            result["process"] = process_s
            result["bundle"] = _bundle_status(done.stdout)
            runs_out.append(result)
    return Cold(
        total_ms=_median_ms(runs_out, lambda r: r["imports"] + r["init"] + r["first"]),
        imports_ms=_median_ms(runs_out, lambda r: r["imports"]),
        init_ms=_median_ms(runs_out, lambda r: r["init"]),
        first_request_ms=_median_ms(runs_out, lambda r: r["first"]),
        process_ms=_median_ms(runs_out, lambda r: r["process"]),
        rss_mb=statistics.median(r["rss_kb"] for r in runs_out) / 1024,
        bundle=runs_out[-1]["bundle"],
    )


def _median_ms(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> float:
    return statistics.median(value(r) for r in runs) * 1000


def _bundle_status(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("{") and '"policies loaded"' in line:
            return str(json.loads(line).get("bundle", "-"))
    return "-"


def offline_build(folder: Path) -> float | None:
    """Milliseconds of `teleport-policy build <folder>` when the toolkit has that step (a bundle the function
    loads instead of re-validating); None when it does not, and the cold start then validates in the function."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    probe = subprocess.run(
        [sys.executable, "-m", "policy_toolkit", "build", "--help"], env=env, capture_output=True, check=False
    )
    if probe.returncode != 0:
        return None
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "policy_toolkit", "build", str(folder)], env=env, capture_output=True, check=True
    )
    return (time.perf_counter() - started) * 1000


def serving(env: dict[str, str]) -> Interceptor:
    """The serving interceptor `build` wires from `env` (a generated gateway never makes a broken container)."""
    interceptor = build(env)
    assert isinstance(interceptor, Interceptor), "the generated gateway did not build a serving interceptor"
    return interceptor


def with_session(issuer: Issuer, plain: Interceptor, folder: Path, tools: int, n: int) -> dict[str, Stats]:
    """The warm allowed call without and with a cached per-human AWS session (STS answered by a stand-in)."""
    call = bench_call(folder, tools)
    env = settings(issuer, folder)
    sessions = serving(
        {**env, "SESSION_ROLE_ARN": "arn:aws:iam::123456789012:role/orders-session", "SESSION_TOOLS": call.tool}
    )
    broker = sessions._sessions  # private on purpose: its STS client is replaced by the stand-in
    assert broker is not None
    sts = _FakeSts()
    broker._client = sts
    token = issuer.mint(user="alice", roles=call.roles, traits=call.traits, ttl=4 * 3600)
    event = request_event(tool_call(call.tool, call.arguments), token)
    assert (
        "_teleport_aws_session"
        in sessions.handle(event)["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"]
    )
    stats = sample_interleaved(
        {
            "handler, token cached, no AWS session": lambda: plain.handle(event),
            "handler, token cached, cached AWS session": lambda: sessions.handle(event),
        },
        n,
    )
    assert sts.calls == 1, "the session is minted once and then served from the cache"
    return stats


class _FakeSts:
    """An STS client answering AssumeRole instantly (the benchmark measures the cache, not AWS)."""

    calls = 0

    def assume_role(self, **_: object) -> dict[str, object]:
        self.calls += 1
        expiration = datetime.now(UTC) + timedelta(hours=1)
        return {
            "Credentials": {
                "AccessKeyId": "ASIA",
                "SecretAccessKey": "s",
                "SessionToken": "t",
                "Expiration": expiration,
            }
        }


# ---------------------------------------------------------------------------------------------------------------
# report


def run(sizes: list[tuple[int, int]], n: int, cold_runs: int) -> tuple[list[Result], dict[str, Stats]]:
    issuer = Issuer(ISSUER_URL)
    results: list[Result] = []
    session: dict[str, Stats] = {}
    for policies, tools in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            names = generate(folder, policies, tools)
            plain = cold_start(issuer, folder, tools, 1)
            build_ms = offline_build(folder)
            cold = cold_start(issuer, folder, tools, cold_runs)
            interceptor = serving(settings(issuer, folder))
            warm_stats, rate = warm(issuer, interceptor, folder, tools, n)
            lists, visible = tool_lists(issuer, interceptor, bench_call(folder, tools), names, n)
            if (policies, tools) == MAIN:
                session = with_session(issuer, interceptor, folder, tools, n)
        bundled = build_ms is not None
        results.append(
            Result(policies, tools, cold, warm_stats, rate, lists, visible, build_ms, plain if bundled else None)
        )
        print(f"measured {policies} policies x {tools} tools", file=sys.stderr, flush=True)
    return results, session


def report(results: list[Result], session: dict[str, Stats], n: int, quick: bool) -> str:
    by_size = {(r.policies, r.tools): r for r in results}
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench{' QUICK=1' if quick else ''}` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. Gateways generated by "
        "`benchmarks/generate.py` (50 roles; half role x tool permits, the rest action-group, tool-list, argument "
        "and trait permits, argument forbids and bot forbids). Warm paths: "
        f"{n} calls each, p50 / p99 in microseconds, sampled interleaved with the limit. Cold start: median of "
        "fresh interpreters (pinned JWKS). One run on a shared machine: compare ratios within the run.",
        "",
        "## Targets (issue 10)",
        "",
        "| target | measured | met |",
        "|---|---:|:---:|",
        *_target_rows(by_size),
        "",
        "## Cold start (fresh interpreter: import + init + first allowed call on a new token)",
        "",
        *_cold_table(results),
        "",
        "## Warm allowed `tools/call`",
        "",
        "Limit: Cedar over the tool's own policies through `cedarpy.is_authorized` (cached token); plus RSA-2048 "
        "verification and claim checks (fresh token). Ratio = handler p50 / limit p50. Floor: the extension call "
        "under `cedarpy.is_authorized` alone, which the handler makes itself (see the parts below).",
        "",
        "| gateway | token cached p50 / p99 | limit | ratio | floor | ratio to the floor | token fresh p50 / p99 "
        "| limit | ratio | decisions/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_warm_row(r) for r in results),
        "",
        "Parts (p50, microseconds). Cedar's extension alone: the call under `cedarpy.is_authorized` that the "
        "handler makes itself, with the context already written and the answer not read (the floor below the "
        "limit). The last three columns: the handler with Cedar answering instantly from its first result (the "
        "path around Cedar when Cedar does not run); and the handler's calls split in place, the Cedar call "
        "(`policy.decide`) timed inside each one and the rest of the same call.",
        "",
        "| gateway | token cache hit | token fresh | RSA-2048 + claims | authorization (engine) | Cedar limit "
        "| Cedar's extension alone | audit + EMF line | handler, Cedar's answer replayed | in place: Cedar "
        "| in place: the rest |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_parts_row(r) for r in results),
        "",
        "## Tool lists (RESPONSE handler on a `tools/list` of every tool; caller holds 7 of the 50 roles)",
        "",
        "| gateway | tools visible | caller's first list p50 / p99 (ms) | cached p50 / p99 (ms) |",
        "|---|---:|---:|---:|",
        *(_list_row(r) for r in results),
        "",
    ]
    if session:
        lines += [
            f"AWS session in the human's name ({MAIN[0]:,} x {MAIN[1]:,}, same run): "
            + "; ".join(f"{name} {p50:.0f} us (p99 {p99:.0f})" for name, (p50, p99) in session.items())
            + ".",
            "",
        ]
    return "\n".join(lines)


def _target_rows(by_size: dict[tuple[int, int], Result]) -> list[str]:
    def row(what: str, size: tuple[int, int], value: Callable[[Result], float], limit: float, unit: str) -> str:
        result = by_size.get(size)
        if result is None:
            return f"| {what} | not measured in this run | |"
        measured = value(result)
        places = 2 if unit == "x" else 0 if measured >= 100 else 1  # a ratio just over its limit must read so
        return f"| {what} | {measured:,.{places}f} {unit} | {'yes' if measured <= limit else 'NO'} |"

    def at_least(what: str, size: tuple[int, int], value: Callable[[Result], float], floor: float) -> str:
        result = by_size.get(size)
        if result is None:
            return f"| {what} | not measured in this run | |"
        measured = value(result)
        return f"| {what} | {measured:,.0f} /s | {'yes' if measured >= floor else 'NO'} |"

    return [
        row("cold start <= 300 ms at 1,000 x 500", (1000, 500), lambda r: r.cold.total_ms, 300, "ms"),
        row("cold start <= 1.5 s at 10,000 x 500", (10000, 500), lambda r: r.cold.total_ms, 1500, "ms"),
        row("cold start <= 1.5 s at 1,000 x 5,000", (1000, 5000), lambda r: r.cold.total_ms, 1500, "ms"),
        row("first list of 500 tools <= 5 ms at 1,000 policies", (1000, 500), lambda r: _first(r) / 1000, 5, "ms"),
        row("first list of 500 tools <= 50 ms at 10,000", (10000, 500), lambda r: _first(r) / 1000, 50, "ms"),
        row("warm cached p50 <= 100 us at 1,000 x 500", MAIN, lambda r: r.warm["handler, token cached"][0], 100, "us"),
        row("warm cached <= 2x the limit (1,000 x 500)", MAIN, _cached_ratio, 2, "x"),
        row("warm fresh <= 2.5x the limit (1,000 x 500)", MAIN, _fresh_ratio, 2.5, "x"),
        at_least(">= 10,000 decisions/s (1,000 x 500)", MAIN, lambda r: r.throughput, 10_000),
        row("peak RSS <= 150 MB at 10,000 x 500", (10000, 500), lambda r: r.cold.rss_mb, 150, "MB"),
    ]


def _first(result: Result) -> float:
    return next(v[0] for k, v in result.lists.items() if "first" in k)


def _cached_ratio(result: Result) -> float:
    return result.ratio("handler, token cached", "limit: Cedar over the tool's own policies")


def _fresh_ratio(result: Result) -> float:
    return result.ratio("handler, token fresh", "limit, fresh: RSA-2048 verify + claims + Cedar")


def _cold_table(results: list[Result]) -> list[str]:
    rows = [
        "| gateway | total | imports | init | first request | process wall | peak RSS | policies loaded from "
        "| `teleport-policy build` | total from plain files |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        c = r.cold
        build = f"{r.build_ms:,.0f} ms" if r.build_ms is not None else "(no such step)"
        plain = f"{r.plain.total_ms:,.0f} ms" if r.plain is not None else "(same)"
        cells = [
            f"**{c.total_ms:,.0f} ms**",
            f"{c.imports_ms:,.0f} ms",
            f"{c.init_ms:,.0f} ms",
            f"{c.first_request_ms:,.1f} ms",
            f"{c.process_ms:,.0f} ms",
            f"{c.rss_mb:,.0f} MB",
            f"bundle: {c.bundle}",
            build,
            plain,
        ]
        rows.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return rows


def _warm_row(r: Result) -> str:
    cached, fresh = r.warm["handler, token cached"], r.warm["handler, token fresh"]
    cedar = r.warm["limit: Cedar over the tool's own policies"][0]
    fresh_limit = r.warm["limit, fresh: RSA-2048 verify + claims + Cedar"][0]
    floor = r.warm["Cedar's extension alone"][0]
    return (
        f"| {r.name} | {cached[0]:.0f} / {cached[1]:.0f} | {cedar:.0f} | {_cached_ratio(r):.2f}x "
        f"| {floor:.0f} | {cached[0] / floor:.2f}x "
        f"| {fresh[0]:.0f} / {fresh[1]:.0f} | {fresh_limit:.0f} | {_fresh_ratio(r):.2f}x | {r.throughput:,.0f} |"
    )


def _parts_row(r: Result) -> str:
    names = [
        "token verification, cache hit",
        "token verification, fresh",
        "limit: RSA-2048 verify + claims",
        "authorization (engine)",
        "limit: Cedar over the tool's own policies",
        "Cedar's extension alone",
        "audit + EMF line (one write)",
        "handler, token cached, Cedar's answer replayed",
        "in place: Cedar",
        "in place: the rest",
    ]
    return f"| {r.name} | " + " | ".join(f"{r.warm[name][0]:.1f}" for name in names) + " |"


def _list_row(r: Result) -> str:
    first = next(v for k, v in r.lists.items() if "first" in k)
    cached = next(v for k, v in r.lists.items() if "cached" in k)
    return (
        f"| {r.name} | {r.visible:,} of {r.tools:,} | {first[0] / 1000:.2f} / {first[1] / 1000:.2f} "
        f"| {cached[0] / 1000:.2f} / {cached[1] / 1000:.2f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="CI-sized: three small gateways, fewer iterations")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    for handler in logger.handlers:  # operational logs (warnings only on the warm path) stay off the report
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())
    n = 1000 if args.quick else int(os.environ.get("BENCH_N", "5000"))
    with quiet_stdout():
        results, session = run(QUICK if args.quick else FULL, n, 1 if args.quick else 3)
    text = report(results, session, n, args.quick)
    target = RESULTS if args.write else SCRATCH
    target.parent.mkdir(exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(text)
    print(f"(written to {target.relative_to(ROOT)})", file=sys.stderr)


if __name__ == "__main__":
    main()
