"""The frameworks part: the adapter's CPU per token in the agent's process beside the framework's
own, on the same scripted run (``agent.py``, ``scripted.py``).

For each framework, one agent process per measurement, alone on the server core (runwatch, taking
what the adapter reports, on the load core): bare and with the adapter, interleaved, ``repeats``
times each. The adapter's cost per token is the process's CPU with it minus without, over the
chunks streamed; the target compares it with the framework's own CPU per chunk (bare).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from bench import servers
from bench.stats import median_of, ratio

#: Runs per process and tokens per run: the full part, and ``--quick``.
FULL = {"runs": 20, "tokens": 1000}
QUICK = {"runs": 5, "tokens": 1000}
FRAMEWORKS = ("openai-agents", "langchain")
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
    return {**raw, "us_per_chunk": round(raw["cpu_s"] * 1e6 / raw["chunks"], 2) if raw["chunks"] else None}


def run_all(quick: bool, repeats: int, progress: Progress) -> dict[str, Any]:
    size = QUICK if quick else FULL
    server = servers.runwatch_alone(servers.LOAD_CORE)
    res: dict[str, Any] = {"size": size}
    try:
        spec = {"url": server.http_url, "key": servers.agent_key(server), **size}
        for framework in FRAMEWORKS:
            rows: dict[str, list[dict[str, Any]]] = {"bare": [], "adapter": []}
            for i in range(repeats):  # interleaved: the machine's drift falls on both alike
                for mode in rows:
                    progress(f"frameworks: {framework}, {mode} ({i + 1}/{repeats})")
                    rows[mode].append(one(framework, mode == "adapter", spec))
            res[framework] = rows
    finally:
        server.stop()
    return res


def figures(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for framework in FRAMEWORKS:
        rows = res[framework]
        bare, with_ = median_of(rows["bare"], "us_per_chunk"), median_of(rows["adapter"], "us_per_chunk")
        adapter = round(with_ - bare, 2) if bare is not None and with_ is not None else None
        complete = all(r["chunks"] and not r.get("errors") for rs in rows.values() for r in rs)
        out[framework] = {"bare_us": bare, "adapter_us": adapter, "ratio": ratio(adapter, bare), "complete": complete}
    return out


def report(res: dict[str, Any]) -> str:
    s = res["size"]
    n = len(res[FRAMEWORKS[0]]["bare"])
    lines = [
        f"### Framework adapters (issue 28): {s['runs']} runs x {s['tokens']} tokens per process, median of {n}",
        "",
        "| framework | its own CPU µs per chunk | the adapter's (with - without) | ratio | target | |",
        "|---|---:|---:|---:|---:|:-:|",
    ]
    for framework, f in figures(res).items():
        met = "met" if f["ratio"] is not None and f["ratio"] <= TARGET and f["complete"] else "**not met**"
        lines.append(f"| {framework} | {f['bare_us']} | {f['adapter_us']} | {f['ratio']} | ≤ {TARGET} | {met} |")
    return "\n".join([*lines, ""])
