"""Generated gateways for `make bench`: a tool schema and a policy set in the README's Cedar model, at any scale.

Model (issue 10): 50 roles `r0..r49`; tools spread over targets (25 tools per target up to 100 targets, the
AgentCore per-gateway target limit; more tools per target beyond that: 50 tools = 2 x 25, 500 = 20 x 25,
5,000 = 100 x 50). Policies cycle through a fixed 40-slot mix so every size, even 10, has every shape:
half role x tool permits, action-group permits (`action in Teleport::Action::"<target>"`), permits on a list of
tools (`action in [...]`), permits on an argument (`context.input has x && ...`), permits on a trait
(`principal.hasTag / getTag`), forbids on an argument and forbids for bots. Roles, tools and constants come from
`random.Random(seed)`, so a seed names one policy set. Every policy is valid against the generated schema in
strict mode (argument conditions only name arguments the tool declares).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from interceptor.policy import TOOL_SEPARATOR
from policy_toolkit.schema import render

ROLES = 50
TOOLS_PER_TARGET = 25
MAX_TARGETS = 100
TEAMS = 20

# Input schemas, cycled over tools; each declares optional arguments that the argument conditions test.
_SHAPES: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"id": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["id"],
    },
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "env": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["id"],
    },
    {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "dry_run": {"type": "boolean"}},
        "required": ["query"],
    },
]

# One condition per optional argument; `{n}` is filled with a per-policy constant.
_ARGUMENT_CONDITIONS: dict[str, str] = {
    "limit": "context.input has limit && context.input.limit <= {n}",
    "env": 'context.input has env && context.input.env == "env{n}"',
    "tags": 'context.input has tags && context.input.tags.contains("tag{n}")',
    "dry_run": "context.input has dry_run && context.input.dry_run",
}

# The 40-slot mix: 20 role x tool, 4 group, 4 list, 5 argument, 4 trait permits; 2 argument forbids, 1 bot forbid.
_MIX: tuple[str, ...] = (
    *("tool", "group", "tool", "list", "tool", "argument", "tool", "trait", "forbid", "bot"),
    *("tool", "group", "tool", "list", "tool", "argument", "tool", "trait", "tool", "argument"),
    *("tool", "group", "tool", "list", "tool", "argument", "tool", "trait", "forbid", "tool"),
    *("tool", "group", "tool", "list", "tool", "argument", "tool", "trait", "tool", "tool"),
)


def layout(tools: int) -> list[tuple[str, int]]:
    """(target name, number of tools) for a gateway of `tools` tools, spread evenly over the targets."""
    targets = max(1, min(MAX_TARGETS, round(tools / TOOLS_PER_TARGET)))
    base, extra = divmod(tools, targets)
    return [(f"target{t:02d}", base + (1 if t < extra else 0)) for t in range(targets)]


def definitions(tools: int) -> dict[str, list[dict[str, Any]]]:
    """Target -> MCP tool definitions (bare tool names, as a target's `tools/list` gives them)."""
    out: dict[str, list[dict[str, Any]]] = {}
    index = 0
    for target, count in layout(tools):
        out[target] = []
        for i in range(count):
            out[target].append({"name": f"tool{i:03d}", "inputSchema": _SHAPES[index % len(_SHAPES)]})
            index += 1
    return out


def _policy(kind: str, rng: random.Random, tools: list[str], shapes: dict[str, dict[str, Any]]) -> str:
    role = f'principal in Teleport::Role::"r{rng.randrange(ROLES)}"'
    tool = rng.choice(tools)
    action = f'action == Teleport::Action::"{tool}"'
    if kind == "tool":
        return f"permit ({role}, {action}, resource);"
    if kind == "group":
        target = tool.split(TOOL_SEPARATOR, 1)[0]
        return f'permit ({role}, action in Teleport::Action::"{target}", resource);'
    if kind == "list":
        listed = ", ".join(f'Teleport::Action::"{t}"' for t in sorted(set(rng.sample(tools, min(len(tools), 4)))))
        return f"permit ({role}, action in [{listed}], resource);"
    if kind == "trait":
        team = f"team{rng.randrange(TEAMS)}"
        return (
            f"permit (principal, {action}, resource)\n"
            f'when {{ principal.hasTag("team") && principal.getTag("team").contains("{team}") }};'
        )
    if kind == "bot":
        return f"forbid (principal, {action}, resource)\nwhen {{ principal.bot }};"
    argument = rng.choice(sorted(a for a in shapes[tool]["properties"] if a in _ARGUMENT_CONDITIONS))
    condition = _ARGUMENT_CONDITIONS[argument].format(n=rng.randrange(1, 100))
    effect = "forbid" if kind == "forbid" else "permit"
    return f"{effect} ({role}, {action}, resource)\nwhen {{ {condition} }};"


def generate(folder: Path, policies: int, tools: int, seed: int = 0) -> list[str]:
    """Write `schema.cedarschema` and `generated.cedar` (`policies` policies over `tools` tools) into `folder`;
    return the gateway tool names (`<target>___<tool>`) in schema order."""
    defs = definitions(tools)
    (folder / "schema.cedarschema").write_text(render(defs), encoding="utf-8")
    shapes = {f"{target}{TOOL_SEPARATOR}{d['name']}": d["inputSchema"] for target, ds in defs.items() for d in ds}
    names = list(shapes)
    rng = random.Random(seed)
    text = "\n\n".join(f'@id("g{i}")\n' + _policy(_MIX[i % len(_MIX)], rng, names, shapes) for i in range(policies))
    (folder / "generated.cedar").write_text(text + "\n", encoding="utf-8")
    return names
