"""Many agents per process: what consuming a model's streams costs runwatch, beside peers, in one run.

The offline model is served by a process of its own on the load core; every consumer runs on the
server core and reads the same streams from it: runwatch's whole runner path (started over REST,
with and without one WebSocket watcher per run), the seed design's consumer (Node, Vercel AI SDK
``streamText`` over ``@ai-sdk/openai``), the bare ``openai`` npm client, and the bare ``openai``
Python SDK. See bench/README.md for the method and the targets.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

from bench import servers
from bench.loadgen import _percentile, cpu_seconds

#: (runs, tokens/s, tokens per run) of the full benchmark, and of ``--quick``.
WORKLOADS = [(10, 100, 2000), (100, 50, 500), (300, 50, 500)]
QUICK_WORKLOADS = [(100, 50, 250)]
CONSUMERS = ["runwatch", "runwatch+watchers", "node-ai", "node-openai", "python-openai"]
LABELS = {
    "runwatch": "runwatch runner path",
    "runwatch+watchers": "runwatch runner path, one watcher per run",
    "node-ai": "seed: AI SDK `streamText` (Node)",
    "node-openai": "bare `openai` npm client (Node)",
    "python-openai": "bare `openai` Python SDK (httpx)",
}
RUNWATCH_ENV = {"RUNWATCH_MAX_RUNNING": "1000", "RUNWATCH_MAX_QUEUED": "1000"}


def _peer(kind: str, base: str, runs: int, tokens: int, rate: float) -> dict[str, Any]:
    if kind.startswith("node-"):
        servers.npm_install()
        argv = ["node", str(servers.PEERS / "stream_consumer.mjs"), kind[5:], base]
    else:
        argv = [sys.executable, str(servers.PEERS / "py_stream_consumer.py"), base]
    raw = servers.run_json(kind, servers.SERVER_CORE, [*argv, str(runs), str(tokens), str(rate)], 600)
    nominal = tokens / rate
    ttft = raw["ttft_s"]
    return {
        "chunks": raw["chunks"],
        "cpu_s": round(raw["cpu_s"], 3),
        "cpu_us_per_chunk": round(raw["cpu_s"] * 1e6 / raw["chunks"], 1),
        "wall_over_nominal_max": round(max(raw["wall_s"]) / nominal, 3),
        "wall_over_nominal_p50": round(statistics.median(raw["wall_s"]) / nominal, 3),
        "ttft_p50_ms": round(1000 * _percentile(ttft, 0.5), 1),
        "ttft_p99_ms": round(1000 * _percentile(ttft, 0.99), 1),
        "complete": raw["chunks"] == runs * tokens,
    }


def _runwatch(model: servers.Running, runs: int, tokens: int, rate: float, watch: bool) -> dict[str, Any]:
    server = servers.runwatch(model, coalesce_ms=25, env=RUNWATCH_ENV)
    try:
        spec = {
            "server_pid": server.pid,
            "http_url": server.http_url,
            "ws_url": server.ws_url,
            "token": server.token,
            "runs": runs,
            "tokens": tokens,
            "rate": rate,
            "watch": watch,
        }
        argv = [sys.executable, "-m", "bench.rundriver", json.dumps(spec)]
        result = servers.run_json("runwatch driver", servers.LOAD_CORE, argv, 720)
        result["complete"] = result["succeeded"] == runs
        return result
    finally:
        server.stop()


def measure(kind: str, runs: int, rate: float, tokens: int) -> dict[str, Any]:
    """One consumer on one workload, with a model server of its own; adds the model server's CPU."""
    model = servers.model_server()
    try:
        before = cpu_seconds(model.pid)
        if kind.startswith("runwatch"):
            result = _runwatch(model, runs, tokens, rate, watch=kind.endswith("watchers"))
        else:
            result = _peer(kind, model.http_url + "/v1", runs, tokens, rate)
        result["model_us_per_chunk"] = round((cpu_seconds(model.pid) - before) * 1e6 / (runs * tokens), 1)
        return result
    finally:
        model.stop()


def median_row(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = {k for r in results for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    row: dict[str, Any] = {
        k: round(statistics.median(r[k] for r in results if r.get(k) is not None), 3)
        for k in keys
        if any(r.get(k) is not None for r in results)
    }
    row["complete"] = all(r.get("complete") for r in results)
    row["repeats"] = results
    return row


def report(res: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, by_kind in res.items():
        lines += [
            f"### Model streams: {name}",
            "",
            "| consumer | CPU µs per chunk | wall / nominal, max (p50) | TTFT p50 / p99 ms | watchers p99 ms | "
            "model server µs per chunk | complete |",
            "|---|---:|---:|---:|---:|---:|:-:|",
        ]
        for kind, row in by_kind.items():
            lines.append(
                f"| {LABELS[kind]} | {row.get('cpu_us_per_chunk')} | {row.get('wall_over_nominal_max')} "
                f"({row.get('wall_over_nominal_p50')}) | {row.get('ttft_p50_ms')} / {row.get('ttft_p99_ms')} | "
                f"{row.get('watch_p99_ms', '')} | {row.get('model_us_per_chunk')} | "
                f"{'yes' if row['complete'] else 'NO'} |"
            )
        rw, seed, npm = (by_kind.get(k, {}).get("cpu_us_per_chunk") for k in ("runwatch", "node-ai", "node-openai"))
        if rw and seed and npm:
            lines += [
                "",
                f"runwatch CPU per chunk / seed `streamText`: **{rw / seed:.2f}** (target ≤ 0.5); "
                f"/ bare `openai` npm: **{rw / npm:.2f}** (stretch ≤ 1.0)",
            ]
        lines.append("")
    return "\n".join(lines)


def run_all(workloads: list[tuple[int, int, int]], repeats: int, progress: Any) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for runs, rate, tokens in workloads:
        name = f"{runs} runs x {rate} tok/s x {tokens} tokens"
        res[name] = {}
        for kind in CONSUMERS:
            results = []
            for i in range(repeats):
                progress(f"model streams {name}: {kind} ({i + 1}/{repeats})")
                results.append(measure(kind, runs, rate, tokens))
            res[name][kind] = median_row(results)
    return res
