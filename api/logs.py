"""structlog, configured once at start-up: pretty console for development, JSON lines for production.

Modules just call ``structlog.get_logger()``; ``run_id``, ``agent`` and ``conn`` are bound with
contextvars where the work happens. Keys that look like secrets are masked in every line, and
every value is scrubbed of secrets (``RedactSecrets``): the configured ones, URL credentials,
bearer tokens and ``sk-…`` keys, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

from runwatch.agents.redact import Redactor

_SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


def mask_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for name in event_dict:
        if any(word in name.lower() for word in _SECRET_WORDS) and name not in (
            "tokens",
            "output_tokens",
            "input_tokens",
        ):
            event_dict[name] = "***"
    return event_dict


class RedactSecrets:
    """A processor that scrubs every string in a line (nested ones too) with a ``Redactor``.

    Put it after ``format_exc_info``, so tracebacks are text by then and get scrubbed as well.
    """

    __slots__ = ("_redact",)

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact

    def __call__(self, _: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {name: self._scrub(value) for name, value in event_dict.items()}

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(v) for v in value]
        text = str(value)  # rendered as text anyway; keep the object unless it holds a secret
        scrubbed = self._redact(text)
        return value if scrubbed == text else scrubbed


class ClientFaults(logging.Filter):
    """uvicorn logs some faults of a client as errors of ours, with a traceback: here each is one
    warning line, named as ours are, without the traceback.

    ``Invalid UTF-8 sequence received from client.``: a WebSocket text frame that is not UTF-8
    (uvicorn then closes the socket with 1007, so it is logged at most once per connection).
    """

    #: uvicorn's message → our event.
    EVENTS: dict[str, str] = {"Invalid UTF-8 sequence received from client.": "ws.invalid_utf8"}

    def filter(self, record: logging.LogRecord) -> bool:
        event = self.EVENTS.get(record.msg) if isinstance(record.msg, str) else None
        if event is not None:
            record.msg, record.args = event, ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def configure_logging(fmt: str = "console", level: str = "info", secrets: Iterable[str | None] = ()) -> None:
    """Configure structlog and the standard library's logging once; ``secrets`` never appear in a line."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    redact = RedactSecrets(Redactor(secrets))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # uvicorn and litestar log through the standard library: render those lines the same way.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientFaults) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(ClientFaults())
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
