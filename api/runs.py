"""REST: start, list, inspect, replay and cancel runs; list agents; health."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import UNSET, UnsetType

from runwatch.agents.errors import EmptyInput
from runwatch.agents.events import RunStatus
from runwatch.agents.store import RunPage, RunSummary
from runwatch.agents.store.sqlite import MAX_POSITION
from runwatch.api import __version__
from runwatch.api.runtime import Runtime


class StartRun(msgspec.Struct, forbid_unknown_fields=True):
    agent: str
    #: What the agent should do; required and not blank (``empty_input`` otherwise).
    input: str | UnsetType = UNSET


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


class RunsController(Controller):
    path = "/api"
    tags = ["runs"]

    @post("/runs", status_code=HTTP_202_ACCEPTED, summary="Start a run")
    async def start_run(self, data: StartRun, rt: Runtime) -> RunAccepted:
        if data.input is UNSET:
            raise EmptyInput("input is missing: say what the agent should do")
        handle = await rt.service.start(data.agent, data.input)
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
        cursor: Annotated[str | None, Parameter(pattern=r"^\d{1,19}$")] = None,
    ) -> RunPage:
        return await rt.service.list(status=status.value if status else None, agent=agent, limit=limit, cursor=cursor)

    @get("/runs/{run_id:str}", summary="One run's summary")
    async def get_run(self, run_id: str, rt: Runtime) -> RunSummary:
        return await rt.service.get(run_id)

    @get("/runs/{run_id:str}/events", summary="Replay a run's events after a seq, a page at a time")
    async def run_events(
        self,
        run_id: str,
        rt: Runtime,
        after: Annotated[int, Parameter(ge=0, le=MAX_POSITION)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=5000)] = 1000,
    ) -> Response[bytes]:
        items = await rt.service.events(run_id, after, limit)
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
        status = await rt.service.cancel(run_id)
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
