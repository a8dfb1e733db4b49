"""One run's link to the server, on the engine's loop: registration, its part of the client's
batches, and its controls.

Events: the client's one sender (``sender.py``) takes the run's waiting events into its *part*,
numbered, and posts it with every other run's; the part stays here until the server has it.
Its result: stored (the part is dropped up to ``last_n``); ``409 gap`` (sent again from the ``n``
expected); no answer, a 5xx or a 429 (sent again as it was, the same ``n``, after a backoff of 50 ms
doubling to 2 s: the server skips what it already stored, so each event is stored exactly once);
another refusal (reported and dropped: sending it again could not help, and its numbers go to the
next events).

Controls come with every answer to the run's part. A run quiet for ``QUIET`` (nothing sent or
waiting) long-polls them too, so that a cancel reaches an idle agent at once; each control is
handled once (by ``c``) and then acknowledged with ``after``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from runwatch.client import wire
from runwatch.client.engine import POLL_WAIT, Engine
from runwatch.client.outbox import BATCH_BYTES, BATCH_EVENTS, Budget, Outbox
from runwatch.client.wire import Decision, Message

if TYPE_CHECKING:
    from runwatch.client.sender import Sender


class ClientError(Exception):
    """A request the server refused or could not answer (in ``rw.errors``, never raised at the agent
    except by a registration the server refuses)."""

    def __init__(self, what: str, status: int = 0, code: str = "", detail: str = "") -> None:
        super().__init__(" ".join(x for x in (f"{what}:", str(status or ""), code, detail) if x))
        self.status, self.code, self.detail = status, code, detail


class Cancelled(Exception):
    """A person cancelled the run: raised by ``run.raise_if_cancelled()`` and by a pending
    ``request_approval``; leaving the run's block with it ends the run ``cancelled``."""


#: Retries wait from 50 ms, doubling, up to 2 s.
BACKOFF_FIRST, BACKOFF_MOST = 0.05, 2.0
#: A run with nothing sent or waiting for this long (seconds) long-polls its controls.
QUIET = 0.25
#: The status of a run the server said had ended (``409 already_finished``) before it told how.
FINISHED = "finished"


def retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class Link:
    """A run as the engine sees it. Thread-safe where it says so; the rest runs on the loop."""

    def __init__(self, engine: Engine, sender: Sender, budget: Budget, registration: dict[str, Any]) -> None:
        self.engine = engine
        self.sender = sender
        self.registration = registration
        self.outbox = Outbox(budget)
        self.run_id: str | None = None
        self.status = "running"
        self.lease = 30.0
        self.registered = concurrent.futures.Future[str]()
        self.on_cancelled: Callable[[], None] = lambda: None
        #: Whether a cancel came: an approval asked after it fails at once.
        self.cancel_seen = False
        self.on_message: Callable[[Message], None] = lambda message: None
        self.messages: collections.deque[Message] = collections.deque()  # appended here, taken by the run
        self.taken = 0
        #: Taken from the outbox, numbered, not yet stored: sent again as it is (with more after it).
        self.part: list[dict[str, Any]] = []
        self.part_sizes: list[int] = []
        #: No sooner than this (monotonic) is a part refused with a retryable error sent again.
        self.retry_at = 0.0
        self.delay = BACKOFF_FIRST
        #: When a request last carried the run (renewing its lease), and last carried its events.
        self.posted_at = self.active_at = time.monotonic()
        self._budget = budget
        self._approvals: dict[str, concurrent.futures.Future[Decision]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: asyncio.Task[None] | None = None
        self._polls_refused = False

    # -- from any thread

    def approval(self, approval_id: str) -> concurrent.futures.Future[Decision]:
        """The future a person's decision on ``approval_id`` resolves (made before the request is sent)."""
        future = concurrent.futures.Future[Decision]()
        self._approvals[approval_id] = future
        if self.cancel_seen:  # (set before the approvals are failed: one of the two fails this one)
            _fail(future)
        return future

    # -- on the loop

    async def start(self) -> None:
        """Register (retrying until it is answered); then the sender carries the run's events."""
        self._tasks = [asyncio.create_task(self._register())]

    async def _register(self) -> None:
        body = wire.encode(self.registration)
        async for _ in _backoff():
            try:
                r = await self._http.post("/api/ingest/runs", content=body)
            except httpx.TransportError as e:
                self.engine.report(e)
                continue
            if r.status_code in (200, 201):
                got = wire.registered(r.content)
                self.run_id, self.lease, self.status = got.run_id, got.lease_seconds, got.status
                self.outbox.next_n = got.last_n + 1
                self.registered.set_result(got.run_id)
                self.sender.add(self)
                return
            problem = wire.problem(r.content)
            error = ClientError("register", r.status_code, problem.code, problem.detail)
            self.engine.report(error)
            if not retryable(r.status_code):
                self.registered.set_exception(error)
                return

    @property
    def _http(self) -> httpx.AsyncClient:
        assert self.engine.http is not None
        return self.engine.http

    @property
    def in_flight(self) -> bool:
        """Whether a request carrying the run's part awaits its answer (the outbox knows it too:
        while it does, a first event there need not wake the sender)."""
        return self.outbox.held

    @in_flight.setter
    def in_flight(self, value: bool) -> None:
        self.outbox.held = value

    @property
    def ended(self) -> bool:
        return self.status in wire.TERMINAL or self.status == FINISHED

    # -- the run's part of the sender's requests

    def fill(self, most: int) -> bytes:
        """Add waiting events to the part (up to ``most`` more, and the part's bounds); the run's
        entry of a request, encoded."""
        room = min(most, BATCH_EVENTS - len(self.part))
        room_bytes = BATCH_BYTES - sum(self.part_sizes)
        if room > 0 and room_bytes > 0 and len(self.outbox):
            events, sizes = self.outbox.take(room, room_bytes, at_least_one=not self.part)
            self.part += events
            self.part_sizes += sizes
        return wire.encode({"run_id": self.run_id, "events": self.part, "after": self.taken})

    def sent(self, now: float) -> None:
        self.in_flight = True
        self.posted_at = now
        if self.part:
            self.active_at = now

    def answered(self, result: wire.Result) -> None:
        """Act on the server's result for the run's part."""
        if result.accepted is not None:
            self.delay = BACKOFF_FIRST
            self._stored(result.accepted.last_n)
            self._handle(result.accepted)
            return
        problem = result.error or wire.Problem(code="no_result")
        self.engine.report(ClientError("post events", problem.status_code, problem.code, problem.detail))
        if problem.code == "gap" and problem.expected_n is not None and self.part:
            self._after_gap(problem.expected_n)
        elif problem.code == "already_finished":
            self.status = FINISHED
            self.drop()
        elif retryable(problem.status_code) or not problem.status_code:
            self.retry_at = time.monotonic() + max(self.delay, problem.retry_after or 0.0)
            self.delay = min(self.delay * 2, BACKOFF_MOST)
        else:
            self.drop(reuse_n=True)

    def _stored(self, last_n: int) -> None:
        kept = next((i for i, e in enumerate(self.part) if e["n"] > last_n), len(self.part))
        self._budget.give_back(sum(self.part_sizes[:kept]))
        del self.part[:kept], self.part_sizes[:kept]

    def _after_gap(self, expected: int) -> None:
        """After a ``409 gap`` that expects ``expected``: the part's events past it, if some were
        stored already; all of them renumbered from it, if an earlier part was refused (and its
        numbers were never used)."""
        if expected > self.part[0]["n"]:
            self._stored(expected - 1)
            return
        for n, event in enumerate(self.part, expected):
            event["n"] = n
        self.outbox.next_n = expected + len(self.part)

    def drop(self, reuse_n: bool = False) -> None:
        """Give the part up (``reuse_n``: the server stored none of it, so its numbers go to the next events)."""
        if reuse_n and self.part:
            self.outbox.next_n = self.part[0]["n"]
        self._budget.give_back(sum(self.part_sizes))
        self.part, self.part_sizes = [], []

    def discard(self) -> None:
        """Give up everything the run holds (it is stopped)."""
        self.drop()
        self._budget.give_back(self.outbox.clear())

    # -- controls

    def keep_polling(self, now: float) -> float:
        """Start the long poll if the run is quiet (the sender found nothing to send of it) and
        none is waiting; when to look again (``inf``: not before the run sends again)."""
        if self._poller is not None or self._polls_refused or self.ended:
            return math.inf
        if now < self.active_at + QUIET:
            return self.active_at + QUIET
        self._poller = asyncio.create_task(self._poll())
        return math.inf

    def _quiet(self) -> bool:
        busy = self.in_flight or self.part or len(self.outbox) or time.monotonic() < self.active_at + QUIET
        return not busy and not self.ended

    async def _poll(self) -> None:
        """Long-poll the run's controls while it is quiet (each poll renews the lease too)."""
        assert self.engine.polls is not None
        url = f"/api/ingest/runs/{self.run_id}/controls"
        wait = min(POLL_WAIT, max(1.0, self.lease / 2))
        delay = BACKOFF_FIRST
        try:
            while self._quiet():
                try:
                    r = await self.engine.polls.get(url, params={"after": self.taken, "wait": wait})
                except httpx.TransportError as e:
                    self.engine.report(e)
                else:
                    if r.status_code == 200:
                        self._handle(wire.answer(r.content))
                        delay = BACKOFF_FIRST
                        continue
                    problem = wire.problem(r.content)
                    self.engine.report(ClientError("poll controls", r.status_code, problem.code, problem.detail))
                    if not retryable(r.status_code):
                        self._polls_refused = True
                        return
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MOST)
        finally:
            self._poller = None

    def _handle(self, answer: wire.Answer) -> None:
        """Act on each control not handled yet, in order."""
        self.status = answer.status
        for control in answer.controls:
            c = control.get("c", 0)
            if c <= self.taken:
                continue
            kind = control.get("type")
            if kind == "cancel":
                self._cancel_approvals()
                self.on_cancelled()
            elif kind == "approval":
                self._decided(control)
            elif kind == "message":
                message = msgspec.convert(control, Message, strict=False)
                self.messages.append(message)
                self.on_message(message)
            self.taken = c

    def _cancel_approvals(self) -> None:
        """A cancel ends every wait for a person: each pending ``request_approval`` raises it."""
        self.cancel_seen = True
        approvals, self._approvals = self._approvals, {}
        for future in approvals.values():
            _fail(future)

    def _decided(self, control: dict[str, Any]) -> None:
        decision = msgspec.convert(control, Decision, strict=False)
        future = self._approvals.pop(decision.approval_id, None)
        if future is not None and not future.done():
            future.set_result(decision)

    async def flush(self) -> None:
        """Return once every event handed over so far is stored (or refused); at once for a run
        never started (never entered: it sends nothing)."""
        if self._tasks:
            await self.sender.flush(self)

    async def finish(self) -> None:
        """Once every event is stored (or refused), stop."""
        await self.flush()
        await self.stop()

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sender.remove(self)


def _fail(future: concurrent.futures.Future[Decision]) -> None:
    """A person's decision that will never come: the run was cancelled."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(Cancelled())


async def _backoff(first: float = BACKOFF_FIRST, most: float = BACKOFF_MOST) -> AsyncIterator[None]:
    """Yield at once, then after waits doubling from ``first`` to ``most``, forever."""
    delay = first
    yield
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 2, most)
        yield
