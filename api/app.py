"""The Litestar application factory."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.file_system import BaseLocalFileSystem
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from runwatch.agents.redact import mask_url
from runwatch.api import __version__
from runwatch.api.auth.bootstrap import admin_key_path, ensure_admin_key, login_url
from runwatch.api.auth.hosts import AllowedHosts, HostCheck
from runwatch.api.auth.local_keys import forget_local, remember_local
from runwatch.api.auth.oidc import oidc_callback, oidc_login
from runwatch.api.auth.routes import LOCAL_ADMIN_KEY, AuthController, KeysController, local_proof
from runwatch.api.auth.web import AuthMiddleware
from runwatch.api.http_errors import EXCEPTION_HANDLERS, JSONRequest
from runwatch.api.ingest.routes import IngestController
from runwatch.api.observability.endpoint import http_metrics, metrics
from runwatch.api.offline.endpoint import chat_completions
from runwatch.api.rest.agents import agent_activity
from runwatch.api.rest.overview import overview
from runwatch.api.rest.people import PeopleController
from runwatch.api.rest.runs import RunsController, health
from runwatch.api.runtime import Runtime
from runwatch.api.settings.config import Settings
from runwatch.api.sse.endpoint import run_stream
from runwatch.api.ws.endpoint import ws_endpoint

log = structlog.get_logger()

#: The dashboard's static files: beside ``api/`` in a source checkout (and an editable install), and
#: at ``runwatch/dashboard`` (package data) beside ``runwatch/api`` in an installed wheel.
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


class DashboardFiles(BaseLocalFileSystem):
    """The dashboard's files. A path the system cannot look up (a NUL byte, a name too long, a file
    taken for a folder: ``/index.html%00.js``, ``/index.html/x``) is a file that is not there, 404,
    rather than a 500 with a traceback."""

    async def info(self, path: Any, **kwargs: Any) -> Any:
        try:
            return await super().info(path, **kwargs)
        except (ValueError, OSError):  # FileNotFoundError is an OSError too
            raise FileNotFoundError from None


def _dependencies(rt: Runtime) -> dict[str, Provide]:
    """What handlers may ask for by parameter name, each the narrowest part that serves them."""

    def value(part: object) -> Provide:
        return Provide(lambda: part, use_cache=True, sync_to_thread=False)

    parts: dict[str, object] = {
        "service": rt.service,
        "settings": rt.settings,
        "metrics": rt.metrics,
        "metrics_registry": rt.metrics_registry,
        "auth": rt.auth,
        "credentials": rt.credentials,
        "oidc": rt.oidc,
        "registry": rt.registry,
        "presence": rt.presence,
        "supervisor": rt.supervisor,
        "watchers": rt.watchers,
        "offline": rt.offline,
        "ws_parts": rt.ws_parts,
        "sse_parts": rt.sse_parts,
        "ingest": rt.ingest,
    }
    return {
        **{name: value(part) for name, part in parts.items()},
        # Asked each time: the broker may go away and come back.
        "ready_problem": Provide(lambda: rt.ready_problem, sync_to_thread=False),
    }


async def _login_banner(rt: Runtime) -> str:
    """The local admin key (made on first start) and, printed, the one-time login URL; returns the key."""
    key = await ensure_admin_key(rt.credentials, rt.settings.store.data_dir)
    remember_local(rt.settings.server.port, key)
    link = rt.settings.auth.login_link
    if link == "off" or (link == "auto" and not sys.stderr.isatty()):
        # Not on a terminal (a container's log, a service manager's journal): logs are read by
        # more people than the one starting the server. `runwatch keys` makes credentials there.
        sys.stderr.write(
            f"runwatch: the admin API key is in {admin_key_path(rt.settings.store.data_dir)}; "
            "RUNWATCH_LOGIN_LINK=on prints a one-time dashboard login link here\n"
        )
        return key
    url = await login_url(rt.auth, rt.credentials, key, rt.settings.server.public_url)
    # Printed, not logged: the code logs its first user in (once, within the hour), as Jupyter's
    # token URL does; log lines never carry a credential.
    sys.stderr.write(
        f"\n    Open the dashboard (this link logs you in once, within the hour):\n        {url}\n"
        f"    The admin API key is in {admin_key_path(rt.settings.store.data_dir)} (runwatch run finds it there).\n\n"
    )
    sys.stderr.flush()
    return key


def _host_check(settings: Settings) -> list[DefineMiddleware]:
    """The ``Host`` check (api/auth/hosts.py) when the settings ask for one: first, before anything."""
    allowed = AllowedHosts.of(settings)
    return [] if allowed is None else [DefineMiddleware(HostCheck, allowed=allowed, auth_on=settings.auth.on)]


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    """The app: its routes, the runtime started and stopped with it, the middleware in order."""
    rt = runtime or Runtime(settings)
    # What middleware and guards read (they cannot be given dependencies): the runtime itself is
    # only the lifespan's.
    state = State({"settings": rt.settings, "auth": rt.auth, "metrics": rt.metrics, "model_key": rt.model_key})

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await rt.start(before_runs=lambda: _announce(rt, state))
        try:
            yield
        finally:
            await rt.stop()
            key = state.pop(LOCAL_ADMIN_KEY, None)
            if key is not None:
                forget_local(rt.settings.server.port, key)

    return Litestar(
        route_handlers=_handlers(settings),
        dependencies=_dependencies(rt),
        state=state,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="runwatch", version=__version__, path="/schema"),
        request_max_body_size=1024 * 1024,
        middleware=[
            *_host_check(settings),
            http_metrics.middleware,
            DefineMiddleware(AuthMiddleware),
        ],
        cors_config=_cors(settings),
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JSONRequest,
        logging_config=None,
    )


async def _announce(rt: Runtime, state: State) -> None:
    """The startup line (where it listens, with what), the login banner, and warnings for what is open."""
    s = rt.settings
    log.info(
        "runwatch.ready",
        url=s.server.public_url,
        model=s.model.default,
        endpoint="offline model (built in)" if s.model.offline else mask_url(s.model_base_url),
        database=mask_url(s.store.database_url or "") if s.store.postgres else str(s.store.database),
        broker=mask_url(s.redis.url) if s.redis.url else "memory",
        **({"redis_prefix": s.redis.prefix} if s.redis.url else {}),
        instance=s.server.instance,
        agents=[a.name for a in rt.registry],
        auth="on" if s.auth.on else "OFF: anyone who reaches the port may read and start runs",
    )
    if s.auth.on:
        state[LOCAL_ADMIN_KEY] = await _login_banner(rt)
    else:
        log.warning("auth.off", message="RUNWATCH_AUTH=off: no request is authenticated; for tests and demos only")
    if s.model.offline and s.offline_model.open:
        log.warning(
            "offline_model.open",
            message="RUNWATCH_OFFLINE_MODEL_OPEN=true: /v1/chat/completions answers anyone who reaches the port,"
            " without a credential",
        )


def _handlers(settings: Settings) -> list[Any]:
    """The routes these settings serve: single sign-on when configured, the offline model when it
    is the model, the dashboard when the package has it."""
    handlers: list[Any] = [
        RunsController,
        overview,
        agent_activity,
        PeopleController,
        IngestController,
        AuthController,
        KeysController,
        health,
        local_proof,
        run_stream,
        ws_endpoint,
        metrics,
    ]
    if settings.oidc.issuer:
        handlers += [oidc_login, oidc_callback]
    if settings.model.offline:
        handlers.append(chat_completions)
    if DASHBOARD.is_dir():
        handlers.append(
            create_static_files_router(
                path="/",
                directories=[DASHBOARD],
                file_system=DashboardFiles(),
                html_mode=True,
                include_in_schema=False,
            )
        )
    return handlers


def _cors(settings: Settings) -> CORSConfig | None:
    if not settings.http.cors_origins:
        return None
    return CORSConfig(
        allow_origins=settings.http.cors_origins,
        allow_credentials=False,
        allow_headers=["authorization", "content-type"],
    )
