"""``/api/ingest``: the routes of the ingest API, for ``agent`` principals (and admins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody
from litestar.params import Body, Dependency, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_413_REQUEST_ENTITY_TOO_LARGE

from runwatch.agents.errors import BatchTooLarge, ErrorCode, Gap
from runwatch.agents.identity import Role
from runwatch.agents.ingest import IngestService
from runwatch.agents.ingest.limits import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_RUNS, MAX_WAIT
from runwatch.agents.ingest.wire import Accepted, Batch, ControlsPage, ManyParts, Registered, Registration, Results
from runwatch.api.auth.web import requires
from runwatch.api.http_errors import ErrorBody, error_responses

#: Answers every route of a principal can give besides its own.
AUTH_ERRORS = (ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN)
#: The largest ``after`` a client may send (a JSON number every client holds exactly).
MAX_AFTER = 2**53 - 1

Ingest = Annotated[IngestService, Dependency(skip_validation=True)]


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` into ``defs`` replaced by what it names (none is recursive)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


def body_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """``struct``'s JSON Schema, as msgspec decodes it, inlined (the routes that read their body
    themselves — its size, a heartbeat's empty body, precise errors — document it so)."""
    schema = msgspec.json.schema(struct)
    return _inlined(schema, schema["$defs"])


def _with_body(schema: dict[str, Any], description: str) -> type[Operation]:
    """An operation class giving its route the request body ``schema``."""

    @dataclass
    class _WithBody(Operation):
        def __post_init__(self) -> None:
            media = {"application/json": OpenAPIMediaType(schema=schema)}  # type: ignore[arg-type]
            self.request_body = RequestBody(content=media, description=description, required=False)

    return _WithBody


def _many_runs_schema() -> dict[str, Any]:
    """``POST /api/ingest/events``' body: each run's events are checked as one run's batch is,
    and a bad one is that run's result, not the request's: documented as an array of anything."""
    schema = body_schema(ManyParts)
    schema["properties"]["runs"]["items"]["properties"]["events"] = {
        "type": "array",
        "description": "The run's next events, each as POST /api/ingest/runs/{run_id}/events takes it",
    }
    return schema


#: Each events route's body, as documented.
BATCH_SCHEMA = body_schema(Batch)
MANY_RUNS_SCHEMA = _many_runs_schema()


async def _body(request: Request) -> bytes:
    """The request's body; ``BatchTooLarge`` past ``MAX_BATCH_BYTES`` (Litestar's 413)."""
    try:
        return await request.body()
    except HTTPException as exc:
        if exc.status_code != HTTP_413_REQUEST_ENTITY_TOO_LARGE:
            raise
        raise BatchTooLarge(f"the batch is over {MAX_BATCH_BYTES} bytes, the most one request may carry") from None


class GapBody(ErrorBody):
    """409 ``gap``: the batch does not continue where the run's accepted events end."""

    #: The ``n`` the run's next event must have: resend from there.
    expected_n: int


def gap_error(request: Request, exc: Gap) -> Response[GapBody]:
    body = GapBody(status_code=exc.http_status, detail=exc.message, code=exc.code, expected_n=exc.expected_n)
    return Response(body, status_code=exc.http_status)


class IngestController(Controller):
    path = "/api/ingest"
    tags = ["ingest"]
    guards = [requires(Role.AGENT)]
    exception_handlers = {Gap: gap_error}

    @post(
        "/runs",
        status_code=HTTP_201_CREATED,
        summary="Register a run an agent elsewhere executes (once per external_id: again, 200 and the same run)",
        responses={
            HTTP_200_OK: ResponseSpec(
                Registered, description="Registered before: the same run", generate_examples=False
            ),
            **error_responses(
                ErrorCode.BAD_JSON,
                ErrorCode.EMPTY_INPUT,
                ErrorCode.INPUT_TOO_LARGE,
                ErrorCode.UNKNOWN_THREAD,
                ErrorCode.UNKNOWN_RUN,
                ErrorCode.ALREADY_FINISHED,
                ErrorCode.RATE_LIMITED,
                ErrorCode.UNAVAILABLE,
                *AUTH_ERRORS,
            ),
        },
    )
    async def register(
        self,
        data: Annotated[Registration, Body(schema_extra={"additionalProperties": False})],
        request: Request,
        ingest: Ingest,
    ) -> Response[Registered]:
        registered, made = await ingest.register(data, principal=request.user)
        return Response(registered, status_code=HTTP_201_CREATED if made else HTTP_200_OK)

    @post(
        "/runs/{run_id:str}/events",
        status_code=HTTP_200_OK,
        summary="Post a run's events, numbered by n: each stored exactly once, in order; none is a heartbeat",
        description=(
            'Body: {"events": [{"n": 1, "type": "token", "text": "…"}, …], "after": C} (docs/ingest.md); '
            "none is a heartbeat. "
            "Answers once the accepted events are durable, with the run's pending controls."
        ),
        request_max_body_size=MAX_BATCH_BYTES,
        operation_class=_with_body(BATCH_SCHEMA, "The run's next events, numbered by n (none: a heartbeat)"),
        responses=error_responses(
            ErrorCode.BAD_JSON,
            ErrorCode.UNKNOWN_TYPE,
            ErrorCode.RESERVED_TYPE,
            ErrorCode.INVALID_EVENT,
            ErrorCode.FIELD_TOO_LARGE,
            ErrorCode.BATCH_TOO_LARGE,
            ErrorCode.GAP,
            ErrorCode.UNKNOWN_RUN,
            ErrorCode.ALREADY_FINISHED,
            ErrorCode.UNAVAILABLE,
            *AUTH_ERRORS,
        ),
    )
    async def post_events(self, run_id: str, request: Request, ingest: Ingest) -> Accepted:
        return await ingest.post(run_id, await _body(request), principal=request.user)

    @post(
        "/events",
        status_code=HTTP_200_OK,
        summary="Post the next events of many runs in one request: each run's part as its own batch",
        description=(
            'Body: {"runs": [{"run_id": "…", "events": [{"n": 1, "type": "token", "text": "…"}], "after": C}, …]} '
            f"(each run once, {MAX_BATCH_RUNS} runs and {MAX_BATCH_EVENTS} events at most in all; docs/ingest.md). "
            "Each run's part is applied as POST /runs/{id}/events applies a batch, independently: one result per "
            "run, in order, its answer or its error. Answers once the accepted events are durable."
        ),
        request_max_body_size=MAX_BATCH_BYTES,
        operation_class=_with_body(MANY_RUNS_SCHEMA, "Each run's next events, numbered by n"),
        responses=error_responses(ErrorCode.BAD_JSON, ErrorCode.BATCH_TOO_LARGE, ErrorCode.UNAVAILABLE, *AUTH_ERRORS),
    )
    async def post_many(self, request: Request, ingest: Ingest) -> Results:
        return Results(results=await ingest.post_many(await _body(request), principal=request.user))

    @get(
        "/runs/{run_id:str}/controls",
        summary="Read a run's controls after the cursor c (long poll: wait up to 25 s for one)",
        responses=error_responses(ErrorCode.UNKNOWN_RUN, ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, *AUTH_ERRORS),
    )
    async def controls(
        self,
        run_id: str,
        request: Request,
        ingest: Ingest,
        after: Annotated[int, Parameter(ge=0, le=MAX_AFTER, description="The last c taken (0: none)")] = 0,
        wait: Annotated[
            float, Parameter(ge=0, le=MAX_WAIT, description="Seconds to wait for a control while there is none")
        ] = 0.0,
    ) -> ControlsPage:
        return await ingest.controls(run_id, after, wait, principal=request.user)
