"""One open SSE stream of ``GET /api/runs/{id}/stream``: its wake-up, and the watch over its sends.

Slow-consumer policy, the WebSocket's (``api.connection``) for a stream that cannot be told to
resync, stated once:

* memory: the stream reads its run's events by cursor (from the bus, or the store), one event per
  ASGI send, and uvicorn's send waits while its write buffer is over the high-water mark (64 KiB):
  a reader that stalls pins that buffer, the kernel's socket buffers and one event — never a queue;
* an event (or heartbeat) the client does not take within ``send_timeout`` seconds
  (``RUNWATCH_WS_SEND_TIMEOUT``) cuts the stream: its TCP connection is reset (``api.cutoff``),
  the cut logged (``sse.slow_consumer``, reason ``send_timeout``) and counted
  (``runwatch_ws_slow_consumers_total{action="disconnect",transport="sse"}``). An ``EventSource``
  reconnects by itself with ``Last-Event-ID`` and gets exactly what it missed.

Timers are not per stream: the runtime's watchdog calls ``tick`` on every stream a few times a
second, as on every WebSocket.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any

import structlog

from runwatch.agents.errors import SlowConsumer
from runwatch.agents.identity import Principal
from runwatch.api.ws.cutoff import drop
from runwatch.api.ws.framing import SCOPE_KEY, Scope

if TYPE_CHECKING:
    from runwatch.api.observability.metrics import Metrics

log = structlog.get_logger()


def http_transport(scope: Scope) -> Any | None:
    """The transport under this HTTP request when uvicorn serves it (h11 or httptools alike), so a
    stalled reader's connection can be dropped; None on another server."""
    cycle = getattr(scope.get(SCOPE_KEY), "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None


class SSEStream:
    """A watcher of one run over SSE; ``notify`` makes it a bus watcher of that run."""

    __slots__ = (
        "_metrics", "_send_timeout", "_transport", "closed", "cut_off", "id", "opened", "principal",
        "run_id", "send_started", "sent", "wake",
    )  # fmt: skip

    def __init__(
        self,
        run_id: str,
        principal: Principal,
        *,
        send_timeout: float,
        metrics: Metrics,
        transport: Any | None,
    ) -> None:
        #: Unique among this principal's WebSockets and SSE streams: its place in their one count.
        self.id = "sse-" + secrets.token_hex(4)
        self.run_id = run_id
        self.principal = principal
        self._send_timeout = send_timeout
        self._metrics = metrics
        #: What ``cut`` drops; with None (not uvicorn) the stream ends when its blocked send returns.
        self._transport = transport
        self.wake = asyncio.Event()
        #: When the chunk being sent was handed to the ASGI send (monotonic); None while no send is
        #: pending. Set and cleared by the stream's generator around each ``yield`` (inline: per event).
        self.send_started: float | None = None
        #: Why the watchdog cut this stream off, if it did.
        self.cut_off: SlowConsumer | None = None
        #: Set once its slot, bus watch and registration are given back (``api.sse``).
        self.closed = False
        self.opened = time.monotonic()
        #: Chunks (events and heartbeats) the client's socket took.
        self.sent = 0

    def notify(self, stream: str, head: int) -> None:
        self.wake.set()

    def tick(self, now: float) -> None:
        """The watchdog's visit: cut the stream off if a send has been blocked past the timeout."""
        started = self.send_started
        if started is not None and self.cut_off is None and now - started > self._send_timeout:
            self.cut(SlowConsumer.SEND_TIMEOUT, f"an event was not taken within {self._send_timeout:g} s")

    def cut(self, reason: SlowConsumer, detail: str) -> None:
        """End this stream for being slow: log and count it, drop its connection, wake its generator."""
        self.cut_off = reason
        log.warning(
            "sse.slow_consumer",
            stream=self.id,
            run_id=self.run_id,
            principal=self.principal.id,
            reason=reason.value,
            detail=detail,
        )
        self._metrics.slow_consumers.labels("disconnect", "sse").inc()
        if self._transport is not None:
            drop(self._transport)
        self.wake.set()
