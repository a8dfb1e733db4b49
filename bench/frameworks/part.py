"""The frameworks part: the adapter's CPU per token in the agent's process beside the framework's
own, on the same scripted run (``agent.py``, ``scripted.py``).

For each framework, one agent process per measurement, alone on the server core (runwatch, taking
what the adapter reports, on the load core): bare and with the adapter, each at two run lengths
(``SHORT`` and ``LONG`` tokens), interleaved, ``repeats`` times each. A run costs a fixed part (for
the adapter: registering the run and storing its end, two HTTP requests) and a part per token; the
slope between the two lengths is the CPU per token, bare (the framework's own) and with the adapter
(the difference is the adapter's, the target's figure); the rest is the adapter's fixed CPU per run.
The all-in ratio at ``LONG`` tokens per run counts both.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from bench import servers
from bench.stats import median_of, ratio

#: Runs per process, and the two run lengths (tokens): the full part, and ``--quick``.
FULL = {"runs": 20, "short": 100, "long": 2000}
QUICK = {"runs": 5, "short": 100, "long": 2000}
FRAMEWORKS = ("openai-agents", "langchain", "langgraph")
#: The measurements of each framework: bare, with the adapter, and (LangChain) with a handler
#: that does nothing — what LangChain itself spends calling any handler, the adapter's or not.
MODES = {
    "openai-agents": ("bare", "adapter"),
    "langchain": ("bare", "noop", "adapter"),
    "langgraph": ("bare", "adapter"),
}
TARGET = 0.2

Progress = Callable[[str], None]


def one(framework: str, adapter: bool, spec: dict[str, Any]) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.frameworks.agent",
        json.dumps({**spec, "framework": framework, "adapter": adapter}),
    ]
    raw = servers.run_json(f"{framework} agent", servers.SERVER_CORE, argv, 600)
    runs = spec["runs"]
    return {**raw, "cpu_us_per_run": raw["cpu_s"] * 1e6 / runs, "chunks_per_run": raw["chunks"] / runs}


def run_all(quick: bool, repeats: int, progress: Progress) -> dict[str, Any]:
    size = QUICK if quick else FULL
    server = servers.runwatch_alone(servers.LOAD_CORE)
    res: dict[str, Any] = {"size": size}
    try:
        key = servers.agent_key(server)
        for framework in FRAMEWORKS:
            modes = MODES[framework]
            rows: dict[str, list[dict[str, Any]]] = {f"{m}/{n}": [] for m in modes for n in ("short", "long")}
            for i in range(repeats):  # interleaved: the machine's drift falls on all alike
                for name in rows:
                    mode, length = name.split("/")
                    progress(f"frameworks: {framework}, {mode}, {size[length]} tokens a run ({i + 1}/{repeats})")
                    spec = {"url": server.http_url, "key": key, "runs": size["runs"], "tokens": size[length]}
                    spec["noop"] = mode == "noop"
                    rows[name].append(one(framework, mode == "adapter", spec))
            res[framework] = rows
    finally:
        server.stop()
    return res


def _slope(rows: dict[str, list[dict[str, Any]]], mode: str) -> tuple[float, float, float, float]:
    """(CPU µs per chunk, CPU µs per short run, chunks per short run, CPU µs per long run)."""
    short_cpu, long_cpu = (median_of(rows[f"{mode}/{n}"], "cpu_us_per_run") or 0.0 for n in ("short", "long"))
    short_n, long_n = (median_of(rows[f"{mode}/{n}"], "chunks_per_run") or 0.0 for n in ("short", "long"))
    return (long_cpu - short_cpu) / (long_n - short_n), short_cpu, short_n, long_cpu


def figures(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for framework in FRAMEWORKS:
        rows = res[framework]
        bare, bare_short, chunks_short, bare_long = _slope(rows, "bare")
        with_, with_short, _, with_long = _slope(rows, "adapter")
        adapter = with_ - bare
        noop = _slope(rows, "noop")[0] - bare if "noop/short" in rows else None
        complete = all(r["chunks"] and not r.get("errors") for rs in rows.values() for r in rs)
        out[framework] = {
            "bare_us": round(bare, 2),
            "adapter_us": round(adapter, 2),
            "ratio": ratio(adapter, bare),
            "adapter_us_per_run": round(with_short - bare_short - adapter * chunks_short),
            "all_in_ratio": ratio(with_long - bare_long, bare_long),
            "any_handler_us": None if noop is None else round(noop, 2),
            "any_handler_ratio": None if noop is None else ratio(noop, bare),
            "complete": complete,
        }
    return out


def report(res: dict[str, Any]) -> str:
    s = res["size"]
    n = len(res[FRAMEWORKS[0]]["bare/short"])
    lines = [
        f"### Framework adapters (issue 28): {s['runs']} runs a process, of {s['short']} and {s['long']} "
        f"tokens, median of {n}",
        "",
        "| framework | its own CPU µs per chunk | the adapter's | ratio | target | | the adapter's per run, µs "
        f"| all in, at {s['long']} tokens a run |",
        "|---|---:|---:|---:|---:|:-:|---:|---:|",
    ]
    for framework, f in figures(res).items():
        met = "met" if f["ratio"] is not None and f["ratio"] <= TARGET and f["complete"] else "**not met**"
        lines.append(
            f"| {framework} | {f['bare_us']} | {f['adapter_us']} | {f['ratio']} | ≤ {TARGET} | {met} "
            f"| {f['adapter_us_per_run']} | {f['all_in_ratio']} |"
        )
    for framework, f in figures(res).items():
        if f["any_handler_us"] is not None:
            lines += [
                "",
                f"{framework}: calling a handler that does nothing costs the framework {f['any_handler_us']} µs "
                f"per chunk ({f['any_handler_ratio']} of its own), of the adapter's {f['adapter_us']}.",
            ]
    return "\n".join([*lines, ""])
