"""Everything one runwatch process runs, built from ``Settings``: bus, store, supervisor, clients."""

from __future__ import annotations

import asyncio
import time

import structlog
from openai import AsyncOpenAI
from prometheus_client import CollectorRegistry

from runwatch.agents.agent import AgentRegistry, load_agents
from runwatch.agents.bus import MemoryBus
from runwatch.agents.demo import demo_agent
from runwatch.agents.history import History
from runwatch.agents.runner import Runner
from runwatch.agents.store import SQLiteStore
from runwatch.agents.supervisor import Supervisor
from runwatch.api.config import ConfigError, Settings
from runwatch.api.lane import FastLane
from runwatch.api.metrics import LiveGauges, Metrics

log = structlog.get_logger()


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus = MemoryBus(log_capacity=settings.log_capacity)
        self.store = SQLiteStore(settings.database)
        self.history = History(self.bus, self.store)
        self.registry = AgentRegistry([demo_agent(settings.files_dir)])
        for module in settings.agents:
            try:
                agents = load_agents(module)
            except (ImportError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load agents from {module!r}: {exc}; check RUNWATCH_AGENTS and PYTHONPATH"
                ) from exc
            for agent in agents:
                self.registry.add(agent)
        self.client = AsyncOpenAI(
            base_url=settings.model_base_url,
            api_key=settings.openai_api_key or "offline",
            max_retries=0 if settings.offline else 2,
        )
        self.metrics_registry = CollectorRegistry()
        self.metrics = Metrics(
            agents={a.name: (a.model or settings.default_model, a.tool_names) for a in self.registry},
            registry=self.metrics_registry,
        )
        self.metrics_registry.register(LiveGauges(self))
        self.runner = Runner(
            self.client,
            self.bus.publish,
            coalesce_window=settings.coalesce_ms / 1000,
            max_output_bytes=settings.max_output_bytes,
            max_tool_result_bytes=settings.max_tool_result_bytes,
        )
        self.supervisor = Supervisor(
            bus=self.bus,
            store=self.store,
            registry=self.registry,
            runner=self.runner,
            default_model=settings.default_model,
            max_running=settings.max_running,
            max_queued=settings.max_queued,
            run_timeout=settings.run_timeout,
            offline=settings.offline,
            max_input_bytes=settings.max_input_bytes,
        )
        #: Set when shutdown begins: SSE streams end and WebSocket connections close with 1001.
        self.closing = asyncio.Event()
        self.connections: set = set()
        #: Wake-ups of open SSE streams, so shutdown can end them at once.
        self.sse_streams: set = set()
        #: Offline model streams being served right now (so tests can see cancel closes them).
        self.offline_streams = 0
        self._watchdog: asyncio.Task[None] | None = None
        self.fast_lane = FastLane()
        self._shutdown: asyncio.Future[None] | None = None

    async def start(self) -> None:
        await self.store.open()
        interrupted = await self.store.mark_interrupted()
        for published in interrupted:
            log.warning("run.interrupted", run_id=published.run_id, seq=published.seq)
        self.bus.add_sink(self.store)
        self.bus.add_sink(self.metrics)
        self._watchdog = asyncio.create_task(self._watch_connections(), name="runwatch-ws-watchdog")

    async def _watch_connections(self) -> None:
        """One timer for every WebSocket: heartbeats and stuck sends (see ``Connection.tick``)."""
        s = self.settings
        interval = max(0.05, min(1.0, s.heartbeat / 3, s.ws_send_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.tick(now)

    def begin_shutdown(self) -> None:
        """Cancel runs and end live streams now.

        Called on SIGTERM/SIGINT, before uvicorn drains open HTTP responses: runs must stop first,
        or their own streams from the offline model would hold the drain until its timeout.
        """
        if self.closing.is_set():
            return
        self.closing.set()
        for wake in list(self.sse_streams):
            wake.notify("*", 0)
        self._shutdown = asyncio.ensure_future(self.supervisor.shutdown())

    async def stop(self) -> None:
        self.begin_shutdown()
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self._shutdown
        await self.store.close()
        await self.client.close()
        log.info("runtime.stopped")
