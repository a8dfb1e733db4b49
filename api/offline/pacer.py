"""Paced offline-model streams, all on one timer, written straight to their sockets.

Served through ASGI, every token of a paced stream (``"rate": 50``) cost its own task wake-up, a
sleep, two generators, Litestar's streaming response, two middleware ``send`` wrappers and
uvicorn's ``send``: with hundreds of runs streaming, the offline model cost as much CPU as the
runs reading it. Here one task sleeps until the next token falls due, of whichever stream, and
writes every due chunk of every stream straight to that stream's transport, one write per stream
(each chunk's SSE event and HTTP framing made once per distinct token: ``TextStream.frame``).

Like ``framing.py`` for WebSocket frames, this reaches past ASGI into uvicorn (its httptools
protocol), so it is opt-in by recognition: ``http_cycle`` answers the connection only when it is
one we know how to write to, with a chunked response started and not complete; otherwise the
stream goes the ASGI way. The response's head, its first chunk and its end still go through
ASGI; only the tokens in between are written here, in order, between them.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time
from typing import Any

import structlog

from runwatch.agents.offline.stream import TextStream
from runwatch.api.ws.framing import SCOPE_KEY, Scope

log = structlog.get_logger()

#: A stream whose socket is not taking writes (its reader is slow) is looked at again this much later.
RETRY_SECONDS = 0.005


def http_cycle(scope: Scope) -> Any | None:
    """uvicorn's httptools request cycle behind this HTTP scope, if its response can be written to
    directly now: a chunked response, started, not complete, its client still there."""
    send = scope.get(SCOPE_KEY)
    cycle = getattr(send, "__self__", None)
    try:
        from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    except ImportError:  # uvicorn built without httptools
        return None
    if not isinstance(cycle, RequestResponseCycle):
        return None
    transport = getattr(cycle, "transport", None)
    flow = getattr(cycle, "flow", None)
    if (
        getattr(cycle, "chunked_encoding", None) is not True
        or getattr(cycle, "response_started", None) is not True
        or getattr(cycle, "response_complete", None) is not False
        or getattr(cycle, "disconnected", None) is not False
        or not isinstance(getattr(flow, "write_paused", None), bool)
        or transport is None
        or not callable(getattr(transport, "write", None))
        or not callable(getattr(transport, "is_closing", None))
    ):
        return None
    return cycle


def _sse_http_chunk(data: bytes) -> bytes:
    """One SSE event (``data: <json>``) as one HTTP/1.1 chunk."""
    return b"%x\r\ndata: %s\n\n\r\n" % (len(data) + 8, data)


class _Paced:
    __slots__ = ("cycle", "done", "flow", "stopped", "text", "transport")

    def __init__(self, cycle: Any, text: TextStream, done: asyncio.Future[None]) -> None:
        self.cycle = cycle
        self.transport = cycle.transport
        self.flow = cycle.flow
        self.text = text
        self.done = done
        self.stopped = False
        text.frame(_sse_http_chunk)

    def write_due(self, now: float) -> float | None:
        """Write every chunk due by ``now``; when to come back, or ``None`` when done."""
        cycle, text = self.cycle, self.text
        if self.stopped or cycle.disconnected or cycle.response_complete or self.transport.is_closing():
            return None
        if self.flow.write_paused:
            return now + RETRY_SECONDS
        if text.done:
            return None
        if text.due_at() <= now:
            out = text.take()
            if not text.done and text.due_at() <= now:  # behind (a slow reader, a late wake-up)
                parts = [out]
                while not text.done and text.due_at() <= now:
                    parts.append(text.take())
                out = b"".join(parts)
            self.transport.write(out)
        return None if text.done else text.due_at()


class Pacer:
    """Streams many ``TextStream`` s to their sockets from one timer, each chunk when it falls due,
    or up to ``slack`` early: the streams due within it share one wake-up (at 10 runs x 100 tok/s,
    3 ms instead of 1 cut the model's CPU per token from 43 to 31 µs; nearly all of it was waking up).
    A wake-up is one timer callback (``_tick``), not a task resumed through a future.
    """

    def __init__(self, *, slack: float = 0.003, grid: float = 0.02) -> None:
        self._slack = slack
        self._grid = grid
        self._heap: list[tuple[float, int, _Paced]] = []
        self._order = itertools.count()
        #: The armed timer and when it fires (loop time), or None while nothing is paced.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        #: The timer's context, made once: a wake-up carries no request's context (structlog's bindings).
        self._context = contextvars.Context()
        self.streams = 0

    async def stream(self, scope: Scope, text: TextStream) -> None:
        """Stream ``text`` straight to this scope's socket, if it can be; returns when done, or at
        once (leaving the tokens to the caller) when it cannot. Cancelling stops the stream."""
        cycle = http_cycle(scope)
        if cycle is None:
            return
        loop = asyncio.get_running_loop()
        text.align(self._grid)
        paced = _Paced(cycle, text, loop.create_future())
        due = text.due_at()
        heapq.heappush(self._heap, (due, next(self._order), paced))
        self.streams += 1
        if self._timer is None or due < self._timer_at:  # due before the timer would fire: re-arm it
            self._arm(loop, due)
        try:
            await paced.done
        finally:
            paced.stopped = True
            self.streams -= 1
            text.frame(None)  # what is left, if anything, goes the ASGI way, which frames it itself

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # ``due`` is on time.monotonic(), the loop's clock under uvloop and asyncio alike; a timer
        # in the past fires on the loop's next iteration.
        self._timer_at = due
        self._timer = loop.call_at(due, self._tick, loop, context=self._context)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        heap = self._heap
        now = time.monotonic() + self._slack
        try:
            while heap and heap[0][0] <= now:
                _, order, paced = heapq.heappop(heap)
                try:
                    again = paced.write_due(now)
                except Exception as exc:  # the transport refused: this stream ends, the others go on
                    log.warning("offline.pacer_write_failed", error=repr(exc))
                    again = None
                    if not paced.done.done():
                        paced.done.set_exception(exc)
                if again is not None:
                    heapq.heappush(heap, (again, order, paced))
                elif not paced.done.done():
                    paced.done.set_result(None)
        finally:  # whatever escaped, the streams left are not left without a timer
            if heap and self._timer is None:
                self._arm(loop, heap[0][0])
