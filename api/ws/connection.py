"""One WebSocket watcher: its subscriptions (cursors into run logs) and its single sender task.

A connection holds no copy of the events it is owed: each subscription is a cursor, and the
sender reads from the bus (or the store when the bus no longer has them) when it is woken.
That bounds memory per watcher by one frame, however fast runs publish.

Slow-consumer policy, stated once:
* a *live* subscription more than ``max_lag`` events behind the head while this connection's
  send is blocked (the client's TCP window is full), or one that falls out of the bus's in-memory
  log, is dropped and the client gets ``{"type": "resync", "run", "after"}`` — it resubscribes
  from ``after`` when it can. A producer burst alone never counts: a watcher whose sends go
  through catches up in frames of ``frame_events``;
* a frame the client does not take within ``send_timeout`` closes the connection with 1013.
Either way no other watcher waits: publish only sets this connection's wake-up flag.

Timers are not per frame: one watchdog (``Runtime``) calls ``tick`` on every connection a few
times a second, for heartbeats and for sends stuck past ``send_timeout``.

Fast lane (``api.lane``), for a caught-up watcher with an idle sender on a server we can write
frames to directly (``api.framing``): the first new event in an event-loop iteration is written
at once, from inside ``notify``; more in the same iteration go out as one frame at its end. If a
direct write is refused (the client's window is full, a close is under way) the watcher goes the
normal way, its sender task and the ASGI send, until it has caught up again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from runwatch.agents.bus import LIFECYCLE, Streams
from runwatch.agents.events import Published
from runwatch.api.ws.cursor import Frame, Subscription, fit
from runwatch.api.ws.framing import DirectWriter
from runwatch.api.ws.lane import FastLane, FrameKey, SharedFrame
from runwatch.api.ws.protocol import Heartbeat, Resync, ResyncReason, encode

if TYPE_CHECKING:
    from runwatch.agents.identity import Principal
    from runwatch.api.observability.metrics import Metrics
    from runwatch.api.ws.presence import PresenceBoard

log = structlog.get_logger()

#: Server messages (acks, errors) waiting to be sent. At this many the receive loop stops reading
#: the client's messages until the sender has made room (``room``): a client that sends faster than
#: it reads is slowed down, not cut off; one that stops reading is cut off by the send timeout.
MAX_OUTBOX = 256

#: The most new events the fast lane writes directly in one visit (in frames of ``frame_events``);
#: more is a backlog, which the sender task sends frame by frame, letting other work run between.
MAX_DIRECT_EVENTS = 1000


class Connection:
    #: Slots, not a ``__dict__``: about a kilobyte less for every connection (bench/HISTORY.md, "idle").
    __slots__ = (
        "_asgi_send", "_bus", "_dirty", "_flushed", "_frame_budget", "_frame_bytes", "_frames_seen",
        "_heartbeat", "_idle", "_lane", "_last_send", "_marked", "_max_lag", "_metrics", "_outbox",
        "_room", "_send_started", "_send_timeout", "_sender", "_wake", "_writer", "bytes_sent",
        "cut_off", "direct_frames", "ended", "events_sent", "feed_tenant", "frames_sent", "id",
        "presence", "principal", "resyncs", "subscriptions", "tenant_of",
    )  # fmt: skip

    def __init__(
        self,
        conn_id: str,
        send: Callable[[dict], Awaitable[None]],
        *,
        bus: Streams,
        max_lag: int,
        send_timeout: float,
        frame_events: int,
        frame_bytes: int,
        heartbeat: float,
        metrics: Metrics | None = None,
        lane: FastLane | None = None,
        writer: DirectWriter | None = None,
    ) -> None:
        self.id = conn_id
        self._asgi_send = send
        #: Direct frame writes (the fast lane) need both a lane and a writer; otherwise ASGI only.
        self._writer = writer if lane is not None else None
        self._bus = bus
        self._max_lag = max_lag
        self._send_timeout = send_timeout
        self._frame_budget = frame_events
        self._frame_bytes = frame_bytes
        self._heartbeat = heartbeat
        self._metrics = metrics
        self.subscriptions: dict[str, Subscription] = {}
        #: Server messages (acks, errors) to send ahead of events: a list (a deque costs 760 bytes).
        self._outbox: list[str] = []
        #: While the outbox is full: resolved when the sender has made room (see ``MAX_OUTBOX``).
        #: Made only when needed — an idle connection should cost as little memory as possible.
        self._room: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        #: True while the sender waits with nothing to do and is not woken: only then may ``notify``
        #: write directly. Cleared by ``_wake_sender``.
        self._idle = False
        self._lane = lane
        #: Marked for the fast lane's next run; until then, new events wait for it (``_dirty``).
        self._marked = False
        self._dirty = False
        #: What the Prometheus counters have been told so far (``tick`` adds the rest, not every frame).
        self._flushed = (0, 0, 0)
        #: When the frame in flight was handed over (monotonic); None while no send is pending.
        self._send_started: float | None = None
        #: When ``tick`` last saw a frame go out (monotonic), and how many had gone by then.
        self._last_send = time.monotonic()
        self._frames_seen = 0
        #: Why the watchdog cut this connection off, if it did.
        self.cut_off: str | None = None
        #: Set by ``end``: the close code and reason the endpoint closes with.
        self.ended: tuple[int, str] | None = None
        #: Who is watching (``runwatch.agents.identity.Principal``), set by the endpoint; with
        #: ``feed_tenant`` set, the runs feed shows this connection only that tenant's runs.
        self.principal: Principal | None = None
        self.feed_tenant: str | None = None
        #: Who watches which run (``api/ws/presence.py``): told of this connection's subscriptions to runs.
        self.presence: PresenceBoard | None = None
        #: ``RunService.tenant_of``: the tenant of the run a feed entry is about.
        self.tenant_of: Callable[[Published], Awaitable[str | None]] | None = None
        self.frames_sent = 0
        self.events_sent = 0
        self.bytes_sent = 0
        #: Of ``frames_sent``, those the fast lane wrote straight to the transport.
        self.direct_frames = 0
        self.resyncs = 0

    # -- called by the bus and the receive loop (must not block) --------------------------------

    def notify(self, stream: str, head: int) -> None:
        if self._marked and self._idle:
            # Not the first event this iteration: the lane writes it at the end, with the rest.
            if not self._dirty:
                self._dirty = True
                self._lane.dirty(self)
            return
        sub = self.subscriptions.get(stream)
        if sub is None:
            return
        if self._idle and self._writer is not None and sub.live and not sub.filtered:
            self._marked = True
            self._lane.mark(self)
            if sub.cursor == head - 1:
                self._write(((stream, sub.cursor, head),), (sub,))  # the iteration's first event: now
            else:
                self._dirty = True
                self._lane.dirty(self)
            return
        if self._send_started is not None and sub.live and head - sub.cursor > self._max_lag:
            sub.overflowed = True
        self._wake_sender()

    def _wake_sender(self) -> None:
        self._idle = False  # so ``notify`` needs one flag to know the sender is idle and not woken
        self._wake.set()

    def unmark(self) -> None:
        self._marked = self._dirty = False

    def send_new(self) -> None:
        """The fast lane's visit: write everything new as one frame, or leave it to the sender task."""
        if not self._idle:
            return  # the sender task is on it
        key: list[tuple[str, int, int]] = []  # (stream, after, head) per subscription with news
        subs: list[Subscription] = []
        count = 0
        for sub in self.subscriptions.values():
            if not sub.live or sub.overflowed or sub.filtered:
                self._wake_sender()
                return
            head = self._bus.head(sub.stream)
            if head > sub.cursor:
                key.append((sub.stream, sub.cursor, head))
                subs.append(sub)
                count += head - sub.cursor
        if count <= self._frame_budget:
            if key:
                self._write(tuple(key), subs)
        elif count <= MAX_DIRECT_EVENTS:
            self._write_split(key, subs)
        else:
            self._wake_sender()  # a backlog: the sender task sends it in frames, yielding between them

    def _write_split(self, key: list[tuple[str, int, int]], subs: list[Subscription]) -> None:
        """More than one frame's worth: frames of ``frame_events`` per run, from each run's cursor,
        so every watcher at the same position shares each frame's bytes."""
        budget = self._frame_budget
        for sub, (stream, after, head) in zip(subs, key, strict=True):
            for start in range(after, head, budget):
                if not self._write(((stream, start, min(start + budget, head)),), (sub,)):
                    return

    def _write(self, key: FrameKey, subs: Sequence[Subscription]) -> bool:
        """Write the shared frame of ``key`` directly; on refusal the sender task takes over."""
        frame = self._lane.frame(key, self._bus)
        fits = frame is not None and (frame.size <= self._frame_bytes or frame.events == 1)
        if not fits or not self._writer.write(frame.data):
            self._wake_sender()  # lost from the bus, too big for one frame, or the socket is full
            return False
        for sub, (_, _, head) in zip(subs, key, strict=True):
            sub.cursor = head
        self.direct_frames += 1
        self._delivered(frame)
        return True

    def _delivered(self, frame: Frame | SharedFrame) -> None:
        """Account for a frame the client's socket took, whichever path sent it."""
        self.frames_sent += 1
        self.events_sent += frame.events
        self.bytes_sent += frame.size
        if frame.oldest is not None and self._metrics is not None:
            self._metrics.publish_to_send.observe_since(frame.oldest)

    def post(self, message: str) -> None:
        """Queue a server message (ack, error) ahead of events; the receive loop waits for ``room``."""
        self._outbox.append(message)
        self._wake_sender()

    async def room(self) -> None:
        """Return once the outbox has room for more replies."""
        if len(self._outbox) < MAX_OUTBOX:
            return
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        await self._room

    def subscribe(self, stream: str, after: int) -> None:
        """Start (or restart) following ``stream`` after position ``after``. This connection sees
        only its tenant's entries of the runs feed (``feed_tenant``): those frames are its own,
        never the fast lane's shared ones."""
        sub = self.subscriptions[stream] = Subscription(stream, after)
        sub.filtered = self.feed_tenant is not None and stream == LIFECYCLE
        self._bus.watch(stream, self)
        if self.presence is not None and stream != LIFECYCLE:
            self.presence.join(stream, self)
        self._wake_sender()

    def unsubscribe(self, stream: str) -> bool:
        self._bus.unwatch(stream, self)
        if self.presence is not None:
            self.presence.leave(stream, self)
        return self.subscriptions.pop(stream, None) is not None

    def close(self) -> None:
        for stream in list(self.subscriptions):
            self.unsubscribe(stream)
        self.flush_metrics()

    def backlog(self) -> int:
        """Events published but not yet sent to this watcher, over all its subscriptions."""
        return sum(max(0, self._bus.head(s.stream) - s.cursor) for s in self.subscriptions.values())

    def drained(self) -> bool:
        """Nothing owed to this watcher: no reply waiting, no event unsent, no frame in flight."""
        return not self._outbox and self._send_started is None and self.backlog() == 0

    # -- the sender task ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the sender task; it ends only when cancelled (``cut_off`` says if for slowness)."""
        self._sender = asyncio.create_task(self._run_sender(), name=f"ws-send-{self.id}")
        return self._sender

    def end(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (the endpoint does, once the sender has stopped)."""
        if self.ended is None and self.cut_off is None and self._sender is not None:
            self.ended = (code, reason)
            self._sender.cancel()

    def tick(self, now: float) -> None:
        """The watchdog's visit: flush counters; cut off a send stuck past the timeout, or post a heartbeat."""
        self.flush_metrics()
        expires = getattr(self.principal, "expires_at", None)
        if expires is not None and time.time() >= expires:
            self.end(4401, "credential expired; reconnect with a fresh one")
            return
        if self.frames_sent != self._frames_seen:
            self._frames_seen = self.frames_sent
            self._last_send = now
        started = self._send_started
        if started is not None:
            if now - started > self._send_timeout and self._sender is not None and self.cut_off is None:
                self.cut_off = f"a frame was not taken within {self._send_timeout:g} s"
                self._sender.cancel()
        elif now - self._last_send >= self._heartbeat and not self._outbox:
            self._outbox.append(encode(Heartbeat(ts=time.time())))
            self._wake_sender()

    def flush_metrics(self) -> None:
        m = self._metrics
        frames, events, size = self._flushed
        if m is not None and self.frames_sent > frames:
            m.ws_frames.inc(self.frames_sent - frames)
            m.ws_events.inc(self.events_sent - events)
            m.ws_bytes.inc(self.bytes_sent - size)
            self._flushed = (self.frames_sent, self.events_sent, self.bytes_sent)

    async def _run_sender(self) -> None:
        while True:
            self._idle = True
            await self._wake.wait()
            self._idle = False
            self._wake.clear()
            while True:
                frame, more = await self._collect()
                if frame.items:
                    await self._send(frame)
                if not more:
                    break

    async def _send(self, frame: Frame) -> None:
        # The ASGI send itself: it runs inline and only suspends while the client's window is full.
        self._send_started = time.monotonic()
        try:
            await self._asgi_send({"type": "websocket.send", "text": frame.text()})
        finally:
            self._send_started = None
        self._delivered(frame)

    async def _collect(self) -> tuple[Frame, bool]:
        """Up to ``frame_events`` events and about ``frame_bytes`` bytes, after any server messages;
        and whether more is waiting. An event bigger than ``frame_bytes`` goes in a frame of its own."""
        frame = Frame()
        if self._outbox:
            for message in self._outbox:
                frame.add_message(message)
            self._outbox.clear()
        if self._room is not None:
            if not self._room.done():
                self._room.set_result(None)
            self._room = None
        budget = self._frame_budget
        more = False
        for sub in list(self.subscriptions.values()):
            if budget <= 0:
                more = True
                break
            if sub.overflowed:
                self.unsubscribe(sub.stream)
                self.resyncs += 1
                if self._metrics is not None:
                    self._metrics.slow_consumers.labels("resync", "ws").inc()
                frame.add_message(
                    encode(
                        Resync(
                            run=sub.stream,
                            after=sub.cursor,
                            epoch=self._bus.epoch_of(sub.stream),
                            reason=ResyncReason.SLOW_CONSUMER,
                        )
                    )
                )
                log.info("ws.resync", conn=self.id, run=sub.stream, after=sub.cursor)
                continue
            batch = await self._read(sub, budget)
            if self.subscriptions.get(sub.stream) is not sub or not batch:
                continue  # nothing new, or unsubscribed/replaced while we read the store
            shown = await self._own(sub, batch)
            fitted = fit(shown, self._frame_bytes - frame.size, at_least_one=frame.events == 0)
            if fitted:
                frame.add_events(sub, fitted)
            if len(fitted) < len(shown):
                return frame, True
            sub.cursor = batch[-1].seq  # past entries of other tenants too
            more = more or len(batch) == budget
            budget -= len(batch)
        return frame, more

    async def _own(self, sub: Subscription, batch: list[Published]) -> list[Published]:
        """What of ``batch`` this watcher may see: all of a run's log; of the runs feed, with
        ``feed_tenant`` set, only the entries about that tenant's runs."""
        if not sub.filtered or self.tenant_of is None:
            return batch
        return [p for p in batch if await self.tenant_of(p) == self.feed_tenant]

    async def _read(self, sub: Subscription, budget: int) -> list[Published]:
        batch = self._bus.recent(sub.stream, sub.cursor, budget)
        if batch is None:
            if sub.stream == LIFECYCLE or (sub.live and self._bus.head(sub.stream) > 0):
                sub.overflowed = True  # fell out of the live log it follows: the client must resync
                self._wake_sender()
                return []
            return await self._bus.read(sub.stream, sub.cursor, budget)
        if len(batch) < budget:
            sub.live = True
        return batch
