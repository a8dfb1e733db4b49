"""REST's answer to a failure: a ``RunwatchError`` becomes its HTTP status and a JSON body with its
code; anything unexpected is logged with its traceback and answers a plain 500."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response

from runwatch.agents.errors import ErrorCode, QueueFull, RunwatchError

log = structlog.get_logger()

#: Seconds a client is told to wait before starting a run again when the queue is full.
RETRY_AFTER = 5


class ErrorBody(msgspec.Struct):
    """Every REST error: the HTTP status again, a sentence saying what to do, and a stable code."""

    status_code: int
    detail: str
    code: str


def runwatch_error(request: Request[Any, Any, Any], exc: RunwatchError) -> Response[ErrorBody]:
    headers = {"Retry-After": str(RETRY_AFTER)} if isinstance(exc, QueueFull) else None
    body = ErrorBody(status_code=exc.http_status, detail=exc.message, code=exc.code)
    return Response(body, status_code=exc.http_status, headers=headers)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.error("http.failed", method=request.method, path=request.url.path, error=repr(exc), exc_info=exc)
    body = ErrorBody(status_code=500, detail="internal server error; see the server log", code=ErrorCode.INTERNAL)
    return Response(body, status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {RunwatchError: runwatch_error, 500: internal_error}
