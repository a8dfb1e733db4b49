"""Every bound of the ingest API, stated once: what one request, one run and one principal may hold,
and what happens past each (docs/ingest.md lists them with these names)."""

from __future__ import annotations

from runwatch.agents.loop.coalesce import MAX_EVENT_CHARS
from runwatch.agents.loop.tool_calls import MAX_EVENT_RESULT_BYTES

#: Bytes of one events request's body; past it: 413 ``batch_too_large``, nothing applied.
MAX_BATCH_BYTES = 1024 * 1024
#: Events in one batch (of one run, or of all the runs of one request); past it: 413
#: ``batch_too_large``, nothing applied.
MAX_BATCH_EVENTS = 1_000
#: Runs in one request of ``POST /api/ingest/events``; past it: 413 ``batch_too_large``.
MAX_BATCH_RUNS = 256

#: A token event's text, in characters: runwatch's own token events hold at most as much.
MAX_TOKEN_CHARS = MAX_EVENT_CHARS
#: A tool call's arguments or result, an approval's arguments or schema, as JSON bytes: runwatch's
#: own tool events cut results there; an agent's are refused past it (413 ``field_too_large``).
MAX_JSON_BYTES = MAX_EVENT_RESULT_BYTES
#: Any other text (a status message, an approval's reason, an error), in characters.
MAX_TEXT_CHARS = MAX_EVENT_CHARS
#: Names and ids (agent, model, tool, call id, finish reason …), in characters.
MAX_NAME_CHARS = 256
#: An approval's id, in characters (the WebSocket's ``approve`` takes at most this).
MAX_APPROVAL_ID_CHARS = 64
#: ``external_id``, in characters.
MAX_EXTERNAL_ID_CHARS = 256

#: Approvals one run may hold open at once; past it: 422 ``invalid_event``.
MAX_OPEN_APPROVALS = 100
#: Controls a run holds that its agent has not acknowledged (``after``); past it, people's
#: messages are refused (429 ``rate_limited``) until the agent takes some. Cancels and
#: decisions are never refused for it (one cancel; decisions are bounded by the open approvals).
MAX_PENDING_CONTROLS = 100

#: Long polls (``GET …/controls`` waiting) one principal may hold at once; past it: 429
#: ``rate_limited`` (``Retry-After: 1``).
MAX_POLLS_PER_PRINCIPAL = 200
#: The longest a long poll waits, in seconds (``wait`` is cut to it).
MAX_WAIT = 25.0

#: A run's lease, in seconds: the default, and the bounds a registration may ask for.
DEFAULT_LEASE = 30.0
MIN_LEASE = 1.0
MAX_LEASE = 3600.0
#: How long after a lease's (or an approval's) deadline the keeper looks, in seconds.
SWEEP_SLACK = 0.05
