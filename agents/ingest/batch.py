"""A batch of an agent's events, decoded and checked before anything of it is applied.

Every check that needs no run state is here: the body's shape, each event's type (an agent's, not
one only runwatch writes) and fields, the size of each field (the limits runwatch's own events
have: ``limits``), and the batch's own order (``n`` going up by one, ``run.finished`` last). A
batch that fails any check raises one ``RunwatchError`` that says which event and why; the run is
not touched. Decoding is msgspec's, into the structs of ``wire``; only a batch that fails is
decoded a second time, generically, to say precisely what is wrong.
"""

from __future__ import annotations

from typing import Any

import msgspec

from runwatch.agents.errors import (
    BadRequest,
    BatchTooLarge,
    ErrorCode,
    FieldTooLarge,
    InvalidEvent,
    ReservedType,
    RunwatchError,
)
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.approvals import schema_problem
from runwatch.agents.ingest.wire import AGENT_EVENTS, INCOMING, RESERVED_TYPES, Batch, ManyParts, TypedMany

_decoder = msgspec.json.Decoder(Batch)
_typed_decoder = msgspec.json.Decoder(TypedMany)
_many_decoder = msgspec.json.Decoder(ManyParts)
_encoder = msgspec.json.Encoder()

#: How big each field of an agent's event may be: (type, field) → (limit, unit). ``chars`` counts
#: a text's characters; ``json`` the bytes of a value's JSON.
_BOUNDS: dict[str, tuple[tuple[str, int, str], ...]] = {
    "step.started": (("model", limits.MAX_NAME_CHARS, "chars"),),
    "token": (("text", limits.MAX_TOKEN_CHARS, "chars"),),
    "step.finished": (
        ("finish_reason", limits.MAX_NAME_CHARS, "chars"),
        ("error_type", limits.MAX_NAME_CHARS, "chars"),
    ),
    "tool.started": (
        ("call_id", limits.MAX_NAME_CHARS, "chars"),
        ("tool", limits.MAX_NAME_CHARS, "chars"),
        ("arguments", limits.MAX_JSON_BYTES, "json"),
    ),
    "status": (("message", limits.MAX_TEXT_CHARS, "chars"), ("call_id", limits.MAX_NAME_CHARS, "chars")),
    "tool.finished": (
        ("call_id", limits.MAX_NAME_CHARS, "chars"),
        ("tool", limits.MAX_NAME_CHARS, "chars"),
        ("result", limits.MAX_JSON_BYTES, "json"),
        ("error", limits.MAX_TEXT_CHARS, "chars"),
    ),
    "approval.requested": (
        ("approval_id", limits.MAX_APPROVAL_ID_CHARS, "chars"),
        ("call_id", limits.MAX_NAME_CHARS, "chars"),
        ("tool", limits.MAX_NAME_CHARS, "chars"),
        ("arguments", limits.MAX_JSON_BYTES, "json"),
        ("reason", limits.MAX_TEXT_CHARS, "chars"),
        ("schema", limits.MAX_JSON_BYTES, "json"),
    ),
    "run.finished": (("error", limits.MAX_TEXT_CHARS, "chars"),),
}
_AGENT_TAGS = ", ".join(e.__struct_config__.tag for e in AGENT_EVENTS)


def _where(index: int, item: Any) -> str:
    """``events[3] (n=7, token)``: how errors name an event."""
    n = getattr(item, "n", None) if not isinstance(item, dict) else item.get("n")
    kind = getattr(item, "__struct_config__", None)
    tag = kind.tag if kind is not None else item.get("type") if isinstance(item, dict) else None
    details = ", ".join(str(x) for x in (f"n={n}" if n is not None else None, tag) if x is not None)
    return f"events[{index}]" + (f" ({details})" if details else "")


