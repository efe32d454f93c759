"""The interceptor's exceptions: one root, one refusal, one collection of problems (PyJWT's single root,
`jwt/exceptions.py`, is the model).

- `Refusal(reason, detail)`: this request is refused with `reason` (the client-facing answer, `reasons.ANSWERS`);
  `detail` is for the logs and the audit record only, never the token or argument values. Raised by bearer
  extraction and token verification (`tokens.py`), key loading (`keys.py`: `idp_unavailable`), event parsing
  (`contract.MalformedEvent`, which adds the id to echo), tool-list filtering (`listing.py`), AWS sessions
  (`aws_session.py`) and the pipeline itself; the handler turns every one into the gateway's answer.
- `Problems(problems)`: a container that cannot serve (settings, the policy set), with every problem found, so one
  deploy fixes them all; `reason` is what each request is then refused with.
"""

from __future__ import annotations

from typing import ClassVar

from interceptor.reasons import Reason


class InterceptorError(Exception):
    """Root of every exception the interceptor raises on purpose."""


class Refusal(InterceptorError):
    """Stop and answer with `reason`; `detail` says why, for operators (logs and audit), never to the caller.
    `hint`, when given, is a fixed phrase the caller may read after the reason's message (what exactly failed, in
    words a person can act on; never input): the agent token's refusals say which check failed this way."""

    def __init__(self, reason: Reason, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.hint = hint


class Problems(InterceptorError):
    """One or more problems that keep the container from serving (each named, for the logs; values never echoed
    to callers). Every request is then refused with `reason`."""

    reason: ClassVar[Reason] = Reason.MISCONFIGURED

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
