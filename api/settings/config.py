"""Settings: defaults, then a TOML config file, then environment variables, then command-line flags.

Secrets (the OpenAI key) come only from the environment or the config file, never from flags,
and ``Settings.__repr__`` never shows them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from runwatch.agents.loop.prices import PriceError, parse_prices
from runwatch.api.settings.ranges import RANGES, number

#: ``sun_path`` holds 108 bytes on Linux (104 on macOS) with its terminating NUL: keep under both.
MAX_SOCKET_PATH = 100

#: field name → (environment variable, help text). The table in docs/configuration.md mirrors this.
ENV: dict[str, tuple[str, str]] = {
    "host": ("RUNWATCH_HOST", "address to listen on"),
    "port": ("RUNWATCH_PORT", "port to listen on"),
    "data_dir": ("RUNWATCH_DATA_DIR", "folder of the SQLite database"),
    "database_url": (
        "RUNWATCH_DATABASE_URL",
        "postgresql://… selects PostgreSQL; a path or sqlite:///path an SQLite file (default: in the data folder)",
    ),
    "redis_url": ("RUNWATCH_REDIS_URL", "redis://… turns on the Redis broker, run queue and control channel"),
    "redis_prefix": ("RUNWATCH_REDIS_PREFIX", "prefix of every Redis key (deployments sharing one Redis differ)"),
    "redis_retain_seconds": ("RUNWATCH_REDIS_RETAIN_SECONDS", "seconds a finished run's stream stays in Redis"),
    "instance": ("RUNWATCH_INSTANCE", "this instance's name among many (default: host name and pid)"),
    "lease_seconds": ("RUNWATCH_LEASE_SECONDS", "a dead instance's runs are taken over within this"),
    "drain_seconds": ("RUNWATCH_DRAIN_SECONDS", "on SIGTERM, seconds running runs may go on before they stop"),
    "retention_days": ("RUNWATCH_RETENTION_DAYS", "finished runs older than this are deleted (0 = keep all)"),
    "openai_base_url": ("OPENAI_BASE_URL", "OpenAI-compatible endpoint; unset with no key = offline model"),
    "openai_api_key": ("OPENAI_API_KEY", "API key of that endpoint (env or config file only)"),
    "model": ("RUNWATCH_MODEL", "default model of agents that name none"),
    "agents": ("RUNWATCH_AGENTS", "comma-separated modules whose Agent objects are loaded"),
    "files_dir": ("RUNWATCH_FILES_DIR", "folder the demo agent's file tools may read"),
    "model_transport": (
        "RUNWATCH_MODEL_TRANSPORT",
        "HTTP transport to the model: aiohttp (cheaper per chunk) or httpx",
    ),
    "model_socket": (
        "RUNWATCH_MODEL_SOCKET",
        "with the offline model, runs read it over a Unix socket: auto (a private temp one), off (TCP) or a path",
    ),
    "offline_model_open": (
        "RUNWATCH_OFFLINE_MODEL_OPEN",
        "true: /v1/chat/completions (the offline model) answers anyone, without a credential",
    ),
    "offline_max_answer_bytes": (
        "RUNWATCH_OFFLINE_MAX_ANSWER_BYTES",
        "most text one offline-model answer may hold (tokens x token size); a scenario asking more gets 413",
    ),
    "offline_max_inflight_bytes": (
        "RUNWATCH_OFFLINE_MAX_INFLIGHT_BYTES",
        "most text all offline-model answers in flight may hold together; past it a request gets 429",
    ),
    "coalesce_ms": ("RUNWATCH_COALESCE_MS", "token coalescing window in ms (0 = off)"),
    "max_running": ("RUNWATCH_MAX_RUNNING", "runs executing at once"),
    "max_queued": ("RUNWATCH_MAX_QUEUED", "runs waiting for a slot before new ones get 429"),
    "run_timeout": ("RUNWATCH_RUN_TIMEOUT", "seconds a run may take (agents may set their own)"),
    "prices": (
        "RUNWATCH_PRICES",
        'model prices, USD per million tokens, over the defaults: {"my-model": {"input": 0.5, "output": 1.5}}',
    ),
    "approval_timeout": (
        "RUNWATCH_APPROVAL_TIMEOUT",
        "seconds a tool call waits for approval before it is denied (waiting is not run time)",
    ),
    "log_capacity": ("RUNWATCH_LOG_CAPACITY", "events of a live run kept in memory for fast replay"),
    "bus_memory_mb": ("RUNWATCH_BUS_MEMORY_MB", "MiB all in-memory run logs may hold; finished runs leave first"),
    "max_input_bytes": ("RUNWATCH_MAX_INPUT_BYTES", "largest run input; a bigger one answers 413"),
    "max_output_bytes": ("RUNWATCH_MAX_OUTPUT_BYTES", "most output one model step may stream; more fails the run"),
    "max_tool_result_bytes": ("RUNWATCH_MAX_TOOL_RESULT_BYTES", "largest tool result (JSON); bigger is a tool error"),
    "ws_max_message_bytes": ("RUNWATCH_WS_MAX_MESSAGE_BYTES", "largest client frame; bigger closes 1009"),
    "ws_max_lag": ("RUNWATCH_WS_MAX_LAG", "events a live watcher may fall behind before resync"),
    "ws_send_timeout": (
        "RUNWATCH_WS_SEND_TIMEOUT",
        "seconds a WebSocket frame (or SSE event) may wait to be taken before 1013 (the stream is cut)",
    ),
    "ws_frame_events": ("RUNWATCH_WS_FRAME_EVENTS", "most events in one WebSocket frame"),
    "ws_frame_bytes": ("RUNWATCH_WS_FRAME_BYTES", "a frame takes no more events once it is this big"),
    "ws_max_subscriptions": ("RUNWATCH_WS_MAX_SUBSCRIPTIONS", "subscriptions one connection may hold"),
    "ws_message_rate": ("RUNWATCH_WS_MESSAGE_RATE", "client messages a second one connection may send"),
    "ws_message_burst": ("RUNWATCH_WS_MESSAGE_BURST", "client messages one connection may send at once"),
    "ws_direct_writes": ("RUNWATCH_WS_DIRECT_WRITES", "auto: frames straight to uvicorn's sockets; off: ASGI only"),
    "heartbeat": ("RUNWATCH_HEARTBEAT", "seconds of silence before a heartbeat; pings use it too"),
    "presence": ("RUNWATCH_PRESENCE", "on (default): a run's watchers are told who else watches it; off: nobody is"),
    "auth": ("RUNWATCH_AUTH", "on (default): every request needs a principal; off: none do (tests and demos only)"),
    "jwt_secret": ("RUNWATCH_JWT_SECRET", "HS256 secret of the JWTs to accept (env or config file only)"),
    "jwt_jwks": ("RUNWATCH_JWT_JWKS", "URL or file of the JWKS whose RS256/ES256 keys sign the JWTs to accept"),
    "jwt_issuer": ("RUNWATCH_JWT_ISSUER", "required iss of JWTs"),
    "jwt_audience": ("RUNWATCH_JWT_AUDIENCE", "required aud of JWTs"),
    "jwt_tenant_claim": ("RUNWATCH_JWT_TENANT_CLAIM", "JWT claim naming the tenant"),
    "jwt_roles_claim": ("RUNWATCH_JWT_ROLES_CLAIM", "JWT claim listing the roles (viewer, operator, admin)"),
    "oidc_issuer": ("RUNWATCH_OIDC_ISSUER", "OpenID Connect provider for dashboard logins (its issuer URL)"),
    "oidc_client_id": ("RUNWATCH_OIDC_CLIENT_ID", "runwatch's client id at that provider"),
    "oidc_client_secret": ("RUNWATCH_OIDC_CLIENT_SECRET", "its client secret (env or config file only)"),
    "oidc_scopes": ("RUNWATCH_OIDC_SCOPES", "scopes asked for at login"),
    "session_hours": ("RUNWATCH_SESSION_HOURS", "hours a dashboard login lasts"),
    "login_link": (
        "RUNWATCH_LOGIN_LINK",
        "print a one-time dashboard login link at start: auto (on a terminal), on, off",
    ),
    "session_secret": (
        "RUNWATCH_SESSION_SECRET",
        "signs the OIDC login state cookie (default: in the database)",
    ),
    "metrics_token": ("RUNWATCH_METRICS_TOKEN", "bearer token Prometheus scrapes /metrics with"),
    "metrics_open": ("RUNWATCH_METRICS_OPEN", "true: /metrics needs no token (only behind a private network)"),
    "allowed_origins": (
        "RUNWATCH_ALLOWED_ORIGINS",
        "comma-separated origins (besides ours) whose pages may connect",
    ),
    "allowed_hosts": ("RUNWATCH_ALLOWED_HOSTS", "Host names answered besides loopback (default: any; auth off: none)"),
    "cors_origins": ("RUNWATCH_CORS_ORIGINS", "comma-separated origins CORS allows (default: none, CORS off)"),
    "runs_per_minute": ("RUNWATCH_RUNS_PER_MINUTE", "runs one principal may start a minute"),
    "tenant_max_active": ("RUNWATCH_TENANT_MAX_ACTIVE", "runs one tenant may have queued or running at once"),
    "ws_connections_per_principal": (
        "RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL",
        "WebSockets and SSE streams (one count) one principal may hold",
    ),
    "max_header_bytes": ("RUNWATCH_MAX_HEADER_BYTES", "largest request line and headers, in bytes; larger answers 431"),
    "max_headers": ("RUNWATCH_MAX_HEADERS", "most headers in one request; more answers 431"),
    "request_timeout": ("RUNWATCH_REQUEST_TIMEOUT", "seconds a request (head and body) has to arrive whole, or 408"),
    "max_connections": (
        "RUNWATCH_MAX_CONNECTIONS",
        "connections at once, HTTP and WebSocket (see docs/security.md, Limits)",
    ),
    "log_format": ("RUNWATCH_LOG_FORMAT", "console or json"),
    "log_level": ("RUNWATCH_LOG_LEVEL", "debug, info, warning or error"),
}


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("runwatch-data")
    database_url: str | None = field(default=None, repr=False)  # it may hold a password
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = "runwatch:"
    #: An hour: long enough for watchers of a just-finished run to replay it from Redis.
    redis_retain_seconds: float = 3600.0
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_seconds: float = 10.0
    drain_seconds: float = 0.0
    retention_days: float = 30.0
    openai_base_url: str | None = field(default=None, repr=False)  # it may hold user:password
    openai_api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    agents: list[str] = field(default_factory=list)
    files_dir: Path | None = None
    #: The openai SDK's transport: ``aiohttp`` (its DefaultAioHttpClient) reads a stream for a
    #: fraction of what ``httpx`` (its default) costs per chunk (bench/HISTORY.md).
    model_transport: str = "aiohttp"
    #: How the runner reaches the built-in offline model in its own process (api/model_client.py).
    model_socket: str = "auto"
    #: /v1 answers anyone (third-party clients of the offline model); else it needs a principal.
    offline_model_open: bool = False
    #: 64 MiB: ten million tokens of plain words; an answer that does not stream is sent a piece at
    #: a time, but it is all reserved in ``offline_max_inflight_bytes`` while in flight.
    offline_max_answer_bytes: int = 64 * 1024 * 1024
    #: 256 MiB: four of the largest answers at once, or thousands of ordinary runs' answers.
    offline_max_inflight_bytes: int = 256 * 1024 * 1024
    coalesce_ms: float = 25.0
    max_running: int = 8
    max_queued: int = 100
    run_timeout: float = 600.0
    approval_timeout: float = 3600.0
    prices: str = ""
    log_capacity: int = 10_000
    bus_memory_mb: float = 256.0
    #: 256 KiB ≈ 64k tokens: more than a task prompt needs; the input travels in ``run.queued`` to
    #: every watcher of the runs feed and into the store.
    max_input_bytes: int = 256 * 1024
    #: 4 MiB ≈ 1M tokens: several times the longest answer today's models write in one call, while a
    #: runaway stream stops before it fills the store.
    max_output_bytes: int = 4 * 1024 * 1024
    #: 1 MiB ≈ 250k tokens: beyond any context window the result is sent back into.
    max_tool_result_bytes: int = 1024 * 1024
    ws_max_message_bytes: int = 64 * 1024
    ws_max_lag: int = 2_000
    ws_send_timeout: float = 10.0
    ws_frame_events: int = 500
    ws_frame_bytes: int = 256 * 1024
    ws_max_subscriptions: int = 100
    ws_message_rate: float = 200.0
    ws_message_burst: int = 1_000
    ws_direct_writes: str = "auto"
    heartbeat: float = 15.0
    auth: str = "on"
    presence: str = "on"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_scopes: str = "openid profile email"
    session_hours: float = 12.0
    login_link: str = "auto"
    session_secret: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    metrics_open: bool = False
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    runs_per_minute: float = 60.0
    tenant_max_active: int = 100
    ws_connections_per_principal: int = 50
    #: 32 KiB: a large identity provider's JWT (8 KiB with groups) and a browser's cookies for the
    #: host fit, twice over; Node allows 16 KiB, nginx 32 KiB (4 x 8 KiB lines).
    max_header_bytes: int = 32 * 1024
    #: Apache's default; browsers send about 20.
    max_headers: int = 100
    #: A request arrives whole within this (a 1 MiB body at 1 Mbit/s takes 8 s); a slow-loris
    #: connection holds its socket no longer.
    request_timeout: float = 15.0
    #: Below the open-file limit ``serve`` can get (it raises its soft limit to fit; see api/front_door.py).
    max_connections: int = 10_000
    log_format: str = "console"
    log_level: str = "info"

    @property
    def offline(self) -> bool:
        """No endpoint and no key configured: serve and use the built-in offline model."""
        return not self.openai_base_url and not self.openai_api_key

    @property
    def default_model(self) -> str:
        from runwatch.agents.offline.model import OFFLINE_MODEL

        if self.model:
            return self.model
        return OFFLINE_MODEL if self.offline else "gpt-4o-mini"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def model_base_url(self) -> str:
        if self.offline:
            return self.public_url + "/v1"
        return self.openai_base_url or "https://api.openai.com/v1"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the endpoint's API key and the password in its URL."""
        from runwatch.agents.redact import endpoint_secrets, url_password

        found = endpoint_secrets(self.openai_base_url, self.openai_api_key)
        own = [s for s in (self.jwt_secret, self.session_secret, self.metrics_token, self.oidc_client_secret) if s]
        return tuple(dict.fromkeys([*found, *url_password(self.database_url), *url_password(self.redis_url), *own]))

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"

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


