"""REST for the people on a run: decide approvals, message a running agent, read a thread, see
who is watching. The WebSocket's ``approve``, ``deny`` and ``message`` do the same."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Body, BodyKwarg
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from runwatch.agents.errors import ErrorCode
from runwatch.agents.identity import Role
from runwatch.agents.runs.inbox import Decision, Mode
from runwatch.agents.runs.service import RunService
from runwatch.agents.store import RunSummary
from runwatch.api.auth.web import requires
from runwatch.api.http_errors import error_responses
from runwatch.api.rest.runs import AUTH_ERRORS
from runwatch.api.ws.presence import PresenceBoard
from runwatch.api.ws.protocol import Presence

#: Bodies refuse fields they do not know (a misspelt ``arguments`` must not pass silently): the
#: schema says so.
STRICT = Body(schema_extra={"additionalProperties": False})


class DecisionBody(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["approve", "deny"]
    #: With ``approve``: call the tool with these instead (checked against the tool's schema).
    arguments: dict[str, Any] | None = None
    #: With ``deny``: what the model gets as the tool's result.
    message: str | None = None


class Decided(msgspec.Struct):
    run_id: str
    approval_id: str
    #: ``approved`` or ``denied``; ``approval.resolved`` follows on the run's stream.
    decision: str


class MessageBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, BodyKwarg(pattern=r"\S", description="What to tell the agent; not blank")]
    #: ``interrupt``: cut the answer being streamed; ``queue``: deliver after the current step.
    mode: Mode = "queue"


class MessageAccepted(msgspec.Struct):
    run_id: str
    #: ``accepted``: ``message.received`` follows on the run's stream once the model gets it.
    status: str = "accepted"


class Thread(msgspec.Struct):
    id: str
    #: Its runs, oldest first (the last 100).
    runs: list[RunSummary]


class PeopleController(Controller):
    path = "/api"
    tags = ["people in the loop"]
    guards = [requires(Role.VIEWER)]

    @post(
        "/runs/{run_id:str}/approvals/{approval_id:str}",
        status_code=HTTP_200_OK,
        summary="Approve or deny a tool call the run waits on",
        responses=error_responses(
            ErrorCode.BAD_JSON,
            ErrorCode.UNKNOWN_RUN,
            ErrorCode.UNKNOWN_APPROVAL,
            ErrorCode.ALREADY_DECIDED,
            ErrorCode.ALREADY_FINISHED,
            ErrorCode.INVALID_ARGUMENTS,
            ErrorCode.INPUT_TOO_LARGE,
            ErrorCode.UNAVAILABLE,
            *AUTH_ERRORS,
        ),
        guards=[requires(Role.OPERATOR)],
    )
    async def decide(
        self,
        run_id: str,
        approval_id: str,
        data: Annotated[DecisionBody, STRICT],
        request: Request,
        service: RunService,
    ) -> Decided:
        approve = data.decision == "approve"
        decision = Decision(
            approve=approve,
            arguments=data.arguments if approve and data.arguments is not None else msgspec.UNSET,
            message=None if approve else data.message,
        )
        await service.decide(run_id, approval_id, decision, principal=request.user)
        return Decided(run_id=run_id, approval_id=approval_id, decision="approved" if approve else "denied")

    @post(
        "/runs/{run_id:str}/messages",
        status_code=HTTP_202_ACCEPTED,
        summary="Tell a running agent something (interrupt its answer, or after the current step)",
        responses=error_responses(
            ErrorCode.BAD_JSON,
            ErrorCode.EMPTY_INPUT,
            ErrorCode.INPUT_TOO_LARGE,
            ErrorCode.UNKNOWN_RUN,
            ErrorCode.ALREADY_FINISHED,
            ErrorCode.NOT_STARTED,
            ErrorCode.RATE_LIMITED,
            ErrorCode.UNAVAILABLE,
            *AUTH_ERRORS,
        ),
        guards=[requires(Role.OPERATOR)],
    )
    async def message(
        self, run_id: str, data: Annotated[MessageBody, STRICT], request: Request, service: RunService
    ) -> MessageAccepted:
        await service.message(run_id, data.text, data.mode, principal=request.user)
        return MessageAccepted(run_id=run_id)

    @get(
        "/threads/{thread_id:str}",
        summary="A thread's runs, oldest first",
        responses=error_responses(ErrorCode.UNKNOWN_THREAD, *AUTH_ERRORS),
    )
    async def thread(self, thread_id: str, request: Request, service: RunService) -> Thread:
        return Thread(id=thread_id, runs=await service.thread(thread_id, principal=request.user))

    @get(
        "/runs/{run_id:str}/presence",
        summary="Who is watching a run (on this instance's WebSockets)",
        responses=error_responses(ErrorCode.UNKNOWN_RUN, *AUTH_ERRORS),
    )
    async def presence(self, run_id: str, request: Request, service: RunService, presence: PresenceBoard) -> Presence:
        await service.get(run_id, principal=request.user)
        return presence.of(run_id)
