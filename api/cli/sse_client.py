"""Reading Server-Sent Events as a client: a parser that follows the HTML standard's rules, and
``follow_run``, which ``runwatch run`` reads a run's stream with.

The parser dispatches an event at each blank line that ends one with ``data``: comment lines
(``: heartbeat``) and unknown fields are skipped, several ``data`` lines are one event's lines
joined with ``\\n``, and one space after the colon is not part of a value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import msgspec

#: Times in a row ``follow_run`` reconnects without receiving an event before it gives up.
RESUME_ATTEMPTS = 3
#: Seconds before such a reconnection, times the number of attempts so far.
RESUME_DELAY = 0.5


class SSEMessage(msgspec.Struct, frozen=True):
    """One dispatched event: its data (lines joined with ``\\n``), the last ``id`` seen, its type."""

    data: str
    id: str | None = None
    event: str = "message"


def parse(lines: Iterable[str]) -> Iterator[SSEMessage]:
    """The events of an event stream given line by line (without their line endings)."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield SSEMessage("\n".join(data), last_id, event or "message")
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue  # a comment, such as the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
    # An event the stream ended in the middle of is dropped, as the standard says.


class StreamLost(Exception):
    """The run's stream could not be followed to ``run.finished``; the message says why."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        #: The refusal (status and body read), when the server refused the stream.
        self.response = response


def follow_run(client: httpx.Client, path: str) -> Iterator[dict[str, Any]]:
    """Each event of the run whose SSE stream is at ``path``, once and in order, to ``run.finished``.

    A stream that ends or breaks before it (the server cut a reader that stopped reading, or
    restarted) is resumed with ``Last-Event-ID``; after ``RESUME_ATTEMPTS`` attempts in a row that
    bring no event, ``StreamLost`` is raised. Heartbeats and events without data are skipped.
    """
    last: str | None = None
    failures = 0
    while True:
        received = False
        try:
            headers = {"Last-Event-ID": last} if last is not None else {}
            with client.stream("GET", path, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise StreamLost(f"the server refused the run's stream ({response.status_code})", response)
                for message in parse(response.iter_lines()):
                    if not message.data.strip():
                        continue
                    event = _decode(message.data)
                    last, received = message.id or last, True
                    yield event
                    if event.get("type") == "run.finished":
                        return
            problem = "the server ended the run's stream before the run finished"
        except httpx.TransportError as exc:
            problem = f"the run's stream broke ({exc.__class__.__name__}: {exc})"
        failures = 0 if received else failures + 1
        if failures >= RESUME_ATTEMPTS:
            raise StreamLost(f"{problem}, {failures} times in a row; the run goes on on the server")
        time.sleep(RESUME_DELAY * failures)


def _decode(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise StreamLost(f"the server sent an event that is not a run event: {data[:200]!r}")
    return event
