"""One run's link to the server, on the engine's loop: registration, batches, heartbeats, controls.

Batches: the first event wakes the sender, which waits ``linger`` (25 ms) for more — consecutive
tokens coalesce meanwhile — or until ``batch`` (256) events wait, then posts. A batch that gets no
answer, or a 5xx / 429, is posted again as it was (the same ``n``) with exponential backoff (50 ms
doubling to 2 s): the server skips what it already stored, so each event is stored exactly once. A
refusal (another 4xx) is reported and the batch dropped: sending it again could not help. With
nothing to send for a third of the lease, an empty batch (a heartbeat) renews the lease.

Controls come with every events answer and from a long poll; each is handled once (by ``c``) and
then acknowledged with ``after``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec

from runwatch.client import wire
from runwatch.client.engine import POLL_WAIT, Engine
from runwatch.client.outbox import Budget, Outbox
from runwatch.client.wire import Decision, Message


class ClientError(Exception):
    """A request the server refused or could not answer (in ``rw.errors``, never raised at the agent
    except by a registration the server refuses)."""

    def __init__(self, what: str, status: int = 0, code: str = "", detail: str = "") -> None:
        super().__init__(f"{what}: {status} {code} {detail}".strip())
        self.status, self.code, self.detail = status, code, detail


class Cancelled(Exception):
    """A person cancelled the run: raised by ``run.raise_if_cancelled()`` and by a pending
    ``request_approval``; leaving the run's block with it ends the run ``cancelled``."""