def decode(body: bytes) -> Batch:
    """The batch ``body`` holds (none: an empty one), every check above passed. Raises
    ``BatchTooLarge``, ``BadRequest`` (``bad_json``, ``bad_request``), ``ReservedType``, a
    ``RunwatchError`` ``unknown_type``, ``InvalidEvent`` or ``FieldTooLarge``."""
    if len(body) > limits.MAX_BATCH_BYTES:
        raise BatchTooLarge(f"the batch is {len(body)} bytes; one request may carry {limits.MAX_BATCH_BYTES}")
    if not body.strip():
        return Batch()  # (no body at all: a heartbeat, as ``{"events": []}``)
    try:
        batch = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _explain(body, exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", code=ErrorCode.BAD_JSON) from None
    _check(batch.events)
    return batch


def _check(events: list[Any]) -> None:
    """What the types of a run's decoded events do not say (see the module)."""
    if len(events) > limits.MAX_BATCH_EVENTS:
        raise BatchTooLarge(f"the batch holds {len(events)} events; one request may carry {limits.MAX_BATCH_EVENTS}")
    previous = None
    for index, item in enumerate(events):
        _check_sizes(index, item)
        _check_meaning(index, item)
        if previous is not None and item.n != previous + 1:
            raise InvalidEvent(f"{_where(index, item)}: n must go up by one within a batch (it follows n={previous})")
        if item.__struct_config__.tag == "run.finished" and index != len(events) - 1:
            raise InvalidEvent(f"{_where(index, item)}: run.finished must be the last event of its batch")
        previous = item.n


def _explain(body: bytes, error: msgspec.ValidationError) -> RunwatchError:
    """What is wrong with a body that did not decode as a ``Batch``, said precisely."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:  # (cannot be: it parsed once)
        return BadRequest(f"the request body is not valid JSON: {exc}", code=ErrorCode.BAD_JSON)
    if not isinstance(raw, dict):
        return BadRequest('the body must be a JSON object: {"events": [{"n": 1, "type": "token", "text": "…"}]}')
    items = raw.get("events")
    for index, item in enumerate(items if isinstance(items, list) else ()):
        where = _where(index, item)
        if not isinstance(item, dict):
            return InvalidEvent(f"{where} is not a JSON object")
        kind = item.get("type")
        if not isinstance(kind, str):
            return InvalidEvent(f'{where} has no "type" (one of: {_AGENT_TAGS})')
        if kind in RESERVED_TYPES:
            return ReservedType(
                f"{where}: {kind} is written by runwatch alone (of {', '.join(sorted(RESERVED_TYPES))}); "
                f"an agent sends {_AGENT_TAGS}"
            )
        if kind not in INCOMING:
            message = f"{where}: unknown event type {kind!r}; an agent sends {_AGENT_TAGS}"
            return RunwatchError(message, code=ErrorCode.UNKNOWN_TYPE)
        try:
            msgspec.convert(item, INCOMING[kind])
        except msgspec.ValidationError as exc:
            return InvalidEvent(f"{where}: {exc}")
    return BadRequest(f"the body is not a batch of events: {error}")


def _check_sizes(index: int, item: Any) -> None:
    for name, limit, unit in _BOUNDS.get(item.__struct_config__.tag, ()):
        value = getattr(item, name)
        if value is None or value is msgspec.UNSET:
            continue
        if unit == "chars":
            size = len(value)
            if size > limit:
                raise FieldTooLarge(f"{_where(index, item)}: {name} is {size} characters; the limit is {limit}")
        else:
            size = len(_encoder.encode(value))
            if size > limit:
                raise FieldTooLarge(f"{_where(index, item)}: {name} is {size} bytes of JSON; the limit is {limit}")


def _check_meaning(index: int, item: Any) -> None:
    """What the types alone do not say: progress is a fraction; a schema is a JSON Schema."""
    tag = item.__struct_config__.tag
    if tag == "status" and item.progress is not None and not 0.0 <= item.progress <= 1.0:
        raise InvalidEvent(f"{_where(index, item)}: progress must be between 0 and 1 (or null)")
    if tag == "approval.requested" and isinstance(item.schema, dict) and (problem := schema_problem(item.schema)):
        raise InvalidEvent(f"{_where(index, item)}: {problem}")


def decode_many(body: bytes) -> list[tuple[str, Batch | RunwatchError]]:
    """Each run's part of a ``POST /api/ingest/events`` body, in order: its batch, decoded and
    checked as ``decode`` does one run's, or why it cannot be applied (that part only). What is
    wrong with the request as a whole raises: ``BatchTooLarge`` (its bytes, runs or events in
    all), ``BadRequest`` (``bad_json``; a run twice; not a body of runs)."""
    if len(body) > limits.MAX_BATCH_BYTES:
        raise BatchTooLarge(f"the request is {len(body)} bytes; one request may carry {limits.MAX_BATCH_BYTES}")
    try:
        typed = _typed_decoder.decode(body)  # (every event well formed: read in one pass)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _parts(_many(body))
    parts: list[tuple[str, Batch | RunwatchError]] = []
    for part in typed.runs:
        try:
            _check(part.events)
        except RunwatchError as exc:
            parts.append((part.run_id, exc))
            continue
        parts.append((part.run_id, Batch(events=part.events, after=part.after)))
    return _counted(parts)


def _many(body: bytes) -> ManyParts:
    """The body's runs, their events kept raw (``BadRequest`` if it is not a body of runs)."""
    try:
        return _many_decoder.decode(body)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Expected `array` of length <=") and str(exc).endswith("at `$.runs`"):
            raise BatchTooLarge(f"one request may carry {limits.MAX_BATCH_RUNS} runs") from None
        raise BadRequest(f'the body is not {{"runs": [{{"run_id": …, "events": […]}}, …]}}: {exc}') from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", code=ErrorCode.BAD_JSON) from None


def _parts(many: ManyParts) -> list[tuple[str, Batch | RunwatchError]]:
    """Each run's events decoded and checked as one run's batch, or why not."""
    parts: list[tuple[str, Batch | RunwatchError]] = []
    for part in many.runs:
        try:
            batch = decode(b'{"events":[' + b",".join(bytes(e) for e in part.events) + b"]}")
        except RunwatchError as exc:
            parts.append((part.run_id, exc))
            continue
        batch.after = part.after
        parts.append((part.run_id, batch))
    return _counted(parts)


def _counted(parts: list[tuple[str, Batch | RunwatchError]]) -> list[tuple[str, Batch | RunwatchError]]:
    """``parts``, if no run is in them twice and they hold ``MAX_BATCH_EVENTS`` at most in all."""
    ids = [run_id for run_id, _ in parts]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise BadRequest(f"run {twice} is in the request twice; send each run's events once, in order")
    total = sum(len(batch.events) for _, batch in parts if isinstance(batch, Batch))
    if total > limits.MAX_BATCH_EVENTS:
        raise BatchTooLarge(f"the request holds {total} events; one request may carry {limits.MAX_BATCH_EVENTS}")
    return parts
