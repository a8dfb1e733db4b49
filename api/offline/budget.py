"""The text all the offline model's answers in flight may hold together (``offline_max_inflight_bytes``)."""

from __future__ import annotations

from collections.abc import Callable

from runwatch.agents.errors import RateLimited

#: Seconds a request refused by a full ``AnswerBudget`` is told to wait (``Retry-After``).
BUSY_RETRY_SECONDS = 1.0


class AnswerBudget:
    """The bytes of text all answers in flight may hold together. An answer reserves its size when
    it is accepted and gives it back when its response ends, however it ends; one that would pass
    the bound is refused (429 ``rate_limited``, ``Retry-After``)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> Callable[[], None]:
        """Hold ``size`` bytes; returns what gives them back (once, however often it is called)."""
        if self.used + size > self.limit:
            raise RateLimited(
                f"the offline model is busy: the answers in flight hold {self.used} of the {self.limit} bytes they"
                f" may (setting offline_max_inflight_bytes, RUNWATCH_OFFLINE_MAX_INFLIGHT_BYTES) and this one needs"
                f" {size}; try again in a moment",
                retry_after=BUSY_RETRY_SECONDS,
                kind="offline_model",
            )
        self.used += size
        held = [size]

        def release() -> None:
            self.used -= held.pop() if held else 0

        return release
