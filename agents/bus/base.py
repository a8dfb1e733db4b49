"""The bus contract: publish per run, read any run's log from a position, be woken on news.

Positions. Every event of a run has a ``seq`` (1, 2, 3 … with no gap), assigned by the bus and
nowhere else. A run's log also has an **epoch**: a string that stays the same for as long as the
log's positions mean the same events, and changes when a log is lost or rebuilt. A client resuming
with ``(epoch, seq)`` therefore either gets exactly the events after ``seq`` or learns that it must
resync; it never gets different events at a position it already saw.

Durability. With a ``Journal`` (the store), an event becomes *visible* — readable, counted in
``head``, announced to watchers — only once the journal has made it durable. Whatever a watcher
received survives a crash of the process, so a position handed out is never handed out again.

The bus holds *policy-free* storage of recent events; the readers (WebSocket connections, SSE
streams) keep their own cursors and decide what to do when they fall behind. That way a publish
costs one encode plus one wake-up per watcher, and a watcher costs one cursor, not a queue copy.

Parts. A bus (``node.Node``) is a ``hub.Hub`` — what this process holds in memory, its watchers
and sinks — composed with a ``Broker`` — where positions are assigned and history is kept: the
memory broker for one process, the Redis broker for many. Consumers are typed on the narrow
contracts here (``Publisher``, ``Recent``, ``Streams``, ``Positions``, ``Ownership``); only the
composition root names a concrete broker.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

from runwatch.agents.events import Event, Published


class Fenced(RuntimeError):
    """This process may no longer publish to the run: another instance owns it now (its lease ran
    out here, or the store refused a position this process wrote)."""


#: The stream name of the runs feed: every run's ``run.*`` events, in the order they became visible.
LIFECYCLE = "*"


class Watcher(Protocol):
    """Something to wake when a stream grows. ``notify`` should not block; if it raises, the bus logs
    it once and goes on (a failing watcher never breaks a publish or another watcher)."""

    def notify(self, stream: str, head: int) -> None: ...


class Sink(Protocol):
    """A consumer that must see every event (metrics), in publish order.

    ``ready`` is awaited after each publish and is where a sink applies backpressure to producers.
    A sink that raises is logged and skipped; the publish goes on.
    """

    def accept(self, published: Published) -> None: ...

    async def ready(self) -> None: ...


Durable = Callable[[Sequence[Published]], None]


class Journal(Protocol):
    """Where the bus makes events durable (the store): appends in publish order, batched.

    ``on_durable`` callbacks run on the event loop with each committed batch, in commit order.
    """

    epoch: str

    def append(self, published: Published) -> None:
        """Queue an event for writing; never blocks, never drops."""
        ...

    async def ready(self) -> None:
        """Backpressure: wait while the pending bound (events or bytes) is exceeded."""
        ...

    def on_durable(self, callback: Durable) -> None: ...

    def on_conflict(self, callback: Callable[[str], None]) -> None:
        """``callback(run_id)`` when another writer already holds positions this process wrote for
        the run (several instances on one database): those events are not made durable."""
        ...

    async def head(self, run_id: str) -> int:
        """The last durable seq of ``run_id`` (0 if none)."""
        ...

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]:
        """Durable events of ``run_id`` with seq > ``after``, at most ``limit``, in order."""
        ...


class Publisher(Protocol):
    """What a producer (the supervisor, a run's loop, an inbox) asks of the bus."""

    async def publish(self, event: Event) -> Published:
        """Assign the run's next ``seq`` and ``ts``, encode once, make it durable and visible, fan out.

        Returns the ``Published`` event: its ``seq`` is its position in the run's log (``epoch``).
        A run's first event is ``run.queued`` (seq 1); any other event of a run this bus does not
        hold continues from the journal's last position. Raises ``Fenced`` for a run this process
        may no longer publish to.
        """
        ...


class Recent(Protocol):
    """The non-blocking read of the hot path (a WebSocket sender, the fast lane's shared frames)."""

    def recent(self, stream: str, after: int, limit: int) -> list[Published] | None:
        """What memory holds of ``stream`` after ``after``, at most ``limit``, visible only.

        ``None`` means memory no longer holds position ``after + 1`` (evicted or never here): use
        ``read``. An empty list means the reader is caught up.
        """
        ...


class Streams(Recent, Protocol):
    """What a watcher (a WebSocket connection, an SSE stream) asks of the bus: be woken when a
    stream grows, read it from its own cursor, and say which epoch a position belongs to."""

    def head(self, stream: str) -> int:
        """The last visible position of ``stream`` held in memory (0 if none is held)."""
        ...

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        """Visible events of ``stream`` after position ``after``, at most ``limit``, in order, gap-free:
        a run's from memory while it holds them, else from the history (the broker's, the journal).
        The runs feed has no journal: for a position nobody holds any more this raises
        ``LookupError`` (the reader must resync)."""
        ...

    def epoch_of(self, stream: str) -> str:
        """The epoch of ``stream``'s positions: the runs' logs' ``epoch``, or the feed's."""
        ...

    def watch(self, stream: str, watcher: Watcher) -> None: ...

    def unwatch(self, stream: str, watcher: Watcher) -> None: ...


class Positions(Protocol):
    """What the run service asks of the bus: where a run's log or the runs feed stands, where a
    resume may start, and a run's events page by page (REST)."""

    @property
    def epoch(self) -> str:
        """The epoch of every run's log: positions keep meaning the same events while it holds."""
        ...

    @property
    def feed_epoch(self) -> str:
        """The epoch of the runs feed's positions (its own: the feed has no journal)."""
        ...

    def head(self, stream: str) -> int:
        """The last visible position of ``stream`` held in memory (0 if none is held)."""
        ...

    def first(self, stream: str) -> int:
        """The oldest position memory holds of ``stream`` (``head + 1`` when it holds none)."""
        ...

    async def position(self, run_id: str) -> int:
        """The last visible position of a run, from memory or the journal (0: no such run)."""
        ...

    async def replay(self, run_id: str, after: int, limit: int) -> list[Published]:
        """``read`` for a reader that pages through a run (REST): fewer than ``limit`` only once they
        reach the run's durable head, even where this bus's copy of the run is behind it."""
        ...


class Bus(Publisher, Streams, Positions, Protocol):
    """One process's bus, as the composition root holds it: atomic per run (one publish assigns
    one position, and history and live fan-out agree on it), bounded in memory."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def settled(self, run_id: str) -> None:
        """Return once every event of ``run_id`` published so far is visible (durable, announced to
        its watchers), and never before the event loop has run other work once.

        A producer that publishes faster than events become visible (a model streaming at full
        speed) awaits this between bursts, so it runs at most one burst ahead of its watchers.
        """
        ...

    async def settled_all(self, run_ids: Iterable[str]) -> None:
        """``settled`` for each of ``run_ids`` (events of many runs published together), the event
        loop let run other work once in all, not once per run."""
        ...

    def add_sink(self, sink: Sink) -> None: ...

    @property
    def memory_used(self) -> int:
        """Bytes held by every log in memory (the figure the memory budget bounds)."""
        ...

    @property
    def freed(self) -> int:
        """Bytes the logs have let go of so far (evictions and trims): a hint for the allocator."""
        ...


class Broker(Protocol):
    """Where a bus's positions are assigned and its history kept (centrifuge's ``Broker``); the
    ``Hub`` it is composed with holds what this process has in memory and wakes the watchers.

    Guarantees, which every broker keeps:

    * **Positions without gap.** ``publish`` gives each event of a run the next ``seq`` (1, 2, 3 …),
      assigned in one place at a time: one process, or, with many instances, the one that owns
      the run. History (``read``) and live fan-out (the hub's logs) agree on every position.
    * **Epochs.** ``epoch`` names the runs' logs: it stays the same as long as a position means the
      same event (the journal's epoch, once there is one). ``feed_epoch`` does the same for the
      runs feed, whose positions are the broker's own; it changes when the feed is lost.
    * **Durable before visible.** With a ``Journal``, an event reaches the hub (readable, counted in
      ``head``, announced to watchers) only once the journal has made it durable; without one, at
      once. A position anyone saw is therefore never handed out again, even after a crash.
    * **Fencing.** A broker shared by many instances refuses (``Fenced``) a publish to a run this
      instance may no longer own, so one run is never published by two instances.
    * **Following.** ``watched`` is called when a stream gets its first watcher here and
      ``unwatched`` when its last one leaves: a shared broker then follows the run's events
      published elsewhere into the hub, in ``seq`` order, gap-free; a single-process one ignores it.
    """

    @property
    def epoch(self) -> str: ...

    @property
    def feed_epoch(self) -> str: ...

    @property
    def problem(self) -> str | None:
        """Why the broker cannot serve everything now (its server is unreachable), or None."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop, once what is published is sent on (bounded in time); the hub is closed after."""
        ...

    #: See ``Publisher.publish``; the event reaches the hub's log and sinks in publish order. An
    #: attribute, so that a broker hands out the bound method that does the work (no call of its own
    #: per event), as the node does in turn.
    publish: Callable[[Event], Coroutine[Any, Any, Published]]

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        """See ``Streams.read``: the hub's log first, then the broker's history."""
        ...

    async def replay(self, run_id: str, after: int, limit: int) -> list[Published]:
        """See ``Positions.replay``."""
        ...

    async def position(self, run_id: str) -> int:
        """See ``Positions.position``."""
        ...

    def watched(self, stream: str) -> None: ...

    def unwatched(self, stream: str) -> None: ...


class Ownership(Protocol):
    """A broker shared by many instances, as a cluster supervisor keeps it: which instance
    assigns a run's positions (it *owns* the run), and whether the broker is reachable.

    An instance owns a run from its ``run.queued`` or from taking it over (its log continues from
    the journal's head); ``release`` and ``disown`` hand it on. ``hold`` makes a run's publishes
    wait, before they take a position, while this instance cannot tell whether it still owns the
    run; ``unhold`` lets them go on, ``fence`` refuses them (``Fenced``) until ``unfence``.
    """

    #: Called each time the connection is made (at start, and back after a loss).
    on_connected: list[Callable[[], None]]
    #: Called with a run's id when the journal refuses a position this instance gave out
    #: (another instance owns the run now); the run is fenced already.
    on_fenced: list[Callable[[str], None]]

    @property
    def healthy(self) -> bool:
        """False while the broker's server is unreachable."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background, kept and closed with the broker; what it raises is logged."""
        ...

    async def sent(self) -> None:
        """Return once everything published so far is durable and sent on to the other instances."""
        ...

    async def release(self, run_id: str) -> None:
        """Stop owning ``run_id`` once what it published is durable and sent on (``TimeoutError``
        past a few seconds); keep following it if anyone here watches it."""
        ...

    def disown(self, run_id: str) -> None:
        """Stop owning ``run_id`` now: follow it if anyone here watches it, else forget it."""
        ...

    def hold(self, run_id: str) -> None: ...

    def unhold(self, run_id: str) -> None: ...

    def holding(self, run_id: str) -> bool: ...

    def fence(self, run_id: str) -> None:
        """Refuse further publishes to ``run_id`` from this instance until ``unfence``; its
        producers waiting in ``settled`` are released, and its log here is disowned."""
        ...

    def unfence(self, run_id: str) -> None:
        """This instance holds the run again (took its job, claimed its lease): it may publish."""
        ...

    def fenced(self, run_id: str) -> bool:
        """This instance may not publish to ``run_id`` (fenced, and not held again since)."""
        ...
