"""The front door: what a client can make the server hold before its request reaches the app.

uvicorn's httptools protocol bounds neither the size of a request head (llhttp has no limit, and
httptools joins a header's pieces as they come: one 16 MiB header took 2 s of CPU and was answered
200) nor the time it may take (a connection that sends nothing, or a head or a body a byte at a
time, stayed open for ever). ``FrontDoorProtocol`` is that protocol with four bounds, all settings:

* **Head size** (``max_header_bytes``, request line and headers): bounded as the bytes come, so a
  never-ending header is cut at the limit (plus a read, 256 KiB; two on a kept-alive connection),
  and counted exactly once parsed if its reads held more. Over it: 431, and the connection closes.
* **Header count** (``max_headers``): more is 431 too.
* **Request deadline** (``request_timeout``): a request arrives whole, head and body, within this
  of the connection opening (on a kept-alive connection, of the request's first byte). Past it:
  408 and close; a connection that sent nothing is closed without a word.
* **Connections** (``max_connections``, HTTP and WebSocket together): past it, a new connection
  takes the place of the one that has waited longest for a request (a kept-alive idle one, or a
  slow one: answered 503 and closed); when none is waiting, the new one is answered 503.

Refused clients read a JSON body naming the limit (``ErrorBody``, as REST errors); operators read
one ``http.refused`` warning with the counts, at most every ``REFUSALS_EVERY`` seconds. WebSocket
upgrades pass the same checks; after the upgrade the socket belongs to the WebSocket protocol and
nothing here runs per frame. Per request this adds a few attribute writes and dictionary updates
(no timer: one sweep serves every deadline): about 4 µs of CPU on a kept-alive connection and 9 µs
on a new one (``python -m bench.front_door``: uvicorn alone takes 39 and 77 µs with an empty app;
a runwatch request about 1 ms).
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httptools
import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from runwatch.agents.errors import HTTP_STATUS, ErrorCode
from runwatch.api.http_errors import ErrorBody
from runwatch.api.settings.config import Settings

log = structlog.get_logger()

#: Seconds a refused client that is still sending is read (and what it sends dropped) after its
#: answer, so that it reads the answer rather than a connection reset.
LINGER_SECONDS = 2.0
#: Refused connections linger only while the server holds at most this many over ``max_connections``
#: (a flood of refused ones is closed at once: each lingering one holds an open file).
LINGER_ROOM = 128
#: At most one ``http.refused`` line this often (a flood of slow connections is one line, not thousands).
REFUSALS_EVERY = 10.0
#: Open files kept for everything but client connections: databases, Redis, the model, logs.
RESERVED_FILES = 256

# Where a connection is in its current request. Plain ints: compared on every read.
_IDLE = 0  # no byte of a request yet (a new connection)
_HEAD = 1  # reading a request line and headers
_BODY = 2  # head done, reading the body
_DONE = 3  # the request arrived whole (or went to the WebSocket protocol)
_REFUSED = 4  # answered and closing: what it still sends is dropped


@dataclass(frozen=True, slots=True)
class DoorLimits:
    max_header_bytes: int
    max_headers: int
    request_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> DoorLimits:
        limits = settings.limits
        return cls(limits.max_header_bytes, limits.max_headers, limits.request_timeout, limits.max_connections)


class _HeadTooLarge(Exception):
    """Raised in the parser's callback: stops the parser there; ``data_received`` answers 431."""


def _answer(code: ErrorCode, detail: str, *headers: bytes) -> bytes:
    status = HTTP_STATUS[code]
    body = msgspec.json.encode(ErrorBody(status_code=status, detail=detail, code=code))
    head = [STATUS_LINE[status], b"content-type: application/json\r\n", b"connection: close\r\n", *headers]
    return b"".join([*head, b"content-length: %d\r\n\r\n" % len(body), body])


def _answers(limits: DoorLimits) -> dict[ErrorCode, bytes]:
    return {
        ErrorCode.HEADERS_TOO_LARGE: _answer(
            ErrorCode.HEADERS_TOO_LARGE,
            f"the request line and headers are over {limits.max_header_bytes} bytes or {limits.max_headers} headers"
            " (RUNWATCH_MAX_HEADER_BYTES, RUNWATCH_MAX_HEADERS): send fewer or smaller headers, or clear this"
            " site's cookies",
        ),
        ErrorCode.REQUEST_TIMEOUT: _answer(
            ErrorCode.REQUEST_TIMEOUT,
            f"the request did not arrive whole within {limits.request_timeout:g} s (RUNWATCH_REQUEST_TIMEOUT):"
            " send it again, all at once",
        ),
        ErrorCode.SERVER_BUSY: _answer(
            ErrorCode.SERVER_BUSY,
            f"the server holds its limit of {limits.max_connections} connections (RUNWATCH_MAX_CONNECTIONS):"
            " try again in a moment",
            b"retry-after: 1\r\n",
        ),
        ErrorCode.BAD_REQUEST: _answer(ErrorCode.BAD_REQUEST, "the request is not valid HTTP/1.1"),
    }


