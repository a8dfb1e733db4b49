"""The client's one sender: every run's events, batched into one request per linger window.

The first event waiting in any run opens a window; ``linger`` (50 ms) later — at once when
``FLUSH_EVENTS`` events or ``FLUSH_BYTES`` bytes wait (``outbox.py``), or a flush asks — the
waiting events of every registered run go in one ``POST /api/ingest/events``, each run's as its
*part* (``link.py``), within the server's bounds on a request (``MAX_REQUEST_*``). A run's part is
in one request at a time: events that come while it is in flight wait for its answer, then go at
once (their window has passed). So under a steady stream of tokens the client posts once per
``linger`` or once per round trip, whichever is longer, whatever the number of runs; at most
``MAX_REQUESTS`` are in flight (one, unless a run's answer is slow).

Each run's result goes to its link. A request that gets no answer, a 5xx or a 429 is sent again
with the same parts (the same ``n``) after a backoff (50 ms doubling to 2 s); another refusal of the
whole request is reported and its parts dropped. A run with nothing sent for a third of its lease
gets an empty part (a heartbeat), and any run past a sixth rides along with whatever goes.

A run quiet for ``link.QUIET`` long-polls its controls (on the engine's other pool); a busy one
gets them with the answers to its parts.
"""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import msgspec

from runwatch.client import wire
from runwatch.client.engine import Engine
from runwatch.client.link import BACKOFF_FIRST, BACKOFF_MOST, ClientError, Link, retryable
from runwatch.client.outbox import Budget

URL = "/api/ingest/events"
#: Requests in flight at once.
MAX_REQUESTS = 2
#: The server's bounds on one request (``agents/ingest/limits.py``): runs, events, bytes.
MAX_REQUEST_RUNS, MAX_REQUEST_EVENTS, MAX_REQUEST_BYTES = 256, 1_000, 1 << 20
_OPEN, _CLOSE = b'{"runs":[', b"]}"


class Sender:
    """Runs on the engine's loop (``start`` there); ``add`` a run once registered, ``remove`` it when stopped."""

    def __init__(self, engine: Engine, budget: Budget, linger: float) -> None:
        self.engine = engine
        self.linger = linger
        self._budget = budget
        self._links: dict[Link, None] = {}  # (ordered: a run just sent goes last)
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._sent = asyncio.Condition()
        self._requests = 0
        self._posts: set[asyncio.Task[None]] = set()
        self._hold_until = 0.0
        self._delay = BACKOFF_FIRST
        self._urgent = False
        self._task: asyncio.Task[None] | None = None
        budget.wake = lambda: engine.call(self._wake.set)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._posts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()

    def add(self, link: Link) -> None:
        self._links[link] = None
        self._wake.set()

    def remove(self, link: Link) -> None:
        """Stop carrying ``link``; what it still holds is given up (once its request is answered)."""
        self._links.pop(link, None)
        if not link.in_flight:
            link.discard()

    async def flush(self, link: Link) -> None:
        """Return once every event ``link`` was handed is stored (or refused)."""
        if not link.registered.done():
            await asyncio.wait((asyncio.wrap_future(link.registered),))
        async with self._sent:
            while link in self._links and (len(link.outbox) or link.part or link.in_flight):
                self._urgent = True
                self._wake.set()
                await self._sent.wait()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            send_at, look_at = self._plan(now)
            if send_at <= now:
                if self._requests < MAX_REQUESTS and self._send(now):
                    continue
                send_at = math.inf  # (a slot, or what was due, is woken for)
            self._arm(min(send_at, look_at))
            await self._wake.wait()

    def _plan(self, now: float) -> tuple[float, float]:
        """When a request is due, and when a run may need its long poll started (both ``inf``:
        not before something changes). Tells the outboxes whether a run's first event must wake
        the sender (when no window is open)."""
        due = window = look = math.inf
        budget = self._budget
        with budget.lock:
            for link in self._links:
                if link.in_flight:
                    continue
                if link.part:
                    due = min(due, link.retry_at)
                elif len(link.outbox):
                    window = min(window, link.outbox.since)
                elif not link.ended:
                    due = min(due, link.posted_at + link.lease / 3)
                    look = min(look, link.keep_polling(now))
            budget.asleep = window == math.inf
            if window < math.inf:
                due = min(due, now if self._urgent or budget.full else window + self.linger)
        return max(due, self._hold_until), look

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at < math.inf:
            self._timer = asyncio.get_running_loop().call_at(at, self._wake.set)

    def _rides(self, link: Link, now: float) -> bool:
        """Whether ``link`` goes in the request being made now."""
        if link.in_flight:
            return False
        if link.part:
            return link.retry_at <= now
        return bool(len(link.outbox)) or (not link.ended and now - link.posted_at >= link.lease / 6)

    def _send(self, now: float) -> bool:
        """Make one request of every run that rides, within the request's bounds, and post it
        (whether there was any)."""
        parts: list[bytes] = []
        links: list[Link] = []
        events, size, whole = 0, len(_OPEN) + len(_CLOSE), True
        for link in list(self._links):
            if not self._rides(link, now):
                continue
            if (
                len(links) == MAX_REQUEST_RUNS
                or events + (len(link.part) or bool(len(link.outbox))) > MAX_REQUEST_EVENTS
            ):
                whole = False
                break
            part = link.fill(MAX_REQUEST_EVENTS - events)
            if links and size + len(part) + 1 > MAX_REQUEST_BYTES:
                whole = False  # (it goes in the next request, as it is now)
                break
            parts.append(part)
            links.append(link)
            events, size = events + len(link.part), size + len(part) + 1
        if whole:
            self._urgent = False
        if not links:
            return False
        for link in links:
            link.sent(now)
            del self._links[link]
            self._links[link] = None
        self._requests += 1
        task = asyncio.create_task(self._post(links, _OPEN + b",".join(parts) + _CLOSE))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)
        return True

    async def _post(self, links: list[Link], body: bytes) -> None:
        try:
            await self._deliver(links, body)
        except Exception as e:  # (unforeseen: reported, and every part sent again after a backoff)
            self.engine.report(e)
            self._back_off()
        finally:
            self._requests -= 1
            for link in links:
                link.in_flight = False
                if link not in self._links:
                    link.discard()  # (stopped meanwhile)
            self._wake.set()
            async with self._sent:
                self._sent.notify_all()

    async def _deliver(self, links: list[Link], body: bytes) -> None:
        """Post ``body``; hand each run its result, or hold every part for a retry, or drop them."""
        assert self.engine.http is not None
        try:
            r = await self.engine.http.post(URL, content=body)
        except httpx.TransportError as e:  # (reported as what it was: the exception holds the request)
            self.engine.report(ClientError("post events", detail=f"{type(e).__name__}: {e}"))
            self._back_off()
            return
        if r.status_code != 200:
            problem = wire.problem(r.content)
            self.engine.report(ClientError("post events", r.status_code, problem.code, problem.detail))
            if retryable(r.status_code):
                self._back_off()
            else:
                for link in links:
                    link.drop(reuse_n=True)
            return
        try:
            results = {result.run_id: result for result in wire.results(r.content).results}
        except msgspec.DecodeError as e:
            self.engine.report(e)
            self._back_off()
            return
        self._delay = BACKOFF_FIRST
        for link in links:
            link.answered(results.get(link.run_id) or wire.Result(run_id=link.run_id or ""))

    def _back_off(self) -> None:
        """Send nothing for a while (the whole request failed: the server is away or overloaded)."""
        self._hold_until = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, BACKOFF_MOST)