#: Retries wait from 50 ms, doubling, up to 2 s.
BACKOFF_FIRST, BACKOFF_MOST = 0.05, 2.0


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class Link:
    """A run as the engine sees it. Thread-safe where it says so; the rest runs on the loop."""

    def __init__(self, engine: Engine, budget: Budget, registration: dict[str, Any], linger: float) -> None:
        self.engine = engine
        self.registration = registration
        self.linger = linger
        self.outbox = Outbox(budget, self._wake_threadsafe)
        self.run_id: str | None = None
        self.status = "running"
        self.registered = concurrent.futures.Future[str]()
        self.on_cancelled: Callable[[], None] = lambda: None
        self.messages: collections.deque[Message] = collections.deque()  # appended here, taken by the run
        self.taken = 0
        self._budget = budget
        self._approvals: dict[str, concurrent.futures.Future[Decision]] = {}
        self._lease = 30.0
        self._wake = asyncio.Event()
        self._sent = asyncio.Condition()
        self._in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- from any thread

    def _wake_threadsafe(self) -> None:
        self.engine.call(self._wake.set)

    def approval(self, approval_id: str) -> concurrent.futures.Future[Decision]:
        """The future a person's decision on ``approval_id`` resolves (made before the request is sent)."""
        future = concurrent.futures.Future[Decision]()
        self._approvals[approval_id] = future
        return future

    # -- on the loop

    async def start(self) -> None:
        """Register (retrying until it is answered), then send and poll until stopped."""
        self._tasks = [asyncio.create_task(self._run())]

    async def _run(self) -> None:
        if not await self._register():
            return
        self._tasks.append(asyncio.create_task(self._poll()))
        await self._send_forever()

    async def _register(self) -> bool:
        body = wire.encode(self.registration)
        async for _ in _backoff():
            try:
                r = await self._http.post("/api/ingest/runs", content=body)
            except httpx.TransportError as e:
                self.engine.report(e)
                continue
            if r.status_code in (200, 201):
                got = wire.registered(r.content)
                self.run_id, self._lease, self.status = got.run_id, got.lease_seconds, got.status
                self.outbox.next_n = got.last_n + 1
                self.registered.set_result(got.run_id)
                return True
            problem = wire.problem(r.content)
            error = ClientError("register", r.status_code, problem.code, problem.detail)
            self.engine.report(error)
            if not _retryable(r.status_code):
                self.registered.set_exception(error)
                return False
        return False

    @property
    def _http(self) -> httpx.AsyncClient:
        assert self.engine.http is not None
        return self.engine.http

    async def _send_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._lease / 3)
            except TimeoutError:
                await self._post([])  # a heartbeat
                continue
            self._wake.clear()
            if len(self.outbox) < self.outbox.batch:
                await asyncio.sleep(self.linger)  # let tokens coalesce and more events come
            while len(self.outbox):
                events, size = self.outbox.take()
                self._in_flight += 1
                try:
                    await self._post(events)
                finally:
                    self._in_flight -= 1
                    self._budget.give_back(size)
                async with self._sent:
                    self._sent.notify_all()

    async def _post(self, events: list[dict[str, Any]]) -> None:
        """Post ``events`` until the server has them (or refuses them)."""
        url = f"/api/ingest/runs/{self.run_id}/events"
        async for _ in _backoff():
            try:
                r = await self._http.post(url, content=wire.encode({"events": events, "after": self.taken}))
            except httpx.TransportError as e:
                self.engine.report(e)
                continue
            if r.status_code == 200:
                self._handle(wire.answer(r.content))
                return
            problem = wire.problem(r.content)
            self.engine.report(ClientError("post events", r.status_code, problem.code, problem.detail))
            if problem.code == "gap" and problem.expected_n is not None and events:
                events = self._after_gap(events, problem.expected_n)
                if events:
                    continue
                return
            if problem.code == "already_finished":
                self.status = "finished"
                return
            if not _retryable(r.status_code):
                self.outbox.next_n = events[0]["n"] if events else self.outbox.next_n  # their n go to the next
                return

    def _after_gap(self, events: list[dict[str, Any]], expected: int) -> list[dict[str, Any]]:
        """What of ``events`` to send after a ``409 gap`` that expects ``expected``: the ones past
        it, if some were stored already; all of them renumbered from it, if an earlier batch was
        refused (and its numbers were never used)."""
        if expected > events[0]["n"]:
            return [e for e in events if e["n"] >= expected]
        for n, event in enumerate(events, expected):
            event["n"] = n
        self.outbox.next_n = expected + len(events)
        return events

    async def _poll(self) -> None:
        """Long-poll the run's controls until it ends (each poll renews the lease too)."""
        url = f"/api/ingest/runs/{self.run_id}/controls"
        wait = min(POLL_WAIT, max(1.0, self._lease / 2))
        delay = BACKOFF_FIRST
        while self.status not in wire.TERMINAL:
            try:
                r = await self._http.get(url, params={"after": self.taken, "wait": wait})
            except httpx.TransportError as e:
                self.engine.report(e)
            else:
                if r.status_code == 200:
                    self._handle(wire.answer(r.content))
                    delay = BACKOFF_FIRST
                    continue
                problem = wire.problem(r.content)
                self.engine.report(ClientError("poll controls", r.status_code, problem.code, problem.detail))
                if not _retryable(r.status_code):
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MOST)

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
                self.messages.append(msgspec.convert(control, Message, strict=False))
            self.taken = c

    def _cancel_approvals(self) -> None:
        """A cancel ends every wait for a person: each pending ``request_approval`` raises it."""
        approvals, self._approvals = self._approvals, {}
        for future in approvals.values():
            if not future.done():
                future.set_exception(Cancelled())

    def _decided(self, control: dict[str, Any]) -> None:
        decision = msgspec.convert(control, Decision, strict=False)
        future = self._approvals.pop(decision.approval_id, None)
        if future is not None and not future.done():
            future.set_result(decision)

    async def flush(self) -> None:
        """Return once every event handed over so far is stored (or refused)."""
        if not self.registered.done():
            await asyncio.wait((asyncio.wrap_future(self.registered),))
        async with self._sent:
            while self.run_id is not None and (len(self.outbox) or self._in_flight):
                self._wake.set()
                await self._sent.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _backoff(first: float = BACKOFF_FIRST, most: float = BACKOFF_MOST) -> AsyncIterator[None]:
    """Yield at once, then after waits doubling from ``first`` to ``most``, forever."""
    delay = first
    yield
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 2, most)
        yield
