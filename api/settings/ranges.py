"""The range of every numeric setting, checked once at start: a value outside it (or not finite) is
refused before anything runs, with one line saying what is allowed."""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86_400.0
YEAR = 365 * DAY


@dataclass(frozen=True, slots=True)
class Range:
    """``low <= value <= high`` (``low < value`` when ``above``), and always a finite number."""

    low: float
    high: float = math.inf
    above: bool = False

    def allows(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.above else value >= self.low

    def __str__(self) -> str:
        if self.high < math.inf:
            return f"between {number(self.low)} and {number(self.high)}"
        return f"more than {number(self.low)}" if self.above else f"{number(self.low)} or more"


def number(value: float) -> str:
    """``5``, ``0.5``, ``-1``, ``nan``: a value as a person would write it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


#: Every ``int`` and ``float`` field of ``Settings`` (tests/unit/test_settings.py checks that none is missing).
#: Upper bounds only where a bigger value breaks something or cannot be meant.
RANGES: dict[str, Range] = {
    "port": Range(1, 65535),
    "redis_retain_seconds": Range(0, YEAR),  # a Redis TTL
    "lease_seconds": Range(1, DAY),  # renewed every quarter of it; a dead instance's runs wait this long
    "drain_seconds": Range(0, DAY),
    "retention_days": Range(0, 36_500),
    "coalesce_ms": Range(0, 10_000),  # a longer window is not live any more
    "max_running": Range(1),
    "max_queued": Range(0),  # 0: no waiting room, a run beyond max_running answers 429
    "run_timeout": Range(0, above=True),
    "approval_timeout": Range(0, above=True),
    "log_capacity": Range(1),
    "bus_memory_mb": Range(1),
    "max_input_bytes": Range(1),
    "max_output_bytes": Range(1),
    "max_tool_result_bytes": Range(1),
    "ws_max_message_bytes": Range(1),
    "ws_max_lag": Range(1),
    "ws_send_timeout": Range(0, above=True),
    "ws_frame_events": Range(1),
    "ws_frame_bytes": Range(1),
    "ws_max_subscriptions": Range(1),
    "ws_message_rate": Range(1),
    "ws_message_burst": Range(1),
    "heartbeat": Range(0.1),  # also the WebSocket ping interval
    "session_hours": Range(0, above=True),
    "runs_per_minute": Range(1),
    "tenant_max_active": Range(1),
    "ws_connections_per_principal": Range(1),
    "offline_max_answer_bytes": Range(1),
    "offline_max_inflight_bytes": Range(1),
    "max_header_bytes": Range(1024),  # browsers send more than 1 KiB of headers
    "max_headers": Range(1),
    "request_timeout": Range(0, above=True),
    "max_connections": Range(1),
}
