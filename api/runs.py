"""REST: start, list, inspect, replay and cancel runs; list agents; health."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_202_ACCEPTED

from runwatch.agents.agent import UnknownAgent
from runwatch.agents.events import RunStatus
from runwatch.agents.store import RunPage, RunSummary
from runwatch.agents.supervisor import InputTooLarge, QueueFull, RunAlreadyFinished, ShuttingDown, UnknownRun
from runwatch.api import __version__
from runwatch.api.runtime import Runtime


class StartRun(msgspec.Struct, forbid_unknown_fields=True):
    agent: str
    input: str = ""


class RunAccepted(msgspec.Struct):
    id: str
    agent: str
    model: str
    status: str
    offline: bool
    events: str
    stream: str


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


class Health(msgspec.Struct):
    status: str
    version: str
    offline: bool
    model: str
    running: int
    queued: int
    connections: int
    offline_streams: int


class Conflict(HTTPException):
    status_code = 409


class TooManyRuns(HTTPException):
    status_code = 429


class Unavailable(HTTPException):
    status_code = 503


class RunsController(Controller):
    path = "/api"
    tags = ["runs"]

    @post("/runs", status_code=HTTP_202_ACCEPTED, summary="Start a run")
    async def start_run(self, data: StartRun, rt: Runtime) -> RunAccepted:
        try:
            handle = await rt.supervisor.start(data.agent, data.input)
        except UnknownAgent as exc:
            raise ClientException(str(exc), status_code=422) from None
        except InputTooLarge as exc:
            raise ClientException(str(exc), status_code=413) from None
        except QueueFull as exc:
            raise TooManyRuns(str(exc), headers={"Retry-After": "5"}) from None
        except ShuttingDown as exc:
            raise Unavailable(str(exc)) from None
        return RunAccepted(
            id=handle.id,
            agent=handle.agent,
            model=handle.model,
            status="queued",
            offline=rt.settings.offline,
            events=f"/api/runs/{handle.id}/events",
            stream=f"/api/runs/{handle.id}/stream",
        )

    @get("/runs", summary="List runs, newest first")
    async def list_runs(
        self,
        rt: Runtime,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Parameter(pattern=r"^\d+$")] = None,
    ) -> RunPage:
        return await rt.store.list_runs(
            status=status.value if status else None, agent=agent, limit=limit, cursor=cursor
        )

    @get("/runs/{run_id:str}", summary="One run's summary")
    async def get_run(self, run_id: str, rt: Runtime) -> RunSummary:
        summary = await rt.store.get_run(run_id)
        if summary is None:
            raise NotFoundException(f"no run {run_id!r}")
        return summary

    @get("/runs/{run_id:str}/events", summary="Replay a run's events after a seq, a page at a time")
    async def run_events(
        self,
        run_id: str,
        rt: Runtime,
        after: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=5000)] = 1000,
    ) -> Response[bytes]:
        items = await rt.history.read(run_id, after, limit)
        if not items and not await rt.history.exists(run_id):
            raise NotFoundException(f"no run {run_id!r}")
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

    @post("/runs/{run_id:str}/cancel", status_code=HTTP_202_ACCEPTED, summary="Cancel a run")
    async def cancel_run(self, run_id: str, rt: Runtime) -> Cancelling:
        try:
            status = await rt.supervisor.cancel(run_id)
        except UnknownRun as exc:
            raise NotFoundException(str(exc)) from None
        except RunAlreadyFinished as exc:
            raise Conflict(str(exc)) from None
        return Cancelling(id=run_id, status="cancelled" if status is RunStatus.CANCELLED else "cancelling")

    @get("/agents", summary="The agents this server can run", tags=["agents"])
    async def list_agents(self, rt: Runtime) -> list[AgentInfo]:
        return [
            AgentInfo(
                name=a.name,
                description=a.description,
                model=a.model or rt.settings.default_model,
                tools=a.tool_names,
                max_steps=a.max_steps,
            )
            for a in rt.registry
        ]

    @get("/health", summary="Liveness and load", tags=["ops"])
    async def health(self, rt: Runtime) -> Health:
        return Health(
            status="closing" if rt.closing.is_set() else "ok",
            version=__version__,
            offline=rt.settings.offline,
            model=rt.settings.default_model,
            running=rt.supervisor.running,
            queued=rt.supervisor.queued,
            connections=len(rt.connections),
            offline_streams=rt.offline_streams,
        )
