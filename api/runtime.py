"""Everything one runwatch process runs, built from ``Settings``: bus, store, supervisor, clients."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from runwatch.agents.bus import Broker, Bus, Hub, Node
from runwatch.agents.ingest import IngestService
from runwatch.agents.loop.agent import AgentRegistry, load_agents
from runwatch.agents.loop.prices import PriceTable, parse_prices
from runwatch.agents.loop.runner import Runner
from runwatch.agents.offline.demo import demo_agent
from runwatch.agents.redact import Redactor
from runwatch.agents.runs.limits import Limiter
from runwatch.agents.runs.service import RunService
from runwatch.agents.runs.supervising import Supervising
from runwatch.agents.store import Store
from runwatch.agents.store.credentials import Credentials
from runwatch.agents.store.retention import Retention
from runwatch.api.auth.authenticator import Authenticator
from runwatch.api.auth.provider import Provider
from runwatch.api.auth.tokens import new_secret
from runwatch.api.backends import open_credentials, open_store
from runwatch.api.model_client import ModelSocket, model_client
from runwatch.api.observability.collectors import LiveGauges
from runwatch.api.observability.metrics import Metrics
from runwatch.api.offline.serving import OfflineServing
from runwatch.api.settings.config import ConfigError, Settings
from runwatch.api.sse.parts import SseParts
from runwatch.api.watchers import Watchers
from runwatch.api.wiring import deployment
from runwatch.api.ws.lane import FastLane
from runwatch.api.ws.parts import WsParts
from runwatch.api.ws.presence import PresenceBoard

log = structlog.get_logger()


#: At shutdown, how long connected watchers are given to receive the runs' final events.
DRAIN_SECONDS = 2.0
#: After the bus has let go of this many bytes, the allocator is asked to return free memory to
#: the system (at most every ``TRIM_SECONDS``): glibc keeps freed blocks of event-sized objects.
TRIM_BYTES = 32 * 1024 * 1024
TRIM_SECONDS = 5.0
#: The interpreter's thread switch interval while serving (see ``Runtime.start``).
SWITCH_INTERVAL = 0.0005
#: How often open sockets' keys are checked for revocation, and their connection leases renewed.
PRINCIPAL_CHECK_SECONDS = 5.0


def _malloc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return partial(libc.malloc_trim, 0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give memory freed by evicted run logs back to the system (glibc's ``malloc_trim``)."""
    if _TRIM is not None:
        started = time.perf_counter()
        _TRIM()
        log.debug("memory.trimmed", took=round(time.perf_counter() - started, 4))


def _agents(settings: Settings) -> AgentRegistry:
    """The demo agent, and those of the modules ``RUNWATCH_AGENTS`` names."""
    registry = AgentRegistry([demo_agent(settings.agents.files_dir)])
    for module in settings.agents.modules:
        try:
            agents = load_agents(module)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"cannot load agents from {module!r}: {exc}; check RUNWATCH_AGENTS and PYTHONPATH"
            ) from exc
        for agent in agents:
            registry.add(agent)
    return registry