class ConfigError(ValueError):
    pass


def _host_entry(host: str) -> bool:
    """An entry of ``allowed_hosts``: ``*``, a name, ``*.`` and a name, or an IP address."""
    if host == "*":
        return True
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        name = host.removeprefix("*.")
        return re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", name) is not None


#: How a value of each field type is described when it cannot be one.
KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false"}

#: The ``serve`` flags whose names are not the setting's (``--data-dir`` is ``data_dir``'s).
FLAGS = {"database_url": "--database", "redis_url": "--redis"}

#: The settings that take one of a few words, and those words.
CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("console", "json"),
    "ws_direct_writes": ("auto", "off"),
    "model_transport": ("aiohttp", "httpx"),
    "presence": ("on", "off"),
    "auth": ("on", "off"),
    "login_link": ("auto", "on", "off"),
}


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _convert(name: str, value: Any, where: str) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = kinds[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind in ("Path", "Path | None"):
            return Path(value).expanduser() if value not in (None, "") else None
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind == "list[str]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return [s.strip() for s in items if s.strip()]
        return str(value) if value is not None else None
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {KINDS.get(kind, kind)}, got {value!r}; {where}") from None


def _check_values(settings: Settings, where: dict[str, str]) -> None:
    """Every numeric setting within its range (api/settings/ranges.py) and every word one of its choices,
    or one error that names the setting and where its value came from."""
    where = {name: f"set {var} to another value" for name, (var, _) in ENV.items()} | where
    for name, allowed in RANGES.items():
        value = getattr(settings, name)
        if not allowed.allows(value):
            raise ConfigError(f"{name} must be {allowed}, got {number(value)}; {where[name]}")
    for name, words in CHOICES.items():
        value = getattr(settings, name).lower()
        if value not in words:
            allowed = f"{', '.join(words[:-1])} or {words[-1]}"
            raise ConfigError(f"{name} must be {allowed}, got {value!r}; {where[name]}")
        setattr(settings, name, value)


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings from the config file (``--config`` or ``RUNWATCH_CONFIG``), env and flags."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    #: How to change each value, where it came from: ``set RUNWATCH_PORT to …``, ``pass --port with …``, ….
    where: dict[str, str] = {}
    path = config_file or environ.get("RUNWATCH_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        if isinstance(data.get("prices"), dict):  # a [prices] table in the config file
            data["prices"] = json.dumps(data["prices"])
        unknown = set(data) - set(ENV)
        if unknown:
            raise ConfigError(f"config file {path}: unknown settings {', '.join(sorted(unknown))}")
        values.update(data)
        where.update({name: f"change {name} in {path}" for name in data})
    for name, (var, _) in ENV.items():
        if environ.get(var):
            values[name] = environ[var]
            where[name] = f"set {var} to another value"
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(given)
    where.update({name: f"pass {flag(name)} with another value" for name in given})
    settings = Settings(**{k: _convert(k, v, where[k]) for k, v in values.items()})
    _check_values(settings, where)
    if settings.model_socket not in ("auto", "off") and not (
        os.path.isabs(settings.model_socket) and len(os.fsencode(settings.model_socket)) <= MAX_SOCKET_PATH
    ):
        raise ConfigError(
            f"model_socket must be auto, off or an absolute path of at most {MAX_SOCKET_PATH} bytes,"
            f" got {settings.model_socket!r}; check RUNWATCH_MODEL_SOCKET"
        )
    if settings.database_url and "://" in settings.database_url:
        if not settings.postgres and not settings.database_url.startswith("sqlite://"):
            raise ConfigError(
                "database_url must be postgresql://user@host/db, sqlite:///path or a path; "
                "check RUNWATCH_DATABASE_URL or --database"
            )
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis_url must be redis://host:port/db (or rediss://); check RUNWATCH_REDIS_URL or --redis")
    try:
        parse_prices(settings.prices)
    except PriceError as exc:
        raise ConfigError(f"{exc}; check RUNWATCH_PRICES") from None
    if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < 32:
        raise ConfigError("RUNWATCH_JWT_SECRET must be at least 32 bytes (HS256 wants a key as long as its hash)")
    if (settings.jwt_secret or settings.jwt_jwks) and not (settings.jwt_issuer and settings.jwt_audience):
        raise ConfigError(
            "JWTs are accepted only from a named issuer for a named audience: set RUNWATCH_JWT_ISSUER and "
            "RUNWATCH_JWT_AUDIENCE (another application's tokens from the same provider must not work here)"
        )
    if settings.oidc_issuer and not settings.oidc_client_id:
        raise ConfigError("RUNWATCH_OIDC_ISSUER needs RUNWATCH_OIDC_CLIENT_ID (and usually a client secret)")
    for host in settings.allowed_hosts:
        if not _host_entry(host):
            hint = "like example.com, *.example.com, 10.0.0.5 or *; check RUNWATCH_ALLOWED_HOSTS"
            raise ConfigError(f"allowed host {host!r} must be a name or address without scheme or port, {hint}")
    for origin in settings.allowed_origins + settings.cors_origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"origin {origin!r} must look like https://host[:port]; check RUNWATCH_ALLOWED_ORIGINS")
    if settings.offline_max_inflight_bytes < settings.offline_max_answer_bytes:
        raise ConfigError(
            f"offline_max_inflight_bytes ({settings.offline_max_inflight_bytes}) must be at least"
            f" offline_max_answer_bytes ({settings.offline_max_answer_bytes}), or the largest answer could never"
            " be served; check RUNWATCH_OFFLINE_MAX_INFLIGHT_BYTES and RUNWATCH_OFFLINE_MAX_ANSWER_BYTES"
        )
    return settings
