"""`make fuzz`: a seeded property/fuzz run of the interceptor handler (README "Fuzzing").

The handler is built as the Lambda builds it (`wiring.build`, with the pinned JWKS of a development key), then
fed mutated REQUEST and RESPONSE events: structure (keys dropped or given wrong types), tokens (truncated,
padded, segments swapped, `alg: none`, other keys), headers (case, duplicates, non-strings), ids, method
look-alikes, arguments (reserved names in any case, non-finite numbers, deep nesting, huge strings), MCP
2026-07-28 requests with their `Mcp-*` headers (right, wrong, missing, repeated, encoded) and upstream caching
hints. Each event goes to one of three handlers, AGENT_MODE off, optional and required (the agent policies of
devtools/agents next to the repository's), and may carry an agent token header: valid JWT-SVIDs, invalid ones
(expired, another key, another gateway's audience, an agent the patterns do not admit, a user's ID token, `none`),
mutated, repeated or empty. Every answer is checked against the invariants the gateway and the security model
depend on (`check`). Violations are printed without token material; the exit status is 1 when there is any.

    python -m devtools.fuzz [--events 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt

from devtools import agents
from devtools.issuer import TRUST_DOMAIN, Issuer, new_ec_key, new_key
from interceptor.audit import Auditor
from interceptor.logs import SERVICE
from interceptor.methods import METHODS
from interceptor.pipeline import Handler
from interceptor.reasons import Reason
from interceptor.wiring import build

ISSUER = "https://teleport.example.com"
AUDIENCE = "mcp+https://gateway.example.com/mcp"
SPOOF = "mallory"  # the only value the generator sends under reserved names: it must never be forwarded
STAMPED = frozenset({"_teleport_user", "_teleport_roles"})
AGENT_ARG = "_teleport_agent"  # stamped only on delegated calls, and only with the verified agent
AGENT_HEADER = "X-Teleport-Agent-Token"
ORDERS_AGENT = f"spiffe://{TRUST_DOMAIN}/agents/orders-assistant"
HR_AGENT = f"spiffe://{TRUST_DOMAIN}/agents/hr-assistant"
OUTSIDE_AGENT = f"spiffe://{TRUST_DOMAIN}/tools/scraper"
AGENT_PATTERNS = f"spiffe://{TRUST_DOMAIN}/agents/*"
MODES = ("off", "optional", "required")
OUTCOMES = frozenset(r.value for r in Reason)
CLOUDWATCH_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch Logs counts 26 bytes of overhead per event
TOOLS = ("orders___get_order_tool", "orders___list_my_orders", "orders___update_order", "db___run_query")
SEARCH_TOOL = "x_amz_bedrock_agentcore_search"
USERS = (("alice", ["developer"], None), ("carol", ["order-admin"], None), ("dana", ["db-reader"], ["sales"]))
ACTING = {"erin": ORDERS_AGENT}  # a user whose ID token names its acting agent (RFC 8693 act)
RESERVED_SPELLINGS = (
    "_teleport_user",
    "_TELEPORT_USER",
    "_Teleport_Roles",
    "_teleport_aws_session",
    "_teleport_",
    "_teleport_agent",
    "_Teleport_Agent",
)
META_IDENTITY_SPELLINGS = ("sh.teleport/identity", "SH.TELEPORT/IDENTITY", "Sh.Teleport/Identity")
V2026 = "2026-07-28"
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
MAX_FILTERED_TTL_MS = 60_000
UPSTREAM_HINTS: tuple[dict[str, Any], ...] = (
    {},
    {"ttlMs": 300_000, "cacheScope": "public"},
    {"resultType": "complete", "ttlMs": 5, "cacheScope": "public"},
    {"ttlMs": -1, "cacheScope": "private"},
)


# ---------------------------------------------------------------------------------------------------------------
# capture: the one place that knows how audit records and operational logs are collected


@dataclass
class Capture:
    """Audit lines (exact JSON text) and operational log records written since the last `take()`."""

    audit: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def write_audit(self, line: str) -> None:
        self.audit.append(line)

    def take(self) -> tuple[list[str], list[str]]:
        audit, logs = self.audit, self.logs
        self.audit, self.logs = [], []
        return audit, logs


class _LogCollector(logging.Handler):
    def __init__(self, capture: Capture) -> None:
        super().__init__(logging.DEBUG)
        self._capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # renders the traceback into record.exc_text, which is checked too
        self._capture.logs.append(json.dumps(record.__dict__, default=str))


@contextmanager
def captured(env: dict[str, str]) -> Iterator[tuple[Handler, Capture]]:
    """A handler built like the Lambda's, with its audit lines and operational logs captured (and kept off
    stdout for the run)."""
    capture = Capture()
    service = logging.getLogger(SERVICE)
    saved = service.handlers[:]
    collector = _LogCollector(capture)
    service.handlers[:] = [collector]
    try:
        yield build(env, Auditor(capture.write_audit)), capture
    finally:
        service.handlers[:] = saved


# ---------------------------------------------------------------------------------------------------------------
# tokens


@dataclass(frozen=True)
class Tokens:
    """Valid tokens by user, and invalid ones (expired, other key, alg none, HS256, other audience); valid agent
    tokens (JWT-SVIDs) by SPIFFE ID, and invalid ones."""

    valid: dict[str, str]
    invalid: tuple[str, ...]
    roles: dict[str, list[str]]
    agents: dict[str, str] = field(default_factory=dict)
    invalid_agents: tuple[str, ...] = ()

    @classmethod
    def mint(cls, issuer: Issuer) -> Tokens:
        valid: dict[str, str] = {}
        roles: dict[str, list[str]] = {}
        for user, user_roles, dbs in USERS:
            traits = {"logins": [user], **({"db_names": dbs} if dbs else {})}
            valid[user] = issuer.mint(user=user, roles=user_roles, traits=traits, ttl=6 * 3600)
            roles[user] = user_roles
        for user, actor in ACTING.items():
            valid[user] = issuer.mint(user=user, roles=["order-admin"], ttl=6 * 3600, act={"sub": actor})
            roles[user] = ["order-admin"]
        claims = issuer.claims(user="alice", ttl=6 * 3600)
        invalid = (
            issuer.mint(user="alice", ttl=-3600),
            issuer.mint(key=new_key(), user="carol"),
            jwt.encode(claims, "", algorithm="none"),
            jwt.encode(claims, "k" * 32, algorithm="HS256"),
            issuer.mint(user="alice", aud="mcp+https://other.example.com/mcp"),
        )
        svid = issuer.workload
        agent_tokens = {agent: svid.mint(agent=agent, ttl=3600) for agent in (ORDERS_AGENT, HR_AGENT)}
        invalid_agents = (
            svid.mint(agent=ORDERS_AGENT, ttl=-3600),
            svid.mint(agent=ORDERS_AGENT, key=new_ec_key()),
            svid.mint(agent=ORDERS_AGENT, aud="mcp+https://other-gateway.example.com/mcp"),
            svid.mint(agent=OUTSIDE_AGENT, ttl=3600),
            svid.mint(agent=ORDERS_AGENT, ttl=7200),  # longer than AGENT_MAX_LIFETIME_SECONDS
            jwt.encode(svid.claims(agent=ORDERS_AGENT), "", algorithm="none"),
            valid["carol"],  # a user's ID token in the agent's header
        )
        return cls(valid, invalid, roles, agent_tokens, invalid_agents)

    def user_of(self, token: str) -> str | None:
        for user, valid in self.valid.items():
            if token == valid:
                return user
        return None

    def agent_of(self, token: str) -> str | None:
        for agent, valid in self.agents.items():
            if token == valid:
                return agent
        return None


def _mutate_token(rng: random.Random, token: str, other: str) -> str:
    head, payload, signature = token.split(".")
    cut = rng.randrange(1, len(token))
    return rng.choice(
        [
            token + "=",
            token + "==",
            token[:cut],
            f"{head}.{payload}.{other.split('.')[2]}",
            f"{payload}.{head}.{signature}",
            f"{head}.{payload}.",
            f"{head}.{payload}.{signature}.{signature}",
            token.upper(),
            token[:cut] + "\u00e9" + token[cut:],
            token[:cut] + "+" + token[cut + 1 :],
            token[:cut] + "\u0000" + token[cut:],
            f"{head}.{payload}.{signature[:-2]}",
        ]
    )


# ---------------------------------------------------------------------------------------------------------------
# events


def _lookalike(rng: random.Random, method: str) -> str:
    i = rng.randrange(len(method))
    return rng.choice(
        [
            method[:i] + method[i].swapcase() + method[i + 1 :],
            method.upper(),
            method + " ",
            " " + method,
            method + "\n",
            method + "\u0000",
            method + "\u200b",
            method.replace("/", "\u2215"),
            method.replace("/", "//"),
            method.replace("/", "\\"),
            method.replace("o", "\u043e"),  # Cyrillic o
            method[:i] + "\u0301" + method[i:],
            method.replace("/", "%2F"),
            "\uff54" + method[1:],  # fullwidth first letter
        ]
    )


WEIRD_IDS: tuple[Any, ...] = (
    True,
    False,
    1.5,
    1.0,
    [1],
    {"a": 1},
    "\ud800",
    "a\udfffb",
    "x" * 100_000,
    2**64,
    -(10**30),
    10**5000,
    "\u00e9\U0001f680",
    "",
    0,
)


BAD_STATUSES: tuple[Any, ...] = (0, -1, 99, 600, 10**30, "200", True, 200.0)


def _deep(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for n in range(levels):
        value = [value] if n % 2 else {"d": value}
    return value


def _weird(rng: random.Random) -> Any:
    return rng.choice(
        [
            float("inf"),
            float("-inf"),
            float("nan"),
            "\ud800",
            "ok\udc00",
            "y" * rng.choice([1000, 300_000]),
            _deep(rng.choice([62, 63, 64, 65, 200, 5000, 30_000])),
            10**5000,
            {"nested": [float("nan")]},
            2**63,
        ]
    )


def _wrong_type(rng: random.Random) -> Any:
    return rng.choice([0, -1, "", "x", [], {}, None, True, 1.5, [[]], {"": None}, "\ud800", float("nan")])


def _arguments(rng: random.Random, tool: str) -> dict[str, Any]:
    by_tool: dict[str, dict[str, Any]] = {
        "orders___get_order_tool": {"order_id": "42"},
        "orders___list_my_orders": {"status": "pending", "limit": 3},
        "orders___update_order": {"order_id": "42", "status": rng.choice(["shipped", "lost"])},
        "db___run_query": {"database": rng.choice(["sales", "hr"]), "query": "select 1"},
    }
    valid = by_tool.get(tool, {"q": "x"})
    if rng.random() < 0.2:
        valid = {**valid, rng.choice(["extra", "n", "\u00fc"]): rng.choice([1, "v", None, 2.5, [1]])}
    return valid


def _params(rng: random.Random, method: str) -> dict[str, Any] | None:
    if method == "tools/call":
        tool = rng.choice([*TOOLS, *TOOLS, SEARCH_TOOL, "payroll___pay", "orders"])
        return {"name": tool, "arguments": _arguments(rng, tool)}
    by_method: dict[str, dict[str, Any]] = {
        "tools/list": rng.choice([{}, {"cursor": "c-1"}]),
        "initialize": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c"}},
        "prompts/get": {"name": "greet", "arguments": {"who": "bob"}},
        "resources/read": {"uri": "file:///etc/hosts"},
        "completion/complete": {
            "ref": {"type": "ref/prompt", "name": "greet"},
            "argument": {"name": "a", "value": "b"},
        },
    }
    return by_method.get(method, rng.choice([None, {}, {"x": 1}]))


def _spoof(rng: random.Random, params: dict[str, Any]) -> None:
    """Caller-sent identity under reserved names, in any case, in the arguments and `_meta`."""
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.6:
            arguments = params.setdefault("arguments", {})
            if isinstance(arguments, dict):
                arguments[rng.choice(RESERVED_SPELLINGS)] = rng.choice([SPOOF, [SPOOF], {"u": SPOOF}])
        else:
            meta = params.setdefault("_meta", {})
            name = rng.choice([*RESERVED_SPELLINGS, *META_IDENTITY_SPELLINGS])
            meta[name] = {"user": SPOOF, "roles": ["order-admin"]}


def _method(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.5:
        return "tools/call"
    if roll < 0.6:
        return "tools/list"
    if roll < 0.8:
        return rng.choice(sorted(METHODS))
    if roll < 0.95:
        return _lookalike(rng, rng.choice(["tools/call", "tools/list", "initialize", "notifications/initialized"]))
    return rng.choice(["x-vendor/thing", "", None, 7, ["tools/call"], "tools/call" * 30_000])


def _body(rng: random.Random, method: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if not (isinstance(method, str) and method.startswith("notifications/")) or rng.random() < 0.1:
        body["id"] = rng.choice(WEIRD_IDS) if rng.random() < 0.08 else rng.choice([1, 7, 2**40, "call-7", "q"])
    params = _params(rng, method) if isinstance(method, str) else None
    if params is not None:
        if rng.random() < 0.3:
            params["_meta"] = {"progressToken": 1, VERSION_KEY: V2026}
        if rng.random() < 0.35:
            _spoof(rng, params)
        if rng.random() < 0.08:
            target = params["arguments"] if isinstance(params.get("arguments"), dict) else params
            target[rng.choice(["w", "order_id", "_meta"])] = _weird(rng)
        body["params"] = params
    return body


def _headers(rng: random.Random, tokens: Tokens) -> Any:
    roll = rng.random()
    if roll < 0.7:
        token = rng.choice(list(tokens.valid.values()))
    elif roll < 0.85:
        token = rng.choice(tokens.invalid)
    else:
        valid = list(tokens.valid.values())
        token = _mutate_token(rng, rng.choice(valid), rng.choice(valid))
    headers: dict[str, Any] = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": "session-1"}
    if rng.random() < 0.25:
        name = rng.choice(["authorization", "AUTHORIZATION", "aUtHoRiZaTiOn", "Authorization "])
        mutation = rng.choice(["rename", "duplicate", "scheme", "value", "session", "drop", "whitespace"])
        if mutation == "rename":
            headers[name] = headers.pop("Authorization")
        elif mutation == "duplicate":
            headers[name] = headers["Authorization"]
        elif mutation == "scheme":
            headers["Authorization"] = rng.choice(["bearer ", "BEARER ", "Basic ", "Bearer", ""]) + token
        elif mutation == "value":
            headers["Authorization"] = rng.choice([0, None, [f"Bearer {token}"], {"v": token}, True])
        elif mutation == "session":
            headers["Mcp-Session-Id"] = rng.choice(["\ud800", "s p", "z" * 300_000, 5, "\u00e9"])
        elif mutation == "drop":
            del headers["Authorization"]
        else:
            headers["Authorization"] = f"  Bearer\t{token}  "
    if rng.random() < 0.04:
        return rng.choice([0, [], "", None, [["Authorization", token]], "MISSING"])
    return headers


def _agent_header(rng: random.Random, tokens: Tokens) -> dict[str, Any]:
    """An agent token header: a valid JWT-SVID, an invalid one, a mutated one, or a malformed header."""
    roll = rng.random()
    valid = list(tokens.agents.values())
    if roll < 0.5:
        token = rng.choice(valid)
    elif roll < 0.75:
        token = rng.choice(tokens.invalid_agents)
    else:
        token = _mutate_token(rng, rng.choice(valid), rng.choice(valid))
    name = rng.choice([AGENT_HEADER, AGENT_HEADER.lower(), AGENT_HEADER.upper()])
    value: Any = rng.choice([f"Bearer {token}", token, f"bearer {token}"])
    if rng.random() < 0.1:
        return rng.choice(
            [
                {name: value, AGENT_HEADER.lower() + " ": value, AGENT_HEADER.swapcase(): value},
                {name: rng.choice(["", "Bearer", [value], 7, None, f"Bearer {token} {token}"])},
            ]
        )
    return {name: value}


def _mcp_headers(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    """The MCP headers a client of the body's era sends, now and then wrong (another method or name, one missing,
    one repeated in another case, an invalid encoding) or validly base64-encoded."""
    method, params = body.get("method"), body.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if (
        not isinstance(method, str)
        or not isinstance(params, dict)
        or not isinstance(meta, dict)
        or VERSION_KEY not in meta
    ):
        return {"MCP-Protocol-Version": rng.choice(LEGACY_VERSIONS)} if rng.random() < 0.3 else {}
    headers: dict[str, Any] = {"MCP-Protocol-Version": V2026, "Mcp-Method": method}
    name = params.get(NAMED_BY.get(method, ""))
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    mutation = rng.choice(["none"] * 6 + ["method", "name", "drop", "repeat", "base64", "param", "bad-param"])
    if mutation == "method":
        headers["Mcp-Method"] = rng.choice(["tools/list", "tools/call", method.upper()])
    elif mutation == "name":
        headers["Mcp-Name"] = rng.choice(TOOLS)
    elif mutation == "drop":
        del headers[rng.choice(sorted(headers))]
    elif mutation == "repeat":
        key = rng.choice(sorted(headers))
        headers[key.lower()] = headers[key]
    elif mutation == "base64" and isinstance(name, str):
        headers["Mcp-Name"] = f"=?base64?{base64.b64encode(name.encode()).decode()}?="
    elif mutation in ("param", "bad-param"):
        headers["Mcp-Param-Region"] = "eu" if mutation == "param" else "=?base64?%?="
    return headers


def _response_body(rng: random.Random, body: dict[str, Any]) -> Any:
    rpc_id = body.get("id")
    names = rng.sample([*TOOLS, "payroll___pay", "x" * 2000, SEARCH_TOOL], rng.randint(0, 5))
    tools: list[Any] = [{"name": n, "inputSchema": {"type": "object"}} for n in names]
    if rng.random() < 0.1:
        tools.append(rng.choice([{"name": 5}, "orders___get_order_tool", {}, None]))
    params = body.get("params")
    if body.get("method") == "tools/call" and isinstance(params, dict) and params.get("name") == SEARCH_TOOL:
        result: Any = {
            "content": [{"type": "text", "text": json.dumps({"tools": tools})}],
            **rng.choice(UPSTREAM_HINTS),
        }
        if rng.random() < 0.1:
            result = {"resultType": "input_required", "inputRequests": {"q": {}}, "requestState": "s"}
    elif body.get("method") == "tools/list":
        result = {"tools": tools, "nextCursor": "n", **rng.choice(UPSTREAM_HINTS)}
    else:
        result = {"content": [{"type": "text", "text": "done"}]}
    roll = rng.random()
    if "id" not in body and roll < 0.5:
        return None
    if roll < 0.08:
        return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32603, "message": "target failed"}}
    answer: Any = {"jsonrpc": "2.0", "id": rpc_id, "result": result}
    if roll < 0.16:
        answer["result"]["w"] = _weird(rng)
    elif roll < 0.2:
        answer = _text(answer)
    elif roll < 0.22:
        answer = rng.choice(["not json", "[" * 30_000 + "]" * 30_000, [answer], 5])
    return answer


def _text(value: Any) -> Any:
    """`value` as JSON text, or `value` itself when JSON text cannot hold it (too deep, too long an integer)."""
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return value


def _string_body(rng: random.Random, body: dict[str, Any]) -> Any:
    """The body as the JSON text some gateways send, now and then with non-strict or deeply nested text."""
    text = _text(body)
    if not isinstance(text, str):
        return body
    if rng.random() < 0.5:
        return text
    return rng.choice(
        [
            text.replace('"2.0"', '"2.0", "n": NaN', 1),
            text.replace('"2.0"', '"2.0", "n": -Infinity', 1),
            text.replace('"2.0"', '"2.0", "n": 1e400', 1),
            text.replace('"2.0"', '"2.0", "n": ' + "[" * 20_000 + "]" * 20_000, 1),
            text[: rng.randrange(len(text))],
            f"[{text}]",
        ]
    )


def _mutate_structure(rng: random.Random, event: Any) -> Any:
    """Drop a key or give it a value of the wrong type somewhere in the envelope (not deep in payloads)."""
    if rng.random() < 0.05:
        return _wrong_type(rng)
    spots: list[tuple[dict[str, Any], str]] = []
    stack: list[tuple[Any, int]] = [(event, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict) and depth < 5:
            for key, child in list(node.items())[:20]:
                spots.append((node, key))
                stack.append((child, depth + 1))
    if spots:
        parent, key = rng.choice(spots)
        if rng.random() < 0.4:
            del parent[key]
        else:
            parent[key] = _wrong_type(rng)
    return event


def make_event(rng: random.Random, tokens: Tokens) -> Any:
    """One fuzzed interceptor event (a REQUEST, or with 25% chance a RESPONSE)."""
    body = _body(rng, _method(rng))
    headers = _headers(rng, tokens)
    if isinstance(headers, dict):
        headers.update(_mcp_headers(rng, body))
        if rng.random() < 0.6:
            headers.update(_agent_header(rng, tokens))
    gateway_request: dict[str, Any] = {"path": "/mcp", "httpMethod": "POST"}
    if headers != "MISSING":
        gateway_request["headers"] = headers
    gateway_request["body"] = _string_body(rng, body) if rng.random() < 0.15 else body
    event: Any = {"interceptorInputVersion": "1.0", "mcp": {"gatewayRequest": gateway_request}}
    if rng.random() < 0.25:
        status = rng.choice([200, 202, 500, 100, 599, None]) if rng.random() < 0.85 else rng.choice(BAD_STATUSES)
        response: Any = {"statusCode": status, "headers": {}, "body": _response_body(rng, body)}
        if status is None:
            del response["statusCode"]
        event["mcp"]["gatewayResponse"] = response if rng.random() > 0.03 else rng.choice([[], "", 0, True])
    if rng.random() < 0.1:
        event = _mutate_structure(rng, event)
    return event


# ---------------------------------------------------------------------------------------------------------------
# invariants (computed independently of the code under test: the oracle must not share its bugs)


def _part(event: Any, name: str) -> Any:
    """`event["mcp"][name]`, or None when the envelope does not lead there."""
    mcp = event.get("mcp") if isinstance(event, dict) else None
    return mcp.get(name) if isinstance(mcp, dict) else None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def readable_id(event: Any) -> Any:
    """The JSON-RPC id an answer must echo: the body's id when the body can be read strictly and the id is a
    string or integer that can be written back; otherwise None."""
    body = _request_body(event)
    rpc_id = body.get("id") if body is not None else None
    if isinstance(rpc_id, bool) or not isinstance(rpc_id, str | int) or not _strict(rpc_id):
        return None
    return rpc_id


def authentic_user(event: Any, tokens: Tokens) -> str | None:
    """The user whose valid, unmodified token is the event's one bearer credential (None: no such token)."""
    request = _part(event, "gatewayRequest")
    headers = request.get("headers") if isinstance(request, dict) else None
    if not isinstance(headers, dict):
        return None
    values = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    parts = values[0].split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return tokens.user_of(parts[1])


