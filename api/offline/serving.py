"""What serving the offline model holds while it answers: the text budget of answers in flight,
the pacer that writes paced streams, and how many streams are open (``GET /api/health`` and the
``runwatch_offline_model_streams`` gauge show it)."""

from __future__ import annotations

from runwatch.api.offline.budget import AnswerBudget
from runwatch.api.offline.pacer import Pacer


class OfflineServing:
    def __init__(self, max_inflight_bytes: int) -> None:
        #: The text all offline-model answers in flight hold together, bounded.
        self.budget = AnswerBudget(max_inflight_bytes)
        #: Paced offline-model streams, on one timer.
        self.pacer = Pacer()
        #: Offline model streams being served right now (so tests can see cancel closes them).
        self.streams = 0
