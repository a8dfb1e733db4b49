"""Slow consumers: fast watchers' latency with 1% of the watchers stalled and without, at two paces
(``python -m bench --only slow``; method in bench/README.md, figures in bench/HISTORY.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.stats import median_of, ratio

#: The server's settings for these runs: a stalled watcher must be cut off within a run.
ENV = {"RUNWATCH_WS_SEND_TIMEOUT": "2"}

#: The slow-consumer scenarios: (name, tokens/s; 0 = as fast as the model can). At full speed, 300
#: watchers x 4.5 MB is 1.35 GB for the load generator to take in a few seconds: its own backlog is
#: then most of every p99, with or without stalled neighbours (bench/HISTORY.md). Paced at 200
#: tokens/s (300 KB/s per watcher, 90 MB/s in all, a quarter of what it can take), the p99 is the
#: server's again, and the stalled watchers still fall megabytes behind within the run.
SLOW_PACES = [("paced", 200.0), ("full_speed", 0.0)]


def run(
    measure: Callable[[dict[str, Any]], dict[str, Any]],
    watchers: int,
    runs: int,
    tokens: int,
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Tokens padded to 1,500 characters: megabytes per watcher, more than loopback socket buffers
    absorb, so the stalled watchers' sends really block the server. The server's send timeout is
    2 s (RUNWATCH_WS_SEND_TIMEOUT), so a stalled watcher must be cut off within a run. Each pace's
    runs with and without stalled watchers alternate, so the machine's drift falls on both alike.
    ``measure`` runs the load generator on a spec against a runwatch started with ``ENV``."""
    out: dict[str, Any] = {}
    for pace, rate in SLOW_PACES:
        results: dict[str, list[dict[str, Any]]] = {"no_stall": [], "stall_1pct": []}
        for i in range(repeats):
            for label, fraction in (("no_stall", 0.0), ("stall_1pct", 0.01)):
                progress(
                    f"slow consumers, {pace} ({rate or 'full'} tok/s), {label}: {watchers} watchers x {tokens} "
                    f"tokens of 1.5 KB ({i + 1}/{repeats})"
                )
                spec = {
                    "protocol": "runwatch",
                    "watchers": watchers,
                    "runs": runs,
                    "tokens": tokens,
                    "rate": rate,
                    "token_chars": 1500,
                    "stall_fraction": fraction,
                    "stall_hold_seconds": 3,
                }
                results[label].append(measure(spec))
        out[pace] = {
            label: {
                "runs": rows,
                "latency_p99_ms": median_of(rows, "latency_p99_ms"),
                "rss_peak_mib": median_of(rows, "rss_peak_mib"),
                "loadgen_busy": median_of(
                    [{"busy": r["loadgen_streaming_cpu_s"] / r["streaming_s"]} for r in rows if r.get("streaming_s")],
                    "busy",
                ),
            }
            for label, rows in results.items()
        }
    return out


def ratios(res: dict[str, Any]) -> dict[str, Any]:
    """The report's rows: per pace, the p99 ratio (the target's, paced), the load generator's load,
    the RSS ratio and how the stalled watchers ended."""
    out: dict[str, Any] = {}
    for pace, s in res.items():
        out[
            f"{pace}: fast watchers' p99 with 1% stalled / without" + (" (target ≤ 1.2)" if pace == "paced" else "")
        ] = ratio(s["stall_1pct"]["latency_p99_ms"], s["no_stall"]["latency_p99_ms"])
        out[f"{pace}: fast watchers' p99 without / with 1% stalled, ms"] = (
            f"{s['no_stall']['latency_p99_ms']} / {s['stall_1pct']['latency_p99_ms']}"
        )
        out[f"{pace}: load generator's CPU / the streaming window (1 = it is the bottleneck)"] = s["no_stall"][
            "loadgen_busy"
        ]
        out[f"{pace}: server peak RSS with 1% stalled / without"] = ratio(
            s["stall_1pct"]["rss_peak_mib"], s["no_stall"]["rss_peak_mib"]
        )
        outcome = s["stall_1pct"]["runs"][-1].get("stall", {})
        out[f"{pace}: stalled watchers: of / resynced / completed anyway / close codes"] = (
            f"{outcome.get('stalled')} / {outcome.get('resynced')} / {outcome.get('completed_anyway')} / "
            f"{outcome.get('close_codes')}"
        )
    return out
