"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from runwatch.agents.redact import mask_url
from runwatch.api import __version__
from runwatch.api.config import Settings
from runwatch.api.http_errors import EXCEPTION_HANDLERS, JSONRequest
from runwatch.api.observability import http_metrics, metrics
from runwatch.api.offline import chat_completions
from runwatch.api.runs import RunsController
from runwatch.api.runtime import Runtime
from runwatch.api.sse import run_stream
from runwatch.api.ws import ws_endpoint

log = structlog.get_logger()

#: The dashboard's static files: beside ``api/`` in a source checkout (and an editable install), and
#: at ``runwatch/dashboard`` (package data) beside ``runwatch/api`` in an installed wheel.
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


def _runtime(state: State) -> Runtime:
    return state.runtime


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    rt = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await rt.start()
        log.info(
            "runwatch.ready",
            url=rt.settings.public_url,
            model=rt.settings.default_model,
            endpoint="offline model (built in)" if rt.settings.offline else mask_url(rt.settings.model_base_url),
            database=mask_url(rt.settings.database_url or "") if rt.settings.postgres else str(rt.settings.database),
            broker=mask_url(rt.settings.redis_url) if rt.settings.redis_url else "memory",
            **({"redis_prefix": rt.settings.redis_prefix} if rt.settings.redis_url else {}),
            instance=rt.settings.instance,
            agents=[a.name for a in rt.registry],
        )
        try:
            yield
        finally:
            await rt.stop()

    handlers: list = [RunsController, run_stream, ws_endpoint, metrics]
    if settings.offline:
        handlers.append(chat_completions)
    if DASHBOARD.is_dir():
        handlers.append(
            create_static_files_router(path="/", directories=[DASHBOARD], html_mode=True, include_in_schema=False)
        )
    return Litestar(
        route_handlers=handlers,
        dependencies={"rt": Provide(_runtime, sync_to_thread=False)},
        state=State({"runtime": rt}),
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="runwatch", version=__version__, path="/schema"),
        request_max_body_size=1024 * 1024,
        middleware=[http_metrics.middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JSONRequest,
        logging_config=None,
    )
