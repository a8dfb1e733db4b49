"""What ``/ws`` uses of the process, and nothing else: made once by the composition root
(``api/runtime.py``) and handed to the endpoint through Litestar's dependency injection."""

from __future__ import annotations

from dataclasses import dataclass

from runwatch.agents.bus.base import Streams
from runwatch.agents.runs.limits import Limiter
from runwatch.agents.runs.service import RunService
from runwatch.api.auth.authenticator import Authenticator
from runwatch.api.observability.metrics import Metrics
from runwatch.api.settings.config import Settings
from runwatch.api.watchers import Watchers
from runwatch.api.ws.lane import FastLane
from runwatch.api.ws.presence import PresenceBoard


@dataclass(frozen=True, slots=True)
class WsParts:
    settings: Settings
    service: RunService
    auth: Authenticator
    metrics: Metrics
    #: Connections per principal, shared by WebSockets and SSE streams.
    limiter: Limiter
    #: The run logs each connection's cursors read, and whose publishes wake it.
    bus: Streams
    presence: PresenceBoard
    watchers: Watchers
    lane: FastLane