class Refusals:
    """Refusals by code, logged as one warning: the first at once, then what came since at most
    once every ``every`` seconds."""

    __slots__ = ("_counts", "_every", "_window")

    def __init__(self, every: float = REFUSALS_EVERY) -> None:
        self._counts: Counter[str] = Counter()
        self._every = every
        self._window: asyncio.TimerHandle | None = None

    def add(self, code: ErrorCode, loop: asyncio.AbstractEventLoop) -> None:
        self._counts[code.value] += 1
        if self._window is None:
            self._flush(loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._window = None
        if not self._counts:
            return
        log.warning(
            "http.refused",
            refused=dict(self._counts),
            hint="limits of the front door: RUNWATCH_MAX_HEADER_BYTES, RUNWATCH_MAX_HEADERS, "
            "RUNWATCH_REQUEST_TIMEOUT, RUNWATCH_MAX_CONNECTIONS (docs/security.md, Limits)",
        )
        self._counts.clear()
        self._window = loop.call_later(self._every, self._flush, loop)


class FrontDoor:
    """One server's limits and answers, its connections waiting for a request (oldest first), and
    the deadlines of the requests under way."""

    __slots__ = ("_slack", "_sweep", "answers", "deadlines", "limits", "refusals", "waiting")

    def __init__(self, limits: DoorLimits) -> None:
        self.limits = limits
        self.answers = _answers(limits)
        self.refusals = Refusals()
        #: Connections with no request in the app (new, kept alive, or still sending a head), in
        #: the order they started waiting: the first is evicted when a new one needs its place.
        self.waiting: dict[FrontDoorProtocol, None] = {}
        #: Connection → when its request must have arrived whole. One timeout for all, so the order
        #: of insertion is the order of the deadlines: a sweep reads from the front, and stops at
        #: the first one still to come. One timer for all (not one per request: 6 µs each in uvloop).
        self.deadlines: dict[FrontDoorProtocol, float] = {}
        self._sweep: asyncio.TimerHandle | None = None
        #: Deadlines this close together share a sweep: closed within the timeout plus this.
        self._slack = min(0.5, limits.request_timeout / 10)

    def protocol(self) -> type[FrontDoorProtocol]:
        """The protocol class for uvicorn's ``Config(http=…)``, bound to this door."""
        return type("FrontDoorProtocol", (FrontDoorProtocol,), {"door": self})

    def make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        for oldest in self.waiting:
            oldest.evict()
            return True
        return False

    def arm(self, protocol: FrontDoorProtocol) -> None:
        """Start ``protocol``'s request deadline, unless it runs already."""
        if protocol not in self.deadlines:
            loop = protocol.loop
            self.deadlines[protocol] = loop.time() + self.limits.request_timeout
            if self._sweep is None:
                self._sweep = loop.call_at(self.deadlines[protocol] + self._slack, self._expire_due, loop)

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        deadlines = self.deadlines
        while deadlines:
            protocol, deadline = next(iter(deadlines.items()))
            if deadline > now:
                self._sweep = loop.call_at(deadline + self._slack, self._expire_due, loop)
                return
            del deadlines[protocol]
            protocol.expire()


class FrontDoorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the front door's bounds; made by ``FrontDoor.protocol``."""

    door: FrontDoor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        #: Bytes of the last read, and an upper bound of the current head's bytes: the whole read
        #: it began in, and every read since (the read it began in may hold the end of the
        #: previous request: ``_head_slack`` of it, at most).
        self._read = 0
        self._head_bytes = 0
        self._head_slack = 0
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        door = self.door
        if len(self.connections) > door.limits.max_connections and not door.make_room():
            self._refuse(ErrorCode.SERVER_BUSY, linger=True)
            return
        door.waiting[self] = None
        door.arm(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.waiting.pop(self, None)
        self.door.deadlines.pop(self, None)
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head counted and the parser's refusals answered here."""
        phase = self._phase
        if phase == _REFUSED:
            return
        self._unset_keepalive_if_required()
        self._read = len(data)
        if phase == _HEAD:
            self._head_bytes += self._read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            too_large = isinstance(exc.__context__, _HeadTooLarge)
            self._refuse(ErrorCode.HEADERS_TOO_LARGE if too_large else ErrorCode.BAD_REQUEST, linger=True)
            return
        if self._phase == _HEAD and self._head_bytes - self._head_slack > self.door.limits.max_header_bytes:
            self._refuse(ErrorCode.HEADERS_TOO_LARGE, linger=True)  # no end of the head yet, and over

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._read
        # On a new connection the first byte read is the head's; on a kept-alive one the read may
        # begin with the end of the previous request.
        self._head_slack = 0 if self._phase == _IDLE else self._read
        self._phase = _HEAD
        self.door.arm(self)

    def on_headers_complete(self) -> None:
        limits = self.door.limits
        headers = self.headers
        if len(headers) > limits.max_headers:
            raise _HeadTooLarge
        if self._head_bytes > limits.max_header_bytes:  # perhaps: the bound counts all of its reads
            if len(self.url) + sum(len(name) + len(value) + 4 for name, value in headers) > limits.max_header_bytes:
                raise _HeadTooLarge
        door = self.door
        door.waiting.pop(self, None)
        self._phase = _BODY
        if self.parser.should_upgrade() and self._should_upgrade():
            self._phase = _DONE  # the WebSocket protocol takes the transport over
            door.deadlines.pop(self, None)
        super().on_headers_complete()
        if self.pipeline:  # queued behind a response: uvicorn stopped reading, the client is not slow
            door.deadlines.pop(self, None)

    def on_message_complete(self) -> None:
        self._phase = _DONE
        self.door.deadlines.pop(self, None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # kept alive, idle: waits for its next request
            self.door.waiting[self] = None

    def evict(self) -> None:
        """Make room for a new connection: an idle one just closes, a slow one is answered 503."""
        idle = self._phase == _IDLE or (self._phase == _DONE and self.timeout_keep_alive_task is not None)
        if idle:
            self._close()
        else:
            self._refuse(ErrorCode.SERVER_BUSY)

    def expire(self) -> None:
        """The request deadline passed (``FrontDoor`` took it off its table)."""
        if self._phase == _IDLE:  # nothing was asked: nothing to answer
            self._close()
        elif self._phase in (_HEAD, _BODY):
            self._refuse(ErrorCode.REQUEST_TIMEOUT)

    def _refuse(self, code: ErrorCode, *, linger: bool = False) -> None:
        """Answer ``code`` (unless this request has an answer already, or another one is being
        written) and close. With ``linger`` and no app that could still write, read and drop what
        the client sends for up to ``LINGER_SECONDS`` first: it then reads the answer, not a reset."""
        self.door.refusals.add(code, self.loop)
        in_body = self._phase == _BODY  # else the cycle, if any, is an earlier request's
        self._stop()
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        app_done = cycle is None or cycle.response_complete
        if in_body:  # the app has this request: answer only if it has not
            answerable = not self.pipeline and cycle is not None and not cycle.response_started
        else:  # no request in the app: answer unless an earlier one's response is being written
            answerable = app_done
        if not answerable:
            transport.close()
            return
        transport.write(self.door.answers[code])
        room = len(self.connections) <= self.door.limits.max_connections + LINGER_ROOM
        if linger and app_done and room and transport.can_write_eof():
            transport.write_eof()  # the answer, then FIN; reading goes on, into data_received's drop
            self._linger = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _close(self) -> None:
        self._stop()
        self.transport.close()

    def _stop(self) -> None:
        """No more requests on this connection: off the waiting list, no deadline, reads dropped."""
        self._phase = _REFUSED
        self.door.waiting.pop(self, None)
        self.door.deadlines.pop(self, None)


def connection_budget(wanted: int) -> int:
    """How many client connections this process can hold: ``wanted``, if the open-file limit allows
    it (the soft limit is raised towards the hard one as far as needed), else what it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    budget = max(1, soft - RESERVED_FILES)
    log.warning(
        "server.connection_limit",
        max_connections=wanted,
        effective=budget,
        open_files=soft,
        hint="raise the open-file limit (ulimit -n, LimitNOFILE=) or lower RUNWATCH_MAX_CONNECTIONS",
    )
    return budget
