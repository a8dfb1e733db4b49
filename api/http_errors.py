"""REST's answer to a failure: a ``RunwatchError`` becomes its HTTP status and a JSON body with its
code; a request Litestar cannot decode or validate becomes the same body with ``bad_json`` or
``bad_request``; anything unexpected is logged with its traceback and answers a plain 500."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import InternalServerException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec

from runwatch.agents.errors import HTTP_STATUS, BadRequest, ErrorCode, QueueFull, RateLimited, RunwatchError

log = structlog.get_logger()

#: Seconds a client is told to wait before starting a run again when the queue is full.
RETRY_AFTER = 5


class ErrorBody(msgspec.Struct):
    """Every REST error: the HTTP status again, a sentence saying what to do, and a stable code."""

    status_code: int
    detail: str
    code: str


def runwatch_error(request: Request[Any, Any, Any], exc: RunwatchError) -> Response[ErrorBody]:
    headers: dict[str, str] | None = None
    if isinstance(exc, QueueFull):
        headers = {"Retry-After": str(RETRY_AFTER)}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    elif exc.code == ErrorCode.UNAUTHENTICATED:
        headers = {"WWW-Authenticate": 'Bearer realm="runwatch"'}
    body = ErrorBody(status_code=exc.http_status, detail=exc.message, code=exc.code)
    return Response(body, status_code=exc.http_status, headers=headers)


def error_responses(*codes: ErrorCode) -> dict[int, ResponseSpec]:
    """The OpenAPI ``responses`` of a handler that can fail with ``codes``: one ``ErrorBody`` per status,
    described by its codes. Every handler with parameters or a body can also answer ``bad_request``."""
    by_status: dict[int, list[str]] = {400: [ErrorCode.BAD_REQUEST.value]}
    for code in codes:
        by_status.setdefault(HTTP_STATUS[code], []).append(code.value)
    return {
        status: ResponseSpec(ErrorBody, description="code: " + ", ".join(names), generate_examples=False)
        for status, names in sorted(by_status.items())
    }


#: What a body that is not UTF-8 gets (RFC 8259: JSON between systems is UTF-8).
NOT_UTF8 = "the request body is not valid JSON: its bytes are not valid UTF-8; send JSON encoded as UTF-8"


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class JSONRequest(Request[Any, Any, Any]):
    """A request whose JSON body fails as one ``bad_json`` error, whatever is wrong with it.

    Litestar turns malformed JSON into a 400 itself, but lets invalid UTF-8 (``UnicodeDecodeError``)
    and deep nesting (``RecursionError``) through as 500s. Bytes that are not UTF-8 get runwatch's own
    sentence, whatever msgspec's version calls them (checked only once decoding failed).
    """

    async def json(self) -> Any:
        try:
            return await super().json()
        except (SerializationException, UnicodeDecodeError) as exc:
            if not _is_utf8(await self.body()):
                raise BadRequest(NOT_UTF8, code=ErrorCode.BAD_JSON) from None
            raise BadRequest(f"the request body is not valid JSON: {exc}", code=ErrorCode.BAD_JSON) from None
        except RecursionError:
            raise BadRequest("the request body's JSON is nested too deeply", code=ErrorCode.BAD_JSON) from None


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    """A body or parameter of the wrong shape: every problem, each with where it is, in one sentence."""
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else ():
        source = str(getattr(item.get("source"), "value", item.get("source") or "request"))
        where = f"{source} `{item['key']}`" if item.get("key") else source
        problems.append(f"{where}: {item.get('message', 'invalid')}")
    detail = "invalid request: " + ("; ".join(problems) or exc.detail)
    return Response(ErrorBody(status_code=400, detail=detail, code=ErrorCode.BAD_REQUEST), status_code=400)


#: Litestar's words when the client left (or was cut off by the request timeout) while its body
#: was being read: the client's doing, not a bug of ours.
CLIENT_LEFT = "client disconnected prematurely"


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, InternalServerException) and exc.detail == CLIENT_LEFT:
        log.info("http.client_left", method=request.method, path=request.url.path)
        body = ErrorBody(status_code=400, detail="the request body did not arrive", code=ErrorCode.BAD_REQUEST)
        return Response(body, status_code=400)  # nobody reads it: the connection is gone
    log.error("http.failed", method=request.method, path=request.url.path, error=repr(exc), exc_info=exc)
    body = ErrorBody(status_code=500, detail="internal server error; see the server log", code=ErrorCode.INTERNAL)
    return Response(body, status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    RunwatchError: runwatch_error,
    ValidationException: validation_error,
    500: internal_error,
}