class Runtime:
    """The composition root: the only place that names concrete backends (the database ones it
    takes from ``api/backends.py``, as the commands that open the database do)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Open WebSockets and SSE streams, and the moments that end them (closing, broker lost).
        self.watchers = Watchers()
        self.store: Store = open_store(settings)
        self.credentials: Credentials = open_credentials(settings)
        self.retention = Retention(self.store, settings.store.retention_days)
        hub = Hub(log_capacity=settings.bus.log_capacity, memory_bytes=int(settings.bus.memory_mb * 1024 * 1024))
        #: Single instance or cluster: the one object that knows which (``api/wiring.py``).
        self.deployment = deployment(settings, hub, self.store)
        self.deployment.on_lost(self.watchers.lose_broker)
        #: Where positions are assigned and history kept: Redis with many instances, else this process.
        self.broker: Broker = self.deployment.broker
        self.bus: Bus = Node(hub, self.broker)
        self.registry = _agents(settings)
        self._model(settings)
        self.metrics_registry = CollectorRegistry()
        self.metrics = Metrics(
            agents={a.name: (a.model or settings.model.default, a.tool_names) for a in self.registry},
            registry=self.metrics_registry,
        )
        self._identity(settings)
        self._runs(settings)
        self._ingest(settings)
        self.presence = PresenceBoard()
        self.offline = OfflineServing(settings.offline_model.max_inflight_bytes)
        self.metrics_registry.register(LiveGauges(self.watchers, self.offline, self.supervisor, self.ingest))
        self._transports(settings)
        self._watchdog: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Future[None] | None = None

    def _model(self, settings: Settings) -> None:
        """The openai client runs stream with, and, with the offline model, how they reach it."""
        #: Where the offline model listens for this process's runs (``Server`` opens it), if anywhere.
        self.model_socket = ModelSocket.for_settings(settings)
        #: What this process's runs present to its offline model (``/v1`` needs a principal): made
        #: here, held in memory only, never logged; None with a real model endpoint.
        self.model_key: str | None = new_secret("rwm_") if settings.model.offline else None
        self.client = model_client(settings, self.model_socket, self.model_key)
        _ = self.client.chat.completions  # the SDK imports it on first use: now, not in the first run

    def _identity(self, settings: Settings) -> None:
        """Who is asking: keys, tokens, sessions; and the OpenID provider of dashboard logins, if any."""
        self.auth = Authenticator(settings, self.credentials, self.metrics.auth_failure)
        oidc = settings.oidc
        self.oidc: Provider | None = (
            Provider(oidc.issuer, oidc.client_id or "", oidc.client_secret, oidc.scopes) if oidc.issuer else None
        )

    def _runs(self, settings: Settings) -> None:
        """The agent loop, the supervisor of this instance's runs, limits, and the run service."""
        secrets = (*settings.secrets, self.model_key) if self.model_key else settings.secrets
        self.runner = Runner(
            self.client,
            self.bus.publish,
            coalesce_window=settings.runs.coalesce_ms / 1000,
            max_output_bytes=settings.runs.max_output_bytes,
            max_tool_result_bytes=settings.runs.max_tool_result_bytes,
            redact=Redactor(secrets),
            settle=self.bus.settled,
            prices=PriceTable(parse_prices(settings.model.prices)),
        )
        self.supervisor: Supervising = self.deployment.supervisor(
            on_released=self.metrics.released,
            bus=self.bus,
            store=self.store,
            registry=self.registry,
            runner=self.runner,
            default_model=settings.model.default,
            max_running=settings.runs.max_running,
            run_timeout=settings.runs.timeout,
            approval_timeout=settings.runs.approval_timeout,
            offline=settings.model.offline,
            secrets=settings.secrets,
            instance=settings.server.instance,
        )
        self.limiter: Limiter = self.deployment.limiter()
        self.service = RunService(
            bus=self.bus,
            store=self.store,
            supervisor=self.supervisor,
            max_input_bytes=settings.runs.max_input_bytes,
            limiter=self.limiter,
            runs_per_minute=settings.limits.runs_per_minute,
            tenant_max_active=settings.limits.tenant_max_active,
        )
        self.service.on_limited.append(self.metrics.limited)

    def _ingest(self, settings: Settings) -> None:
        """Runs agents elsewhere execute and report (the ingest API), on any instance; people's
        input to those runs goes from the run service to it."""
        registry = self.registry
        sharing, leases = self.deployment.ingest()
        self.ingest = IngestService(
            bus=self.bus,
            store=self.store,
            admission=self.service,
            secret=self.credentials.secret,
            own_agent=lambda name: registry.find(name) is not None,
            sharing=sharing,
            leases=leases,
            approval_timeout=settings.runs.approval_timeout,
            instance=settings.server.instance,
        )
        self.service.external = self.ingest
        self.deployment.on_run_changed(self.ingest.on_changed)

    def _transports(self, settings: Settings) -> None:
        """What ``/ws`` and the SSE endpoint are given of all this (their dependencies)."""
        self.fast_lane = FastLane()
        common = {
            "settings": settings,
            "service": self.service,
            "auth": self.auth,
            "metrics": self.metrics,
            "limiter": self.limiter,
            "bus": self.bus,
            "watchers": self.watchers,
        }
        self.ws_parts = WsParts(**common, presence=self.presence, lane=self.fast_lane)
        self.sse_parts = SseParts(**common)

    async def start(self, before_runs: Callable[[], Awaitable[None]] | None = None) -> None:
        """Open everything; ``before_runs`` is awaited once the stores and the bus are up, before
        runs left by a dead process are taken over (they start streaming at once)."""
        # The store's writer thread hands each batch back through the GIL a dozen times (every
        # SQLite call releases it). With the event loop busy, each hand-back waits out the switch
        # interval, 5 ms by default, which made a commit (so the visibility of every event) take
        # ~60 ms at full load; at 0.5 ms it takes a few. A lone loop thread pays nothing for it.
        sys.setswitchinterval(SWITCH_INTERVAL)
        await self.store.open()
        await self.credentials.open()  # after the store: its migrations make the tables
        await self.auth.start()
        await self.bus.start()
        if before_runs is not None:
            await before_runs()
        await self.supervisor.open()  # takes over what dead processes left (a cluster's: by their leases)
        await self.ingest.open()  # adopts the external runs left live, each keeping or getting a lease
        self.bus.add_sink(self.metrics)
        self.retention.start()
        self._watchdog = asyncio.create_task(self._watch_connections(), name="runwatch-ws-watchdog")

    async def _watch_connections(self) -> None:
        """One timer for every WebSocket and SSE stream: heartbeats and stuck sends (see
        ``Connection.tick``, ``SSEStream.tick``); and, every few seconds, memory the bus let go of
        handed back to the system."""
        s = self.settings
        interval = max(0.05, min(1.0, s.ws.heartbeat / 3, s.ws.send_timeout / 4))
        trimmed, next_trim = self.bus.freed, time.monotonic() + TRIM_SECONDS
        next_check, checking = time.monotonic() + PRINCIPAL_CHECK_SECONDS, None
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.watchers.connections):
                conn.tick(now)
            for stream in list(self.watchers.sse_streams):
                stream.tick(now)
            if now >= next_check and (checking is None or checking.done()):
                next_check = now + PRINCIPAL_CHECK_SECONDS
                checking = asyncio.create_task(self._check_principals(), name="runwatch-principal-check")
            if now >= next_trim:
                next_trim = now + TRIM_SECONDS
                if self.bus.freed - trimmed >= TRIM_BYTES:
                    trimmed = self.bus.freed
                    release_free_memory()

    async def _check_principals(self) -> None:
        """Close (4401) the sockets whose API key was revoked; renew the others' connection leases,
        and those of the SSE streams (they check their own keys)."""
        if not self.settings.auth.on:
            return
        conns = [c for c in self.watchers.connections if c.principal is not None]
        try:
            keys = sorted({c.principal.key_id for c in conns if c.principal.key_id})
            revoked = await self.credentials.revoked(keys) if keys else set()
            for conn in conns:
                if conn.principal.key_id in revoked:
                    conn.end(4401, "the key was revoked")
            leases = [(c.principal.id, c.id) for c in conns]
            leases += [(s.principal.id, s.id) for s in list(self.watchers.sse_streams)]
            await self.limiter.renew_connections(leases)
        except Exception as exc:  # the database or Redis away: try again at the next check
            log.warning("auth.check_failed", error=repr(exc))

    @property
    def ready_problem(self) -> str | None:
        """Why this instance cannot serve everything now (the broker is unreachable), or None."""
        return self.broker.problem

    def begin_shutdown(self) -> None:
        """Refuse new runs and cancel the live ones now; once they have ended, set ``closing``.

        Called on SIGTERM/SIGINT, before uvicorn drains open HTTP responses: runs must stop first,
        or their own streams from the offline model would hold the drain until its timeout.
        """
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._stop_runs())

    async def _stop_runs(self) -> None:
        try:
            await self.ingest.close()  # long polls answer now; external runs stay live for the next start
            await self.supervisor.shutdown(timeout=DRAIN_SECONDS * 2)
            try:  # every final event is then visible to its watchers (unless the disk is stuck)
                await asyncio.wait_for(self.store.flush(), DRAIN_SECONDS)
            except TimeoutError:
                log.error("runtime.final_events_not_durable", timeout=DRAIN_SECONDS)
        finally:
            self.watchers.close(time.monotonic() + DRAIN_SECONDS)

    async def drain(self) -> None:
        """Stop the runs, then give every WebSocket watcher up to ``DRAIN_SECONDS`` to receive what it
        is owed and be closed with 1001, before the server closes connections its own way."""
        self.begin_shutdown()
        await asyncio.shield(self._shutdown)
        # Each connection closes itself once drained (see ``ws._drain``); wait for the last one.
        while self.watchers.connections and time.monotonic() < self.watchers.drain_deadline + 0.5:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.drain()
        if self._watchdog is not None:
            self._watchdog.cancel()
        # Each part gets a bounded time: a broker or database that hangs must not hold the exit.
        parts: list[tuple[str, Callable[[], Any], float]] = [
            ("retention", self.retention.close, 1.0),
            ("supervisor", self.supervisor.close, 2.0),
            ("bus", self.bus.close, 2.0),
            ("store", self.store.close, 4.0),
            ("credentials", self.credentials.close, 1.0),
            ("model client", self.client.close, 1.0),
        ]
        for name, close, seconds in parts:
            try:
                await asyncio.wait_for(close(), seconds)
            except TimeoutError:
                log.error("runtime.close_timed_out", part=name, seconds=seconds)
        log.info("runtime.stopped")
