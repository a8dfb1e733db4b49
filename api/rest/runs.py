"""REST: start, list, inspect, replay and cancel runs; list agents; health."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, route
from litestar.enums import HttpMethod
from litestar.openapi import ResponseSpec
from litestar.params import Body, BodyKwarg, Dependency, Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from runwatch.agents.errors import ErrorCode
from runwatch.agents.events import RunStatus
from runwatch.agents.identity import Role
from runwatch.agents.loop.agent import AgentRegistry
from runwatch.agents.runs.service import RunService
from runwatch.agents.runs.supervising import Supervising
from runwatch.agents.runs.threads import IfBusy
from runwatch.agents.store import RunPage, RunQuery, RunSummary
from runwatch.agents.store.base import Order, Sort
from runwatch.agents.store.run_query import CURSOR
from runwatch.api import __version__
from runwatch.api.auth.web import requires
from runwatch.api.http_errors import error_responses
from runwatch.api.offline.serving import OfflineServing
from runwatch.api.settings.config import Settings
from runwatch.api.watchers import Watchers

#: The largest ``after`` a client may send: positions are JSON numbers, exact in every client up to 2**53 - 1
#: (a float-typed schema bound past that rounds above what the server accepts).
MAX_AFTER = 2**53 - 1


class StartRun(msgspec.Struct, forbid_unknown_fields=True):
    agent: str
    #: What the agent should do. The pattern is documentation: the run service refuses a blank input
    #: with ``empty_input`` and a sentence saying so, clearer than a regex mismatch.
    input: Annotated[str, BodyKwarg(pattern=r"\S", description="What the agent should do; not blank")]
    #: Continue this thread: the model sees its earlier runs. Omitted: the run starts a new thread.
    thread: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: When the thread has an active run: ``reject`` (409 ``thread_busy``), ``queue`` (run after
    #: it) or ``interrupt`` (cancel it, then run).
    if_busy: IfBusy = "reject"


class RunAccepted(msgspec.Struct):
    id: str
    agent: str
    model: str
    status: str
    offline: bool
    events: str
    stream: str
    #: The run's thread: pass it as ``thread`` to continue the conversation.
    thread: str


class EventsPage(msgspec.Struct):
    run_id: str
    #: The run's events in seq order, each as the WebSocket ``event`` messages carry them.
    events: list[dict[str, Any]]
    #: The seq to pass as ``after`` for the next page.
    next_after: int
    #: True when the page is full: ask again from ``next_after``.
    more: bool


class Cancelling(msgspec.Struct):
    id: str
    #: "cancelling", or "cancelled" when the run had already ended cancelled.
    status: str = "cancelling"


class AgentInfo(msgspec.Struct):
    name: str
    description: str
    model: str
    tools: list[str]
    max_steps: int


class Health(msgspec.Struct, omit_defaults=True):
    """Without a principal only ``status``, ``version`` and ``problem`` are answered."""

    #: ``ok``; ``unavailable`` (answered with 503: see ``problem``); ``closing`` (shutting down).
    status: str
    version: str
    offline: bool | None = None
    model: str | None = None
    running: int | None = None
    queued: int | None = None
    connections: int | None = None
    offline_streams: int | None = None
    #: Of those, how many the pacer writes straight to their sockets (api/offline/pacer.py).
    offline_paced: int | None = None
    #: This instance's name (``RUNWATCH_INSTANCE``).
    instance: str | None = None
    #: Why the instance is not ready (the broker is unreachable), or null.
    problem: str | None = None


#: Every answer a handler that needs a principal can give besides its own.
AUTH_ERRORS = (ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN)


class RunsController(Controller):
    path = "/api"
    tags = ["runs"]
    guards = [requires(Role.VIEWER)]

    @route("/runs", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allow_runs(self) -> Response[None]:
        # Litestar's own OPTIONS answer for a path with two handlers names only the first one's method
        # (its closure holds the first route built), so say them all here. A controller registers its
        # handlers sorted by name: this one's sorts first, so no route of this path is built without it.
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "GET, OPTIONS, POST"})

    @post(
        "/runs",
        status_code=HTTP_202_ACCEPTED,
        summary="Start a run",
        responses=error_responses(
            ErrorCode.BAD_JSON,
            ErrorCode.EMPTY_INPUT,
            ErrorCode.INPUT_TOO_LARGE,
            ErrorCode.UNKNOWN_AGENT,
            ErrorCode.UNKNOWN_THREAD,
            ErrorCode.THREAD_BUSY,
            ErrorCode.QUEUE_FULL,
            ErrorCode.SHUTTING_DOWN,
            ErrorCode.UNAVAILABLE,
            ErrorCode.RATE_LIMITED,
            *AUTH_ERRORS,
        ),
        guards=[requires(Role.OPERATOR)],
    )
    async def start_run(
        self,
        data: Annotated[StartRun, Body(schema_extra={"additionalProperties": False})],
        request: Request,
        service: RunService,
        settings: Settings,
    ) -> RunAccepted:
        handle = await service.start(
            data.agent, data.input, principal=request.user, thread=data.thread, if_busy=data.if_busy
        )
        return RunAccepted(
            id=handle.id,
            agent=handle.agent,
            model=handle.model,
            status="queued",
            offline=settings.model.offline,
            events=f"/api/runs/{handle.id}/events",
            stream=f"/api/runs/{handle.id}/stream",
            thread=handle.thread,
        )

    @get(
        "/runs",
        summary="List runs of your tenant (an admin: of all, or of ?tenant=): search, filter, sort",
        responses=error_responses(ErrorCode.BAD_REQUEST, *AUTH_ERRORS),
    )
    async def list_runs(
        self,
        request: Request,
        service: RunService,
        status: RunStatus | None = None,
        agent: Annotated[str | None, Parameter(max_length=64)] = None,
        model: Annotated[str | None, Parameter(max_length=128)] = None,
        tenant: Annotated[str | None, Parameter(max_length=64)] = None,
        q: Annotated[
            str | None,
            Parameter(
                max_length=200,
                description="Search: each word, as a prefix, in the input, answer or error; or an id prefix",
            ),
        ] = None,
        since: Annotated[float | None, Parameter(description="Runs created at or after (epoch seconds)")] = None,
        until: Annotated[float | None, Parameter(description="Runs created before (epoch seconds)")] = None,
        sort: Annotated[Sort, Parameter(description="created (default), duration, tokens or cost")] = "created",
        order: Order = "desc",
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: Annotated[
            str | None,
            Parameter(pattern=CURSOR, description="The previous page's next (it carries its sort and order)"),
        ] = None,
    ) -> RunPage:
        # The service keeps a non-admin to its own tenant (``tenant`` is an admin's choice).
        query = RunQuery(
            q=q,
            status=status.value if status else None,
            agent=agent,
            model=model,
            tenant=tenant,
            since=since,
            until=until,
            sort=sort,
            order=order,
            limit=limit,
            cursor=cursor,
        )
        return await service.list(query, principal=request.user)

    @get(
        "/runs/{run_id:str}",
        summary="One run's summary",
        responses=error_responses(ErrorCode.UNKNOWN_RUN, *AUTH_ERRORS),
    )
    async def get_run(self, run_id: str, request: Request, service: RunService) -> RunSummary:
        return await service.get(run_id, principal=request.user)

    @get(
        "/runs/{run_id:str}/events",
        summary="Replay a run's events after a seq, a page at a time",
        responses={
            200: ResponseSpec(EventsPage, description="A page of events", generate_examples=False),
            **error_responses(ErrorCode.UNKNOWN_RUN, *AUTH_ERRORS),
        },
    )
    async def run_events(
        self,
        run_id: str,
        request: Request,
        service: RunService,
        after: Annotated[int, Parameter(ge=0, le=MAX_AFTER)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=5000)] = 1000,
    ) -> Response[bytes]:
        items = await service.events(run_id, after, limit, principal=request.user)
        last = items[-1].seq if items else after
        body = (
            b'{"run_id":'
            + msgspec.json.encode(run_id)
            + b',"events":['
            + b",".join(p.data for p in items)
            + b'],"next_after":'
            + str(last).encode()
            + b',"more":'
            + (b"true" if len(items) == limit else b"false")
            + b"}"
        )
        return Response(body, media_type="application/json")

    @post(
        "/runs/{run_id:str}/cancel",
        status_code=HTTP_202_ACCEPTED,
        summary="Cancel a run",
        responses=error_responses(ErrorCode.UNKNOWN_RUN, ErrorCode.ALREADY_FINISHED, *AUTH_ERRORS),
        guards=[requires(Role.OPERATOR)],
    )
    async def cancel_run(self, run_id: str, request: Request, service: RunService) -> Cancelling:
        status = await service.cancel(run_id, principal=request.user)
        return Cancelling(id=run_id, status="cancelled" if status is RunStatus.CANCELLED else "cancelling")

    @get("/agents", summary="The agents this server can run", tags=["agents"])
    async def list_agents(self, settings: Settings, registry: AgentRegistry) -> list[AgentInfo]:
        return [
            AgentInfo(
                name=a.name,
                description=a.description,
                model=a.model or settings.model.default,
                tools=a.tool_names,
                max_steps=a.max_steps,
            )
            for a in registry
        ]


@get("/api/health", summary="Liveness and load (without a principal: status and version only)", tags=["ops"])
async def health(
    request: Request,
    ready_problem: str | None,
    watchers: Watchers,
    settings: Settings,
    supervisor: Annotated[Supervising, Dependency(skip_validation=True)],
    offline: OfflineServing,
) -> Response[Health]:
    problem = ready_problem
    status = "closing" if watchers.closing.is_set() else "unavailable" if problem else "ok"
    code = 503 if problem else 200
    if request.scope.get("user") is None:
        return Response(Health(status=status, version=__version__, problem=problem), status_code=code)
    health = Health(
        status=status,
        problem=problem,
        instance=settings.server.instance,
        version=__version__,
        offline=settings.model.offline,
        model=settings.model.default,
        running=supervisor.running,
        queued=supervisor.queued,
        connections=len(watchers.connections),
        offline_streams=offline.streams,
        offline_paced=offline.pacer.streams,
    )
    return Response(health, status_code=code)