def authentic_agent(event: Any, tokens: Tokens) -> tuple[bool, str | None]:
    """(whether the event carries an agent token header, the agent whose valid unmodified JWT-SVID is its one
    value: None when there is no such token)."""
    request = _part(event, "gatewayRequest")
    headers = request.get("headers") if isinstance(request, dict) else None
    if not isinstance(headers, dict):
        return False, None
    values = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == AGENT_HEADER.lower()]
    if not values:
        return False, None
    if len(values) != 1 or not isinstance(values[0], str):
        return True, None
    parts = values[0].split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return True, tokens.agent_of(parts[1])
    return True, tokens.agent_of(parts[0]) if len(parts) == 1 else None


def _agent_problems(mode: str, agent_sent: bool, agent: str | None, user: str | None) -> list[str]:
    """What may pass with each AGENT_MODE: required needs a valid agent token; optional refuses an agent header
    it cannot verify; an ID token naming its acting agent needs that agent's token (agent modes only)."""
    if mode == "required" and agent is None:
        return ["agent: passed in required mode without a valid agent token"]
    if mode == "optional" and agent_sent and agent is None:
        return ["agent: passed with an agent header that does not verify"]
    if mode != "off" and user in ACTING and agent != ACTING[user]:
        return ["agent: passed although the ID token's act names another agent"]
    return []


