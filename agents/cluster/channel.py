"""The deployment's control channel: what instances tell each other over Redis pub/sub, as tagged
msgspec structs, encoded and decoded here only.

- ``Queued``: a job was queued: take from the shared queue (agents/cluster/queue.py).
- ``CancelRun``: cancel ``run`` wherever it executes; its owner acts, the others remember it a
  moment in case the run starts there next (agents/cluster/supervisor.py).
- ``Ask`` / ``Answer``: a person's decision or message for a run another instance executes, and
  its owner's outcome (agents/cluster/remote_inbox.py).
- ``RunChanged``: an external run got a control or ended: the long polls waiting on it, on any
  instance, look again (agents/cluster/ingest.py).

Pub/sub delivers each at most once: a lost ``Queued`` is made up for by the queue's own polling,
a lost ``CancelRun`` or ``Ask`` by the asker's timeout (the person asks again), a lost
``RunChanged`` by the long poll's own end (the control waits on the run).
"""

from __future__ import annotations

import msgspec
import structlog

from runwatch.agents.identity import Actor
from runwatch.agents.runs.inbox import Decision, Steer

log = structlog.get_logger()


class Queued(msgspec.Struct, tag_field="type", tag="queued", frozen=True):
    pass


class CancelRun(msgspec.Struct, tag_field="type", tag="cancel", kw_only=True, frozen=True):
    run: str
    #: Who asked (recorded in the run's ``run.cancel_requested``).
    by: Actor | None = None


class Ask(msgspec.Struct, tag_field="type", tag="ask", kw_only=True, frozen=True):
    req: str
    sender: str
    run: str
    approval: str = ""
    decision: Decision | None = None
    steer: Steer | None = None


class Answer(msgspec.Struct, tag_field="type", tag="answer", kw_only=True, frozen=True):
    req: str
    to: str
    #: Empty when it was done; else the ``ErrorCode`` a local request would have raised.
    code: str = ""
    message: str = ""
    #: A ``RateLimited`` refusal's ``retry_after`` (and ``kind``).
    retry_after: float | None = None
    kind: str = ""


class RunChanged(msgspec.Struct, tag_field="type", tag="run_changed", kw_only=True, frozen=True):
    run: str


ControlMessage = Queued | CancelRun | Ask | Answer | RunChanged

#: ``Queued`` as sent: the queue's Lua script publishes these bytes itself.
QUEUED = msgspec.json.encode(Queued())
_decoder = msgspec.json.Decoder(ControlMessage)


def encode(message: ControlMessage) -> bytes:
    return msgspec.json.encode(message)


def decode(data: bytes) -> ControlMessage | None:
    """The message ``data`` holds, or None (logged) if it is none: an instance of another version."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        log.warning("control.bad_message", error=str(exc)[:200], data=data[:200])
        return None
