"""Small statistics the benchmark parts share."""

from __future__ import annotations

import statistics


def median_of(results: list[dict], key: str) -> float | None:
    """The median of ``key`` over the results that have it (None if none do)."""
    values = [r[key] for r in results if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None
