"""`make bench`: warm latency of an allowed tools/call and cold init, written to docs/benchmarks.md.

Warm path: the handler on an allowed `tools/call`, split into token verification, Cedar authorization and
the rest (parse, stamp, audit line), at 10 and 100 policies, with Teleport's per-session token reuse
(verified-token cache hit) and with a fresh token every call (full RS256 verification). Tool-list filtering:
the RESPONSE handler on a 500-tool `tools/list` (generated schema, 100 policies in force for the caller), for a
caller seen for the first time and for one whose tools are cached. Cold init: a new interpreter importing
`interceptor.app` (imports + settings + policy load), median of several runs.
Medians and p99 from one run on this machine; compare ratios, not absolute numbers across machines.
"""

from __future__ import annotations

import io
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devtools.gateway import request_event, response_event, rpc, tool_call
from devtools.issuer import Issuer
from interceptor.app import build, logger
from interceptor.config import BUNDLED_POLICY_DIR
from interceptor.listing import ToolLister, could_allow
from interceptor.policy import PolicyEngine
from interceptor.tokens import Identity, TokenVerifier
from policy_toolkit.schema import render

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
TOOLS = ["orders___get_order_tool", "orders___list_my_orders", "orders___update_order", "db___run_query"]


def synthetic_policies(folder: Path, count: int) -> None:
    """The bundled schema plus `count` policies spread over tools, roles and conditions (10 % forbids)."""
    shutil.copy(BUNDLED_POLICY_DIR / "schema.cedarschema", folder)
    lines = []
    for i in range(count - 1):
        tool = TOOLS[i % len(TOOLS)]
        effect = "forbid" if i % 10 == 9 else "permit"
        condition = {
            "orders___get_order_tool": f'context.input.order_id == "{i}"',
            "orders___list_my_orders": "principal.bot",
            "orders___update_order": f'context.input.status == "s{i}"',
            "db___run_query": f'principal.hasTag("db_names") && principal.getTag("db_names").contains("db{i}")',
        }[tool]
        lines.append(
            f'@id("p{i}")\n{effect} (principal in Teleport::Role::"role{i}", '
            f'action == Teleport::Action::"{tool}", resource) when {{ {condition} }};'
        )
    lines.append(
        '@id("developers-read")\npermit (principal in Teleport::Role::"developer", '
        'action in Teleport::Action::"orders", resource);'
    )
    (folder / "bench.cedar").write_text("\n".join(lines))


