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
from runwatch.agents.ingest.limits import MAX_BATCH_BYTES, MAX_WAIT
from runwatch.agents.ingest.wire import Accepted, Batch, ControlsPage, Registered, Registration
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


_BATCH = msgspec.json.schema(Batch)
#: The events body's JSON Schema, as msgspec decodes it (``batch.decode``), inlined: the route
#: reads the raw body itself (its size, a heartbeat's empty body, precise errors).
BATCH_SCHEMA: dict[str, Any] = _inlined(_BATCH, _BATCH["$defs"])


@dataclass
class _EventsOperation(Operation):
    """The events route's operation, with its body's schema (the handler reads the body itself)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=BATCH_SCHEMA)},  # type: ignore[arg-type]
            description="The run's next events, numbered by n (none: a heartbeat)",
            required=False,
        )


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
        operation_class=_EventsOperation,
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
        try:
            body = await request.body()
        except HTTPException as exc:  # (Litestar's 413 past ``request_max_body_size``)
            if exc.status_code != HTTP_413_REQUEST_ENTITY_TOO_LARGE:
                raise
            raise BatchTooLarge(f"the batch is over {MAX_BATCH_BYTES} bytes, the most one request may carry") from None
        return await ingest.post(run_id, body, principal=request.user)

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
