"""The sections of ``Settings``, one frozen struct per feature. Each field carries its environment
variable, help, flag and range in ``setting(...)`` (api/settings/base.py); the config file and every
message name a field by its variable's lower-case name (``RUNWATCH_WS_MAX_LAG`` is ``ws_max_lag``).

Upper bounds only where a bigger value breaks something or cannot be meant."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from runwatch.api.settings.base import Section, setting

DAY = 86_400.0
YEAR = 365 * DAY
KiB = 1024
MiB = 1024 * KiB

OnOff = Literal["on", "off"]


class Server(Section):
    """Where ``serve`` listens, and its name among many instances."""

    host: Annotated[str, setting("RUNWATCH_HOST", "address to listen on", flag="--host")] = "127.0.0.1"
    port: Annotated[int, setting("RUNWATCH_PORT", "port to listen on", flag="--port", ge=1, le=65535)] = 8000
    instance: Annotated[
        str,
        setting("RUNWATCH_INSTANCE", "this instance's name among many (default: host name and pid)", flag="--instance"),
    ] = msgspec.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    drain_seconds: Annotated[
        float,
        setting("RUNWATCH_DRAIN_SECONDS", "on SIGTERM, seconds running runs may go on before they stop", ge=0, le=DAY),
    ] = 0.0

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class Store(Section):
    """The database of runs, events, keys and sessions."""

    data_dir: Annotated[Path, setting("RUNWATCH_DATA_DIR", "folder of the SQLite database", flag="--data-dir")] = Path(
        "runwatch-data"
    )
    database_url: Annotated[
        str | None,
        setting(
            "RUNWATCH_DATABASE_URL",
            "postgresql://… selects PostgreSQL; a path or sqlite:///path an SQLite file (default: in the data folder)",
            flag="--database",
            secret="url",
        ),
    ] = None
    retention_days: Annotated[
        float,
        setting("RUNWATCH_RETENTION_DAYS", "finished runs older than this are deleted (0 = keep all)", ge=0, le=36_500),
    ] = 30.0

    @property
    def postgres(self) -> bool:
        """The store is PostgreSQL (``database_url`` is a ``postgresql://`` URL)."""
        return (self.database_url or "").startswith(("postgresql://", "postgres://"))

    @property
    def database(self) -> Path:
        """The SQLite file: ``database_url`` as a path or ``sqlite:///path``, else in the data folder."""
        url = self.database_url
        if not url or self.postgres:
            return self.data_dir / "runwatch.sqlite3"
        return Path(url.removeprefix("sqlite://")).expanduser() if url.startswith("sqlite://") else Path(url)


class Redis(Section):
    """Redis, which many instances share: the broker, the run queue, leases and the control channel."""

    url: Annotated[
        str | None,
        setting(
            "RUNWATCH_REDIS_URL",
            "redis://… turns on the Redis broker, run queue and control channel",
            flag="--redis",
            secret="url",
        ),
    ] = None
    prefix: Annotated[
        str, setting("RUNWATCH_REDIS_PREFIX", "prefix of every Redis key (deployments sharing one Redis differ)")
    ] = "runwatch:"
    #: An hour: long enough for watchers of a just-finished run to replay it from Redis.
    retain_seconds: Annotated[
        float,
        setting("RUNWATCH_REDIS_RETAIN_SECONDS", "seconds a finished run's stream stays in Redis", ge=0, le=YEAR),
    ] = 3600.0
    #: Renewed every quarter of it; a dead instance's runs wait this long.
    lease_seconds: Annotated[
        float, setting("RUNWATCH_LEASE_SECONDS", "a dead instance's runs are taken over within this", ge=1, le=DAY)
    ] = 10.0


class Model(Section):
    """The model endpoint runs talk to, and what its answers cost."""

    openai_base_url: Annotated[
        str | None,
        setting("OPENAI_BASE_URL", "OpenAI-compatible endpoint; unset with no key = offline model", secret="url"),
    ] = None
    openai_api_key: Annotated[
        str | None, setting("OPENAI_API_KEY", "API key of that endpoint (env or config file only)", secret="value")
    ] = None
    name: Annotated[str | None, setting("RUNWATCH_MODEL", "default model of agents that name none", flag="--model")] = (
        None
    )
    #: The openai SDK's transport: ``aiohttp`` (its DefaultAioHttpClient) reads a stream for a
    #: fraction of what ``httpx`` (its default) costs per chunk (bench/HISTORY.md).
    transport: Annotated[
        Literal["aiohttp", "httpx"],
        setting("RUNWATCH_MODEL_TRANSPORT", "HTTP transport to the model: aiohttp (cheaper per chunk) or httpx"),
    ] = "aiohttp"
    prices: Annotated[
        str,
        setting(
            "RUNWATCH_PRICES",
            'model prices, USD per million tokens, over the defaults: {"my-model": {"input": 0.5, "output": 1.5}}',
        ),
    ] = ""

    @property
    def offline(self) -> bool:
        """No endpoint and no key configured: serve and use the built-in offline model."""
        return not self.openai_base_url and not self.openai_api_key

    @property
    def default(self) -> str:
        """The model of agents that name none."""
        from runwatch.agents.offline.model import OFFLINE_MODEL

        if self.name:
            return self.name
        return OFFLINE_MODEL if self.offline else "gpt-4o-mini"


class OfflineModel(Section):
    """The built-in offline model: how runs reach it, who else may, and how much it may answer."""

    #: How the runner reaches the built-in offline model in its own process (api/model_client.py).
    socket: Annotated[
        str,
        setting(
            "RUNWATCH_MODEL_SOCKET",
            "with the offline model, runs read it over a Unix socket: auto (a private temp one), off (TCP) or a path",
        ),
    ] = "auto"
    #: /v1 answers anyone (third-party clients of the offline model); else it needs a principal.
    open: Annotated[
        bool,
        setting(
            "RUNWATCH_OFFLINE_MODEL_OPEN",
            "true: /v1/chat/completions (the offline model) answers anyone, without a credential",
        ),
    ] = False
    #: 64 MiB: ten million tokens of plain words; an answer that does not stream is sent a piece at
    #: a time, but it is all reserved in ``max_inflight_bytes`` while in flight.
    max_answer_bytes: Annotated[
        int,
        setting(
            "RUNWATCH_OFFLINE_MAX_ANSWER_BYTES",
            "most text one offline-model answer may hold (tokens x token size); a scenario asking more gets 413",
            ge=1,
        ),
    ] = 64 * MiB
    #: 256 MiB: four of the largest answers at once, or thousands of ordinary runs' answers.
    max_inflight_bytes: Annotated[
        int,
        setting(
            "RUNWATCH_OFFLINE_MAX_INFLIGHT_BYTES",
            "most text all offline-model answers in flight may hold together; past it a request gets 429",
            ge=1,
        ),
    ] = 256 * MiB


class Agents(Section):
    """The agents this server runs besides the demo one."""

    modules: Annotated[
        list[str], setting("RUNWATCH_AGENTS", "comma-separated modules whose Agent objects are loaded", flag="--agents")
    ] = msgspec.field(default_factory=list)
    files_dir: Annotated[Path | None, setting("RUNWATCH_FILES_DIR", "folder the demo agent's file tools may read")] = (
        None
    )


class Runs(Section):
    """How many runs at once, for how long, and how much each may take in and put out."""

    #: A longer window is not live any more.
    coalesce_ms: Annotated[
        float,
        setting(
            "RUNWATCH_COALESCE_MS", "token coalescing window in ms (0 = off)", flag="--coalesce-ms", ge=0, le=10_000
        ),
    ] = 25.0
    max_running: Annotated[
        int, setting("RUNWATCH_MAX_RUNNING", "runs executing at once", flag="--max-running", ge=1)
    ] = 8
    #: 0: no waiting room, a run beyond ``max_running`` answers 429.
    max_queued: Annotated[
        int, setting("RUNWATCH_MAX_QUEUED", "runs waiting for a slot before new ones get 429", ge=0)
    ] = 100
    timeout: Annotated[
        float, setting("RUNWATCH_RUN_TIMEOUT", "seconds a run may take (agents may set their own)", gt=0)
    ] = 600.0
    approval_timeout: Annotated[
        float,
        setting(
            "RUNWATCH_APPROVAL_TIMEOUT",
            "seconds a tool call waits for approval before it is denied (waiting is not run time)",
            gt=0,
        ),
    ] = 3600.0
    #: 256 KiB ≈ 64k tokens: more than a task prompt needs; the input travels in ``run.queued`` to
    #: every watcher of the runs feed and into the store.
    max_input_bytes: Annotated[
        int, setting("RUNWATCH_MAX_INPUT_BYTES", "largest run input; a bigger one answers 413", ge=1)
    ] = 256 * KiB
    #: 4 MiB ≈ 1M tokens: several times the longest answer today's models write in one call, while a
    #: runaway stream stops before it fills the store.
    max_output_bytes: Annotated[
        int, setting("RUNWATCH_MAX_OUTPUT_BYTES", "most output one model step may stream; more fails the run", ge=1)
    ] = 4 * MiB
    #: 1 MiB ≈ 250k tokens: beyond any context window the result is sent back into.
    max_tool_result_bytes: Annotated[
        int, setting("RUNWATCH_MAX_TOOL_RESULT_BYTES", "largest tool result (JSON); bigger is a tool error", ge=1)
    ] = 1 * MiB


class Bus(Section):
    """The in-memory logs of live runs, which watchers replay from."""

    log_capacity: Annotated[
        int, setting("RUNWATCH_LOG_CAPACITY", "events of a live run kept in memory for fast replay", ge=1)
    ] = 10_000
    memory_mb: Annotated[
        float,
        setting("RUNWATCH_BUS_MEMORY_MB", "MiB all in-memory run logs may hold; finished runs leave first", ge=1),
    ] = 256.0


class WebSocket(Section):
    """Live streams to watchers: WebSocket frames and their bounds (SSE shares the timeouts)."""

    max_message_bytes: Annotated[
        int, setting("RUNWATCH_WS_MAX_MESSAGE_BYTES", "largest client frame; bigger closes 1009", ge=1)
    ] = 64 * KiB
    max_lag: Annotated[
        int, setting("RUNWATCH_WS_MAX_LAG", "events a live watcher may fall behind before resync", ge=1)
    ] = 2_000
    send_timeout: Annotated[
        float,
        setting(
            "RUNWATCH_WS_SEND_TIMEOUT",
            "seconds a WebSocket frame (or SSE event) may wait to be taken before 1013 (the stream is cut)",
            gt=0,
        ),
    ] = 10.0
    frame_events: Annotated[int, setting("RUNWATCH_WS_FRAME_EVENTS", "most events in one WebSocket frame", ge=1)] = 500
    frame_bytes: Annotated[
        int, setting("RUNWATCH_WS_FRAME_BYTES", "a frame takes no more events once it is this big", ge=1)
    ] = 256 * KiB
    max_subscriptions: Annotated[
        int, setting("RUNWATCH_WS_MAX_SUBSCRIPTIONS", "subscriptions one connection may hold", ge=1)
    ] = 100
    message_rate: Annotated[
        float, setting("RUNWATCH_WS_MESSAGE_RATE", "client messages a second one connection may send", ge=1)
    ] = 200.0
    message_burst: Annotated[
        int, setting("RUNWATCH_WS_MESSAGE_BURST", "client messages one connection may send at once", ge=1)
    ] = 1_000
    connections_per_principal: Annotated[
        int,
        setting(
            "RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL",
            "WebSockets and SSE streams (one count) one principal may hold",
            ge=1,
        ),
    ] = 50
    direct_writes: Annotated[
        Literal["auto", "off"],
        setting("RUNWATCH_WS_DIRECT_WRITES", "auto: frames straight to uvicorn's sockets; off: ASGI only"),
    ] = "auto"
    #: Also the WebSocket ping interval.
    heartbeat: Annotated[
        float,
        setting("RUNWATCH_HEARTBEAT", "seconds of silence before a heartbeat; pings use it too", ge=0.1),
    ] = 15.0
    presence: Annotated[
        OnOff,
        setting("RUNWATCH_PRESENCE", "on (default): a run's watchers are told who else watches it; off: nobody is"),
    ] = "on"


class Logging(Section):
    """The log lines ``serve`` writes to stderr."""

    format: Annotated[
        Literal["console", "json"], setting("RUNWATCH_LOG_FORMAT", "console or json", flag="--log-format")
    ] = "console"
    level: Annotated[
        Literal["debug", "info", "warning", "error"],
        setting("RUNWATCH_LOG_LEVEL", "debug, info, warning or error", flag="--log-level"),
    ] = "info"
