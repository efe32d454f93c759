"""The MCP method table: a written rule for every method a client may send under MCP 2025-06-18, 2025-11-25
and 2026-07-28, so nothing is forwarded because nobody thought of it.

Names match exactly. Anything not in the table (a vendor method, or a look-alike differing in case, whitespace,
control or non-ASCII characters, e.g. `Tools/Call` or `tools/call ` with a trailing space) is refused, as are
methods only a server sends. Methods that reach data by caller-chosen names or arguments that the Cedar model
does not cover are refused unless an administrator lists them in `FORWARD_UNCOVERED_METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from interceptor.reasons import Reason


class Rule(StrEnum):
    """What the interceptor does with a method (every rule first requires a verified token, except REFUSE)."""

    AUTHORIZE = "authorize"  # Cedar decides on the call; the verified identity is stamped into the arguments
    FILTER = "filter"  # forwarded; the RESPONSE keeps only the tools some call could allow this caller
    FORWARD = "forward"  # forwarded; nothing in it is covered by, or needs, a policy decision
    UNCOVERED = "uncovered"  # reaches data the policies do not cover: refused unless FORWARD_UNCOVERED_METHODS
    REFUSE = "refuse"  # never sent by a client (server-to-client messages): always refused


V2025_06 = "2025-06-18"
V2025_11 = "2025-11-25"
V2026_07 = "2026-07-28"
ALL = (V2025_06, V2025_11, V2026_07)
LEGACY = (V2025_06, V2025_11)


@dataclass(frozen=True)
class Method:
    """One row of the table: the rule, the MCP revisions that define the method, and why."""

    rule: Rule
    revisions: tuple[str, ...]
    why: str


METHODS: dict[str, Method] = {
    "tools/call": Method(
        Rule.AUTHORIZE,
        ALL,
        "Cedar decides per tool and arguments; identity stamped; the semantic-search tool's answer is filtered",
    ),
    "tools/list": Method(Rule.FILTER, ALL, "the answer keeps only the tools some call could allow the caller"),
    "initialize": Method(Rule.FORWARD, LEGACY, "lifecycle: versions and capabilities"),
    "ping": Method(Rule.FORWARD, LEGACY, "lifecycle: liveness"),
    "server/discover": Method(Rule.FORWARD, (V2026_07,), "discovery: versions and capabilities"),
    "logging/setLevel": Method(Rule.FORWARD, LEGACY, "the server's log level toward this client"),
    "prompts/list": Method(Rule.FORWARD, ALL, "list method: prompt names and descriptions"),
    "resources/list": Method(Rule.FORWARD, ALL, "list method: resource URIs and descriptions"),
    "resources/templates/list": Method(Rule.FORWARD, ALL, "list method: URI templates"),
    "tasks/get": Method(Rule.FORWARD, (V2025_11, V2026_07), "tasks: state of a task an authorized call started"),
    "tasks/result": Method(Rule.FORWARD, (V2025_11,), "tasks: result of a task an authorized call started"),
    "tasks/list": Method(Rule.FORWARD, (V2025_11,), "tasks: the caller's tasks"),
    "tasks/cancel": Method(Rule.FORWARD, (V2025_11, V2026_07), "tasks: cancel a task"),
    "tasks/update": Method(Rule.FORWARD, (V2026_07,), "tasks: answers to a task's input requests"),
    "notifications/initialized": Method(Rule.FORWARD, LEGACY, "lifecycle notification"),
    "notifications/cancelled": Method(Rule.FORWARD, ALL, "cancels the caller's own request"),
    "notifications/progress": Method(Rule.FORWARD, LEGACY, "progress of a server-to-client request"),
    "notifications/roots/list_changed": Method(Rule.FORWARD, LEGACY, "the client's roots changed"),
    "notifications/tasks/status": Method(Rule.FORWARD, (V2025_11,), "status of a client-side task"),
    "prompts/get": Method(Rule.UNCOVERED, ALL, "renders a caller-chosen prompt with caller-chosen arguments"),
    "resources/read": Method(Rule.UNCOVERED, ALL, "reads a caller-chosen resource URI"),
    "resources/subscribe": Method(Rule.UNCOVERED, LEGACY, "watches a caller-chosen resource URI"),
    "resources/unsubscribe": Method(Rule.UNCOVERED, LEGACY, "the pair of resources/subscribe"),
    "subscriptions/listen": Method(
        Rule.UNCOVERED, (V2026_07,), "may watch caller-chosen resource URIs (the 2026 form of resources/subscribe)"
    ),
    "completion/complete": Method(
        Rule.UNCOVERED, ALL, "completes arguments of a caller-chosen prompt or resource template"
    ),
    "sampling/createMessage": Method(Rule.REFUSE, ALL, "server-to-client request"),
    "elicitation/create": Method(Rule.REFUSE, ALL, "server-to-client request"),
    "roots/list": Method(Rule.REFUSE, ALL, "server-to-client request"),
    "notifications/message": Method(Rule.REFUSE, ALL, "server-to-client notification (log message)"),
    "notifications/resources/updated": Method(Rule.REFUSE, ALL, "server-to-client notification"),
    "notifications/resources/list_changed": Method(Rule.REFUSE, ALL, "server-to-client notification"),
    "notifications/tools/list_changed": Method(Rule.REFUSE, ALL, "server-to-client notification"),
    "notifications/prompts/list_changed": Method(Rule.REFUSE, ALL, "server-to-client notification"),
    "notifications/elicitation/complete": Method(Rule.REFUSE, (V2025_11,), "server-to-client notification"),
    "notifications/subscriptions/acknowledged": Method(Rule.REFUSE, (V2026_07,), "server-to-client notification"),
}

UNCOVERED: frozenset[str] = frozenset(name for name, m in METHODS.items() if m.rule is Rule.UNCOVERED)


def refusal(method: str, forwarded_uncovered: frozenset[str] = frozenset()) -> Reason | None:
    """Why `method` may not pass, or None when it may. `forwarded_uncovered` are the UNCOVERED methods an
    administrator chose to forward (validated against this table at cold start)."""
    row = METHODS.get(method)
    if row is None or row.rule is Rule.REFUSE:
        return Reason.METHOD_UNKNOWN
    if row.rule is Rule.UNCOVERED and method not in forwarded_uncovered:
        return Reason.METHOD_NOT_COVERED
    return None