def sample(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call latencies in microseconds."""
    for _ in range(min(200, n)):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def warm(issuer: Issuer, count: int, n: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_policies(Path(tmp), count)
        env = {"TELEPORT_ISSUER": issuer.url, "TELEPORT_AUDIENCE": issuer.audience, "POLICY_DIR": tmp}
        cached = build(env)
        uncached = build({**env, "TOKEN_CACHE_SIZE": "0"})
        engine = PolicyEngine.load(Path(tmp))
    token = issuer.mint(user="alice", roles=["developer", "role3", "role7"], traits={"db_names": ["db3"]})
    event = request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token)
    assert "transformedGatewayRequest" in cached.handle(event)["mcp"], "benchmark call must be allowed"
    identity = Identity("alice", ("developer", "role3", "role7"), {"db_names": ("db3",)}, issuer.url, 0)
    # Measuring the parts needs the wired verifiers (private on purpose: not an API).
    verifier_cached, verifier_uncached = cached._verifier, uncached._verifier
    assert isinstance(verifier_cached, TokenVerifier) and isinstance(verifier_uncached, TokenVerifier)
    return {
        "handler, token cached": stats(sample(lambda: cached.handle(event), n)),
        "handler, token verified": stats(sample(lambda: uncached.handle(event), n // 4)),
        "token verification (cache hit)": stats(sample(lambda: verifier_cached.verify(token), n)),
        "token verification (RS256 + claims)": stats(sample(lambda: verifier_uncached.verify(token), n // 4)),
        "authorization (Cedar)": stats(
            sample(lambda: engine.authorize(identity, "orders___get_order_tool", {"order_id": "42"}), n)
        ),
    }


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


def with_session(issuer: Issuer, n: int) -> dict[str, tuple[float, float]]:
    """Warm allowed call at 100 policies, without and with a cached per-human AWS session."""
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_policies(Path(tmp), 100)
        env = {"TELEPORT_ISSUER": issuer.url, "TELEPORT_AUDIENCE": issuer.audience, "POLICY_DIR": tmp}
        plain = build(env)
        sts = _FakeSts()
        sessions = build(
            {**env, "SESSION_ROLE_ARN": "arn:aws:iam::123456789012:role/orders-session", "SESSION_TOOLS": "orders___*"}
        )
        broker = sessions._sessions  # wired broker; swap its STS client for the fake
        assert broker is not None
        broker._client = sts
    token = issuer.mint(user="alice", roles=["developer"])
    event = request_event(tool_call("orders___get_order_tool", {"order_id": "42"}), token)
    out = sessions.handle(event)
    assert "_teleport_aws_session" in out["mcp"]["transformedGatewayRequest"]["body"]["params"]["arguments"]
    result = {
        "handler, no AWS session": stats(sample(lambda: plain.handle(event), n)),
        "handler, cached AWS session": stats(sample(lambda: sessions.handle(event), n)),
    }
    assert sts.calls == 1, "the session must be minted once and then served from the cache"
    return result


def synthetic_gateway(folder: Path, targets: int = 10, per_target: int = 50, count: int = 100) -> list[str]:
    """A schema generated from `targets` x `per_target` tool definitions and `count` policies that all apply to a
    caller holding roles r0..r6 (a fifth each: target-wide permits on an argument, tool permits, forbids on an
    argument, permits on a trait, forbids on a trait). Returns the gateway tool names."""
    input_schema = {"type": "object", "properties": {"id": {"type": "string"}, "n": {"type": "integer"}}}
    definitions = {
        f"t{t}": [{"name": f"tool{i}", "inputSchema": input_schema} for i in range(per_target)] for t in range(targets)
    }
    (folder / "schema.cedarschema").write_text(render(definitions))
    tools = [f"{target}___{d['name']}" for target, defs in definitions.items() for d in defs]
    trait = 'principal.hasTag("team") && principal.getTag("team").contains("t{i}")'
    shapes = [
        'permit (principal in Teleport::Role::"r{r}", action in Teleport::Action::"t{t}", resource)\n'
        'when {{ context.input has id && context.input.id == "x{i}" }};',
        'permit (principal in Teleport::Role::"r{r}", action == Teleport::Action::"{tool}", resource);',
        'forbid (principal, action == Teleport::Action::"{tool}", resource)\n'
        "when {{ context.input has n && context.input.n > {i} }};",
        'permit (principal, action == Teleport::Action::"{tool}", resource) when {{ {trait} }};',
        'forbid (principal in Teleport::Role::"r{r}", action == Teleport::Action::"{tool}", resource)\n'
        "when {{ {trait} }};",
    ]
    lines = [
        f'@id("p{i}")\n'
        + shapes[i % len(shapes)].format(
            i=i, r=i % 7, t=i % targets, tool=tools[(i * 37) % len(tools)], trait=trait.format(i=i)
        )
        for i in range(count)
    ]
    (folder / "bench.cedar").write_text("\n".join(lines))
    return tools


def listing(issuer: Issuer, n: int) -> tuple[dict[str, tuple[float, float]], float, int]:
    """tools/list filtering at 500 tools x 100 policies: (timings, lister init ms, tools the caller sees)."""
    roles = [f"r{i}" for i in range(7)]
    traits = {"team": [f"t{i}" for i in range(0, 100, 3)]}
    with tempfile.TemporaryDirectory() as tmp:
        tools = synthetic_gateway(Path(tmp))
        interceptor = build({"TELEPORT_ISSUER": issuer.url, "TELEPORT_AUDIENCE": issuer.audience, "POLICY_DIR": tmp})
        engine = PolicyEngine.load(Path(tmp))
    started = time.perf_counter()
    ToolLister(engine, "bench")
    init_ms = (time.perf_counter() - started) * 1000
    token = issuer.mint(user="alice", roles=roles, traits=traits)
    listed = [{"name": t, "description": t, "inputSchema": {"type": "object"}} for t in tools]
    body = {"jsonrpc": "2.0", "id": 1, "result": {"tools": listed, "nextCursor": "c"}}
    event = response_event(request_event(rpc("tools/list", {}), token), body)
    lister = interceptor._lister  # private on purpose: the benchmark empties its per-caller cache
    assert isinstance(lister, ToolLister)
    out = interceptor.handle(event)
    shown = out["mcp"]["transformedGatewayResponse"]["body"]["result"]["tools"]
    identity = Identity("alice", tuple(roles), {"team": tuple(traits["team"])}, issuer.url, 0)
    reference = {t for t in tools if could_allow(engine.partially_evaluate(identity, t))}
    assert {t["name"] for t in shown} == reference, "the benchmark must filter exactly as per-tool evaluation"

    def new_caller() -> object:
        lister._cache.clear()
        return interceptor.handle(event)

    def rule_only() -> object:
        lister._cache.clear()
        return lister.visible(identity)

    timings = {
        "tools/list of 500 tools, caller's first list (handler)": stats(sample(new_caller, n // 4)),
        "tools/list of 500 tools, caller's tools cached (handler)": stats(
            sample(lambda: interceptor.handle(event), n // 4)
        ),
        "listing rule for 500 tools, one Cedar evaluation (no cache)": stats(sample(rule_only, n // 4)),
        "reference: one partial evaluation per tool (500 Cedar calls)": stats(
            sample(lambda: [could_allow(engine.partially_evaluate(identity, t)) for t in tools], 20)
        ),
    }
    return timings, init_ms, len(shown)


def cold_init(issuer: Issuer, runs: int = 7) -> tuple[float, float]:
    """Median wall time of a fresh interpreter importing the handler module, and of the policy load alone."""
    code = (
        "import time; t=time.perf_counter(); import interceptor.app as a; t1=time.perf_counter(); "
        "from interceptor.policy import PolicyEngine; from interceptor.config import BUNDLED_POLICY_DIR; "
        "t2=time.perf_counter(); PolicyEngine.load(BUNDLED_POLICY_DIR); "
        "print((t1-t)*1000, (time.perf_counter()-t2)*1000)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}",
        "TELEPORT_ISSUER": issuer.url,
        "TELEPORT_AUDIENCE": issuer.audience,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    totals, loads = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        total, load = map(float, out.stdout.split())
        totals.append(total)
        loads.append(load)
    return statistics.median(totals), statistics.median(loads)


def main() -> None:
    for handler in logger.handlers:  # audit lines are still formatted and written, to a sink
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())
    n = int(os.environ.get("BENCH_N", "4000"))
    rows = []
    with Issuer().serve() as issuer:
        for count in (10, 100):
            for name, (median, p99) in warm(issuer, count, n).items():
                rows.append(f"| {count} | {name} | {median:.1f} | {p99:.1f} |")
        for name, (median, p99) in with_session(issuer, n).items():
            rows.append(f"| 100 | {name} | {median:.1f} | {p99:.1f} |")
        list_timings, lister_init_ms, shown = listing(issuer, n)
        for name, (median, p99) in list_timings.items():
            rows.append(f"| 100 | {name} | {median:.1f} | {p99:.1f} |")
        init_ms, load_ms = cold_init(issuer)
    text = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Measured by `make bench` on {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; {n} iterations (a quarter for "
            "full RS256 paths). Medians and p99 in microseconds from one run; the machine is shared, so compare "
            "rows with each other rather than across runs.",
            "",
            "| policies | path | median (us) | p99 (us) |",
            "|---:|---|---:|---:|",
            *rows,
            "",
            f"Cold init (fresh interpreter, `import interceptor.app`: imports, settings, policy load; no JWKS fetch): "
            f"median **{init_ms:.0f} ms**; of which loading and validating the bundled policies: {load_ms:.1f} ms.",
            "",
            f"Tool-list filtering: 500 tools in a generated schema (10 targets), 100 policies all in force for the "
            f"caller, who sees {shown} of the 500. What filtering prepares at init for this set (policy syntax "
            f"trees, the widened policy set, one schema probe per listable tool) takes {lister_init_ms:.0f} ms.",
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
