"""Single instance or cluster: the one object that knows which, and builds what differs.

The composition root (``api/runtime.py``) picks one by the settings — ``Cluster`` when a Redis URL
is set, ``SingleInstance`` otherwise — and asks it for the broker, the supervisor and the limiter;
nothing else in the process asks which it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, Unpack

from runwatch.agents.bus import Broker, Hub, MemoryBroker
from runwatch.agents.bus.base import Journal
from runwatch.agents.bus.redis import RedisBroker
from runwatch.agents.cluster import channel
from runwatch.agents.cluster.channel import RunChanged
from runwatch.agents.cluster.ingest import RedisLeases, RedisSharing
from runwatch.agents.cluster.queue import RunQueue
from runwatch.agents.cluster.supervisor import ClusterSupervisor
from runwatch.agents.ingest.shared import Alone, Leases, MemoryLeases, Sharing
from runwatch.agents.runs.executor import RunSettings
from runwatch.agents.runs.limits import Limiter, MemoryLimiter, RedisLimiter
from runwatch.agents.runs.supervising import Supervising
from runwatch.agents.runs.supervisor import Supervisor
from runwatch.api.settings.config import Settings


class Deployment(Protocol):
    """What differs between one process and many sharing Redis."""

    #: Where positions are assigned and history kept.
    broker: Broker

    def supervisor(self, *, on_released: Callable[[str], None], **running: Unpack[RunSettings]) -> Supervising:
        """The supervisor of this instance's runs; ``on_released``: a run this instance no longer
        deals with (queued for another, handed over)."""
        ...

    def limiter(self) -> Limiter:
        """Runs per minute and connections per principal: across instances where there are many."""
        ...

    def on_lost(self, callback: Callable[[], None]) -> None:
        """``callback`` is called when the broker's connection is lost (never, in one process)."""
        ...

    def ingest(self) -> tuple[Sharing, Leases]:
        """What the instances share about external runs (agents/ingest/shared.py)."""
        ...

    def on_run_changed(self, callback: Callable[[str], None]) -> None:
        """``callback(run_id)`` is called when another instance changed an external run (never,
        in one process)."""
        ...


class SingleInstance:
    """One process: positions assigned here, runs queued and executed here, limits in memory."""

    def __init__(self, settings: Settings, hub: Hub, journal: Journal) -> None:
        self._settings = settings
        self.broker: Broker = MemoryBroker(hub, journal=journal)

    def supervisor(self, *, on_released: Callable[[str], None], **running: Unpack[RunSettings]) -> Supervising:
        runs = self._settings.runs
        return Supervisor(max_queued=runs.max_queued, drain_seconds=self._settings.server.drain_seconds, **running)

    def limiter(self) -> Limiter:
        return MemoryLimiter()

    def on_lost(self, callback: Callable[[], None]) -> None:
        return None

    def ingest(self) -> tuple[Sharing, Leases]:
        return Alone(), MemoryLeases()

    def on_run_changed(self, callback: Callable[[str], None]) -> None:
        return None


class Cluster:
    """Many instances sharing Redis: its streams carry the run logs, its queue the runs, its
    leases who executes each, its pub/sub the control channel; limits hold across instances;
    external runs are held, leased and told of there."""

    def __init__(self, settings: Settings, hub: Hub, journal: Journal) -> None:
        self._settings = settings
        self._cluster: ClusterSupervisor | None = None
        self._run_changed: list[Callable[[str], None]] = []
        redis = settings.redis
        assert redis.url is not None
        self.broker: RedisBroker = RedisBroker(
            hub, redis.url, journal=journal, prefix=redis.prefix, retain_seconds=redis.retain_seconds
        )

    def supervisor(self, *, on_released: Callable[[str], None], **running: Unpack[RunSettings]) -> Supervising:
        s = self._settings
        queue = RunQueue(
            self.broker.redis,
            prefix=s.redis.prefix,
            instance=s.server.instance,
            lease_seconds=s.redis.lease_seconds,
        )
        cluster = ClusterSupervisor(
            queue=queue,
            ownership=self.broker,
            lease_seconds=s.redis.lease_seconds,
            max_queued=s.runs.max_queued,
            drain_seconds=s.server.drain_seconds,
            **running,
        )
        self._cluster = cluster
        self.broker.on_control = self._on_control
        cluster.on_released = on_released
        return cluster

    def _on_control(self, data: bytes) -> None:
        """A message on the control channel: for the external runs' long polls, or for runs."""
        match channel.decode(data):
            case RunChanged(run=run_id):
                for callback in self._run_changed:
                    callback(run_id)
            case None:
                pass
            case message:
                if self._cluster is not None:
                    self._cluster.on_message(message)

    def limiter(self) -> Limiter:
        s = self._settings
        return RedisLimiter(self.broker.redis, prefix=s.redis.prefix, instance=s.server.instance)

    def on_lost(self, callback: Callable[[], None]) -> None:
        self.broker.on_lost.append(callback)

    def ingest(self) -> tuple[Sharing, Leases]:
        redis, prefix = self.broker.redis, self._settings.redis.prefix
        sharing = RedisSharing(redis, self.broker, prefix=prefix, control=self.broker.control_channel)
        return sharing, RedisLeases(redis, prefix=prefix)

    def on_run_changed(self, callback: Callable[[str], None]) -> None:
        self._run_changed.append(callback)


def deployment(settings: Settings, hub: Hub, journal: Journal) -> Deployment:
    """``Cluster`` when the settings name a Redis, else ``SingleInstance``."""
    return (Cluster if settings.redis.url else SingleInstance)(settings, hub, journal)