def _strict(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        return False
    return True


def _token_material(event: Any, tokens: Tokens) -> list[str]:
    """The token and signature texts of this event's headers, plus every valid token's: never to be echoed."""
    needles = [t for valid in (*tokens.valid.values(), *tokens.agents.values()) for t in (valid, valid.split(".")[2])]
    request = _part(event, "gatewayRequest")
    headers = request.get("headers") if isinstance(request, dict) else None
    for value in headers.values() if isinstance(headers, dict) else ():
        for part in value.split() if isinstance(value, str) else ():
            needles.extend(p for p in (part, part.rsplit(".", 1)[-1]) if len(p) >= 20 and "." in part)
    return needles


def _is_response_phase(event: Any) -> bool:
    return _part(event, "gatewayResponse") is not None


def _request_body(event: Any) -> dict[str, Any] | None:
    """The request body as the interceptor must read it (JSON text parsed strictly), or None."""
    request = _part(event, "gatewayRequest")
    body = request.get("body") if isinstance(request, dict) else None
    if isinstance(body, str):
        try:
            body = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return None
    return body if isinstance(body, dict) else None


def _request_method(event: Any) -> Any:
    body = _request_body(event)
    return body.get("method") if body is not None else None


def _mcp_header_values(event: Any) -> dict[str, list[Any]]:
    """The event's `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` values by lower-case name."""
    request = _part(event, "gatewayRequest")
    headers = request.get("headers") if isinstance(request, dict) else None
    found: dict[str, list[Any]] = {}
    for key, value in headers.items() if isinstance(headers, dict) else ():
        if isinstance(key, str) and key.lower() in ("mcp-protocol-version", "mcp-method", "mcp-name"):
            found.setdefault(key.lower(), []).append(value)
    return found


def _modern(event: Any) -> bool:
    """A 2026-07-28 request: `_meta` carries the version, or (not `initialize`) the header names no legacy one."""
    body = _request_body(event) or {}
    params = body.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if body.get("method") == "initialize":
        return False
    if isinstance(meta, dict) and VERSION_KEY in meta:
        return True
    return any(v not in LEGACY_VERSIONS for v in _mcp_header_values(event).get("mcp-protocol-version", []))


def _unsound_headers(event: Any) -> bool:
    """Whether the event's MCP headers disagree with its body (so it must never be forwarded)."""
    body = _request_body(event) or {}
    method, params = body.get("method"), body.get("params")
    named = params.get(NAMED_BY[method]) if isinstance(params, dict) and method in NAMED_BY else None
    found = _mcp_header_values(event)
    if any(len(values) != 1 or not isinstance(values[0], str) for values in found.values()):
        return True
    value = {name: _decoded(values[0]) for name, values in found.items()}
    if "mcp-method" in value and value["mcp-method"] != method:
        return True
    return "mcp-name" in value and value["mcp-name"] != named


def _decoded(value: str) -> str | None:
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except ValueError:
            return None
    return value


def _result_problems(event: Any, inner: Any, response_phase: bool) -> list[str]:
    """Results we write are valid in the request's era; a filtered list is never shareable."""
    if not isinstance(inner, dict):
        return []
    result, modern = inner.get("result"), _modern(event)
    if _ours(inner) and "error" in inner and "result" in inner:
        return ["era: a JSON-RPC error carries a result"]
    if _ours(inner) and isinstance(result, dict) and result.get("resultType") != ("complete" if modern else None):
        return ["era: our tool result's resultType does not fit the request's protocol version"]
    if response_phase and _request_method(event) == "tools/list" and isinstance(result, dict) and "tools" in result:
        if not modern and ("cacheScope" in result or "ttlMs" in result):
            return ["cache: a filtered legacy list carries caching hints"]
        ttl = result.get("ttlMs")
        private = result.get("cacheScope") == "private"
        if modern and not (private and isinstance(ttl, int) and 0 <= ttl <= MAX_FILTERED_TTL_MS):
            return ["cache: a filtered list is not private with a capped ttlMs"]
    return []


def _shape(out: Any, response_phase: bool, bare_ok: bool) -> tuple[str, Any] | str:
    """(kind, inner) of a well-formed output, or what is wrong with it; `bare_ok`: the event is the bodiless
    RESPONSE to a notification, the one case for the bare `{"interceptorOutputVersion": "1.0"}`."""
    if not isinstance(out, dict) or out.get("interceptorOutputVersion") != "1.0":
        return "no interceptorOutputVersion 1.0"
    keys = set(out) - {"interceptorOutputVersion"}
    if not keys:
        return ("bare", None) if bare_ok else "bare output for an event that needs an answer"
    if len(keys) != 1 or not keys <= {"mcp", "http"} or not isinstance(out[next(iter(keys))], dict):
        return f"top-level keys {sorted(keys)}"
    inner = out[next(iter(keys))]
    if set(inner) == {"transformedGatewayRequest"}:
        forward = inner["transformedGatewayRequest"]
        if response_phase or not isinstance(forward, dict) or not {"body"} <= set(forward) <= {"body", "headers"}:
            return "malformed or misplaced transformedGatewayRequest"
        headers = forward.get("headers", {})
        if not isinstance(headers, dict) or any(str(k).lower() == "authorization" for k in headers):
            return "forwarded headers are not an object without Authorization"
        if not isinstance(forward["body"], dict):
            return "forwarded body is not an object"
        return "forward", forward["body"]
    if set(inner) != {"transformedGatewayResponse"}:
        return f"inner keys {sorted(inner)}"
    answer = inner["transformedGatewayResponse"]
    if not isinstance(answer, dict) or set(answer) != {"statusCode", "body"}:
        return "transformedGatewayResponse is not exactly statusCode and body"
    status = answer["statusCode"]
    if type(status) is not int or not 100 <= status <= 599:
        return "statusCode is not an integer in 100-599"
    return "answer", answer["body"]


def _ours(body: Any) -> bool:
    """An answer the interceptor wrote (its texts end with the reason code)."""
    if not isinstance(body, dict):
        return False
    error, result = body.get("error"), body.get("result")
    if isinstance(error, dict):
        return "(reason: " in str(error.get("message"))
    return isinstance(result, dict) and result.get("isError") is True and "(reason: " in json.dumps(result)


def _reserved_problems(body: dict[str, Any], user: str | None, tokens: Tokens, agent: str | None) -> list[str]:
    """`agent`: the verified agent the interceptor may stamp (None: none may be stamped)."""
    problems = []
    if SPOOF in json.dumps(body, ensure_ascii=False):
        problems.append("a caller-sent identity value was forwarded")
    params = body.get("params")
    arguments = params.get("arguments") if isinstance(params, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    call = body.get("method") == "tools/call"
    stamped_names = STAMPED | ({AGENT_ARG} if agent is not None else set())
    for name in arguments if isinstance(arguments, dict) else ():
        if name.casefold().startswith("_teleport_") and not (call and name in stamped_names):
            problems.append("a reserved argument name was forwarded")
    if call and isinstance(arguments, dict):
        stamped = (arguments.get("_teleport_user"), arguments.get("_teleport_roles"), arguments.get(AGENT_ARG))
        if user is None or stamped != (user, tokens.roles[user], agent):
            problems.append("the stamped identity is not the verified one")
        identity = meta.get("sh.teleport/identity") if isinstance(meta, dict) else None
        if isinstance(identity, dict) and identity.get("agent") != agent:
            problems.append("the _meta identity does not name the verified agent, or names an unverified one")
    if isinstance(meta, dict) and any(name.casefold().startswith("_teleport_") for name in meta):
        problems.append("a reserved _meta name was forwarded")
    return problems


def check(
    event: Any,
    out: Any,
    audit: list[str],
    logs: list[str],
    tokens: Tokens,
    rpc_id: Any,
    user: str | None,
    *,
    mode: str = "off",
    agent: tuple[bool, str | None] = (False, None),
) -> list[str]:
    """Every invariant on one answer; `rpc_id`, `user` and `agent` (`authentic_agent`) are computed from the event
    before it was handled; `mode` is the handler's AGENT_MODE."""
    agent_sent, verified_agent = agent
    problems: list[str] = []
    response_phase = _is_response_phase(event)
    gateway_response = _part(event, "gatewayResponse")
    bare_ok = isinstance(gateway_response, dict) and gateway_response.get("body") is None
    shape = _shape(out, response_phase, bare_ok)
    if isinstance(shape, str):
        return [f"shape: {shape}"]
    kind, inner = shape
    if not _strict(out):
        problems.append("strict-json: the answer is not strict JSON in UTF-8")
    if kind == "forward":
        if user is None:
            problems.append("forward-without-token: forwarded without the valid unmodified token")
        if _unsound_headers(event):
            problems.append("headers: forwarded although its MCP headers disagree with the body")
        problems.extend(_agent_problems(mode, agent_sent, verified_agent, user))
        stampable = verified_agent if mode != "off" else None
        problems.extend(f"reserved: {p}" for p in _reserved_problems(inner, user, tokens, stampable))
    if kind == "answer" and _ours(inner) and inner.get("id") != rpc_id:
        problems.append("id-echo: the answer does not echo the readable id (or echoes an unreadable one)")
    if kind == "answer":
        problems.extend(_result_problems(event, inner, response_phase))
    if kind == "answer" and response_phase and _request_method(event) == "tools/list":
        problems.extend(_shown_list_problems(inner, user, mode, agent))
    text = json.dumps(out, ensure_ascii=False, default=str)
    for needle in _token_material(event, tokens):
        if any(needle in t for t in (text, *audit, *logs)):
            problems.append("token-leak: token material in the answer or the logs")
            break
    problems.extend(_audit_problems(audit))
    return problems


def _shown_list_problems(inner: Any, user: str | None, mode: str, agent: tuple[bool, str | None]) -> list[str]:
    """A tool list shown to a caller needs what a forwarded call needs: the valid token, and the agent rules."""
    result = inner.get("result") if isinstance(inner, dict) else None
    if not isinstance(result, dict) or not result.get("tools"):
        return []
    if user is None:
        return ["forward-without-token: a tool list reached a caller without a valid token"]
    return [f"{p} (a tool list)" for p in _agent_problems(mode, *agent, user)]


def _audit_problems(audit: list[str]) -> list[str]:
    if len(audit) != 1:
        return [f"audit: {len(audit)} audit records for one event"]
    line = audit[0]
    if len(line.encode("utf-8", "replace")) > CLOUDWATCH_EVENT_BYTES:
        return ["audit: the audit line exceeds a CloudWatch event"]
    try:
        record = json.loads(line)["audit"]
        line.encode("utf-8")
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        return ["audit: the audit line is not one JSON object in UTF-8"]
    return [] if record.get("reason") in OUTCOMES else ["audit: the record has no known reason"]


# ---------------------------------------------------------------------------------------------------------------
# runs


@dataclass
class Report:
    """What one run did: events, seconds, answers by audit reason, violations (event number, invariant)."""

    events: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0
    violations: list[tuple[int, str]] = field(default_factory=list)


def run(events: int, seed: int, progress: Callable[[int], None] | None = None) -> Report:
    """Fuzz `events` events from `seed` through freshly built handlers, one per AGENT_MODE; returns the report."""
    rng = random.Random(seed)
    issuer = Issuer(ISSUER, AUDIENCE)
    tokens = Tokens.mint(issuer)
    base = {"TELEPORT_ISSUER": ISSUER, "TELEPORT_AUDIENCE": AUDIENCE, "TELEPORT_JWKS": json.dumps(issuer.jwks())}
    report = Report()
    started = time.perf_counter()
    with agents.policy_folder() as folder, ExitStack() as stack:
        handlers = {}
        for mode in MODES:
            env = {
                **base,
                "POLICY_DIR": str(folder),
                "AGENT_MODE": mode,
                "AGENT_ID_PATTERNS": AGENT_PATTERNS,
                "AGENT_JWKS": json.dumps(issuer.workload.jwks()),
            }
            handlers[mode] = stack.enter_context(captured(env))
        for _, capture in handlers.values():
            capture.take()
        for n in range(1, events + 1):
            event = make_event(rng, tokens)
            mode = rng.choice(MODES)
            interceptor, capture = handlers[mode]
            rpc_id, user, agent = readable_id(event), authentic_user(event, tokens), authentic_agent(event, tokens)
            try:
                out = interceptor.handle(event, f"fuzz-{n}")
            except Exception as exc:  # an invariant violation in itself: the handler must never raise
                report.violations.append((n, f"exception: {type(exc).__name__}"))
                capture.take()
                continue
            audit, logs = capture.take()
            found = check(event, out, audit, logs, tokens, rpc_id, user, mode=mode, agent=agent)
            report.violations.extend((n, f"{p} [AGENT_MODE={mode}]") for p in found)
            report.forwarded += "transformedGatewayRequest" in out.get("mcp", {})
            for line in audit[:1]:
                report.outcomes[str(json.loads(line)["audit"].get("reason"))] += 1
            if progress is not None and n % 10_000 == 0:
                progress(n)
    report.events, report.seconds = events, time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events to send (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    report = run(args.events, args.seed, lambda n: print(f"  {n} events", file=sys.stderr, flush=True))
    rate = report.events / report.seconds if report.seconds else 0.0
    print(f"fuzz: {report.events} events, seed {args.seed}, {report.seconds:.1f} s ({rate:.0f} events/s)")
    print(
        f"forwarded: {report.forwarded}; outcomes: " + ", ".join(f"{k} {v}" for k, v in report.outcomes.most_common())
    )
    for n, violation in report.violations[:50]:
        print(f"  event {n}: {violation}")
    print(f"violations: {len(report.violations)}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
