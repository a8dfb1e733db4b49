"""What the client reads from the ingest API, and what it hands the agent's code.

Answers are decoded leniently (unknown fields ignored, unknown control types skipped): a newer
server must not break an older client. Events go out as plain dicts, encoded with msgspec.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Registered(msgspec.Struct, kw_only=True):
    """``POST /api/ingest/runs``'s answer (201 new, 200 already registered)."""

    run_id: str
    lease_seconds: float
    last_n: int = 0
    status: str = "running"


class Answer(msgspec.Struct, kw_only=True):
    """An events answer or a controls page: the run's pending controls and its status (and, for
    events, the last ``n`` the run has stored)."""

    run_id: str = ""
    last_n: int = 0
    controls: list[dict[str, Any]] = msgspec.field(default_factory=list)
    cursor: int = 0
    status: str = "running"


class Problem(msgspec.Struct, kw_only=True):
    """An error body: ``{status_code, detail, code}`` (and ``expected_n`` with ``409 gap``; a run's
    part refused ``rate_limited`` or ``unavailable`` may say in ``retry_after`` when to send it again)."""

    status_code: int = 0
    detail: str = ""
    code: str = ""
    expected_n: int | None = None
    retry_after: float | None = None


class Result(msgspec.Struct, kw_only=True):
    """One run's part of a multi-run events answer: what it accepted, or why it refused it."""

    run_id: str
    accepted: Answer | None = None
    error: Problem | None = None


class Results(msgspec.Struct, kw_only=True):
    """``POST /api/ingest/events``'s answer: a result per run, in the order sent."""

    results: list[Result] = msgspec.field(default_factory=list)


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """A person's answer to ``run.request_approval``: ``approved`` says whether to call the tool,
    with ``arguments`` (maybe edited); otherwise ``message`` is what to tell the model instead."""

    decision: Literal["approved", "denied", "expired"]
    approval_id: str
    arguments: Any = None
    message: str | None = None

    @property
    def approved(self) -> bool:
        return self.decision == "approved"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A steering message a person sent to the run (``mode="interrupt"``: cut the current answer)."""

    text: str
    mode: Literal["queue", "interrupt"] = "queue"


TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

_registered = msgspec.json.Decoder(Registered)
_answer = msgspec.json.Decoder(Answer)
_problem = msgspec.json.Decoder(Problem)
_results = msgspec.json.Decoder(Results)
encode = msgspec.json.Encoder().encode


def registered(body: bytes) -> Registered:
    return _registered.decode(body)


def answer(body: bytes) -> Answer:
    return _answer.decode(body)


def results(body: bytes) -> Results:
    return _results.decode(body)


def problem(body: bytes) -> Problem:
    """The error body, or an empty one if the body is not runwatch's (a proxy's page)."""
    try:
        return _problem.decode(body)
    except msgspec.DecodeError:
        return Problem()
