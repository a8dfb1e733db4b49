"""``python -m bench [--quick]``: runwatch's fan-out benchmarks, side by side with peers, in one run.

Prints a Markdown table with the ratios the targets are stated in, and writes the raw results as
JSON (``bench/results/latest.json`` by default). See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import broker, model_cost, servers
from bench import runs as model_streams
from bench import search as search_bench
from bench import slices as loop_slices
from bench import slow as slow_consumers
from bench.frameworks import part as frameworks
from bench.ingest import part as ingest
from bench.stats import median_of, ratio

RESULTS = Path(__file__).resolve().parent / "results"


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.loadgen", json.dumps(spec)]
    return servers.run_json("load generator", servers.LOAD_CORE, argv, spec.get("timeout", 600) + 120)


def with_server(start: Callable[[], tuple[servers.Running, list[servers.Running]]], spec: dict[str, Any]) -> dict:
    server, extra = start()
    try:
        return loadgen(
            {
                **spec,
                "server_pid": server.pid,
                "ws_url": server.ws_url,
                "http_url": server.http_url,
                "token": server.token,
            }
        )
    finally:
        for s in [server, *extra]:
            s.stop()


def runwatch_with(
    coalesce_ms: float, env: dict[str, str] | None = None
) -> Callable[[], tuple[servers.Running, list[servers.Running]]]:
    def start() -> tuple[servers.Running, list[servers.Running]]:
        model = servers.model_server()
        return servers.runwatch(model, coalesce_ms=coalesce_ms, env=env), [model]

    return start


SYSTEMS: dict[str, tuple[str, Callable[[], tuple[servers.Running, list[servers.Running]]]]] = {
    "node": ("rooms", lambda: (servers.node_rooms(), [])),
    "websockets": ("rooms", lambda: (servers.py_rooms(), [])),
    "runwatch": ("runwatch", runwatch_with(25)),
    "runwatch-nocoalesce": ("runwatch", runwatch_with(0)),
    "runwatch-frame1": ("runwatch", runwatch_with(0, {"RUNWATCH_WS_FRAME_EVENTS": "1"})),
}
LABELS = {
    "node": "Node `ws` rooms (seed design)",
    "websockets": "Python `websockets` broadcast()",
    "runwatch": "runwatch, coalescing 25 ms",
    "runwatch-nocoalesce": "runwatch, coalescing off",
    "runwatch-frame1": "runwatch, coalescing off, one event per frame",
}


PARTS = [
    "fanout",
    "idle",
    "slow",
    "runs",
    "model",
    "broker",
    "auth",
    "presence",
    "search",
    "slices",
    "ingest",
    "frameworks",
]


def fanout(watchers: int, runs: int, tokens: int, repeats: int) -> dict[str, dict]:
    out = {}
    for name, (protocol, start) in SYSTEMS.items():
        results = []
        for i in range(repeats):
            progress(f"fan-out {name}: {watchers} watchers x {runs} runs x {tokens} tokens ({i + 1}/{repeats})")
            spec = {"protocol": protocol, "watchers": watchers, "runs": runs, "tokens": tokens}
            results.append(with_server(start, spec))
        out[name] = {
            "runs": results,
            **{
                k: median_of(results, k)
                for k in (
                    "cpu_us_per_token",
                    "cpu_us_per_frame",
                    "latency_p50_ms",
                    "latency_p99_ms",
                    "elapsed_s",
                    "rss_peak_mib",
                    "rest_p99_ms",
                )
            },
            "frames": median_of(results, "frames"),
            "complete": all(r["complete"] for r in results),
        }
    return out


#: Tokens a second of each run in the authentication benchmark.
AUTH_RATE = 400


def on_off(label: str, off: dict[str, str], watchers: int, runs: int, tokens: int, repeats: int) -> dict[str, Any]:
    """The fan-out with a feature on (the defaults) and off (``off``'s settings), interleaved — on,
    off, on, off … — so that the machine's drift falls on both alike. The runs are paced (400
    tokens/s, as a fast model streams), not at full speed: a full-speed burst coalesces into a
    number of frames that varies ±30% from one run to the next, and CPU with it, which would drown a
    5% difference; paced, every run makes the same frames, for long enough (10 s) that the process
    CPU clock's 10 ms ticks do not decide it either."""
    systems = {"on": runwatch_with(25), "off": runwatch_with(25, off)}
    results: dict[str, list[dict]] = {"on": [], "off": []}
    for i in range(repeats):
        for mode, start in systems.items():
            progress(f"{label} {mode}: {watchers} watchers x {runs} runs x {tokens} tokens ({i + 1}/{repeats})")
            spec = {"protocol": "runwatch", "watchers": watchers, "runs": runs, "tokens": tokens, "rate": AUTH_RATE}
            results[mode].append(with_server(start, spec))
    return {
        mode: {
            "runs": rs,
            **{k: median_of(rs, k) for k in ("cpu_us_per_token", "server_cpu_s", "latency_p99_ms", "elapsed_s")},
        }
        for mode, rs in results.items()
    }


def auth(watchers: int, runs: int, tokens: int, repeats: int) -> dict[str, Any]:
    """Authentication happens at connect, not per frame: every watcher and request with the
    server's admin key, or none (``RUNWATCH_AUTH=off``)."""
    return on_off("authentication", {"RUNWATCH_AUTH": "off"}, watchers, runs, tokens, repeats)


def presence(watchers: int, runs: int, tokens: int, repeats: int) -> dict[str, Any]:
    """Presence changes on subscribe and unsubscribe, never per event: every watcher of a run told
    who watches it, or nobody (``RUNWATCH_PRESENCE=off``)."""
    return on_off("presence", {"RUNWATCH_PRESENCE": "off"}, watchers, runs, tokens, repeats)


def on_off_report(title: str, a: dict[str, Any], p: dict[str, Any]) -> str:
    lines = [
        f"### {title} on and off: {p['watchers']} watchers x {p['runs']} runs x {p['auth_tokens']} tokens"
        f" at {AUTH_RATE}/s, interleaved, median of {p['auth_repeats']}",
        "",
        f"| {title.lower()} | CPU µs per delivered token | server CPU s | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for mode in ("on", "off"):
        row = a[mode]
        lines.append(f"| {mode} | {row['cpu_us_per_token']} | {row['server_cpu_s']} | {row['latency_p99_ms']} |")
    lines += [
        "",
        f"runwatch CPU per token, {title.lower()} on / off (target ≤ 1.05): "
        f"{ratio(a['on']['cpu_us_per_token'], a['off']['cpu_us_per_token'])}",
    ]
    return "\n".join(lines)


def idle(counts: list[int]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in ("runwatch", "node", "websockets"):
        protocol, start = SYSTEMS[name]
        for count in counts:
            progress(f"idle memory {name}: {count} connections")
            out.setdefault(name, {})[str(count)] = with_server(
                start, {"mode": "idle", "protocol": protocol, "watchers": count}
            )
    return out


def _fanout_report(f: dict[str, Any], p: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = [
        f"### Fan-out: {p['watchers']} watchers x {p['runs']} runs x {p['tokens']} tokens, median of {p['repeats']}",
        "",
        "| server | CPU µs per delivered token | CPU µs per frame | frames | p50 ms | p99 ms | complete |",
        "|---|---:|---:|---:|---:|---:|:-:|",
    ]
    for name, row in f.items():
        lines.append(
            f"| {LABELS[name]} | {row['cpu_us_per_token']} | {row['cpu_us_per_frame']} | {row['frames']:.0f} | "
            f"{row['latency_p50_ms']} | {row['latency_p99_ms']} | {'yes' if row['complete'] else 'NO'} |"
        )
    ratios = {
        "runwatch CPU per token / Node's (target ≤ 0.2)": ratio(
            f["runwatch"]["cpu_us_per_token"], f["node"]["cpu_us_per_token"]
        ),
        "runwatch p99 publish-to-receive, ms (target ≤ 100)": f["runwatch"]["latency_p99_ms"],
        "runwatch REST read p99 of another run during the streams, ms": f["runwatch"].get("rest_p99_ms"),
        # Frames of one event each, the peers' unit: the default frames carry what became visible
        # together (up to 500 events), so their CPU per frame measures frame size, not sending.
        "runwatch (coalescing off, one event per frame) CPU per frame / websockets' (target ≤ 1.5)": ratio(
            f["runwatch-frame1"]["cpu_us_per_frame"], f["websockets"]["cpu_us_per_frame"]
        ),
        "runwatch (coalescing off, default frames) CPU per delivered token / websockets'": ratio(
            f["runwatch-nocoalesce"]["cpu_us_per_token"], f["websockets"]["cpu_us_per_token"]
        ),
    }

    return lines, ratios


def report(res: dict[str, Any]) -> str:
    p = res["params"]
    lines: list[str] = []
    ratios: dict[str, Any] = {}
    if "fanout" in res:
        lines, ratios = _fanout_report(res["fanout"], p)
    if "idle" in res:
        for count, r in res["idle"]["runwatch"].items():
            ratios[f"runwatch RSS per idle connection at {count}, KiB (target ≤ 32)"] = r["kib_per_connection"]
    if "slow" in res:
        ratios |= slow_consumers.ratios(res["slow"])
    lines += ["", "| measure | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in ratios.items()]
    if "idle" in res:
        lines += [
            "",
            "| idle connections | " + " | ".join(f"KiB/conn at {c}" for c in p["idle_counts"]) + " |",
            "|---|" + "---:|" * len(p["idle_counts"]),
        ]
        for name, by_count in res["idle"].items():
            lines.append(
                f"| {LABELS[name]} | "
                + " | ".join(str(by_count[str(c)]["kib_per_connection"]) for c in p["idle_counts"])
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: under 2 minutes")
    parser.add_argument("--watchers", type=int, help="watcher connections (default 1000; quick 200)")
    parser.add_argument("--streams", type=int, help="fan-out: runs followed by every watcher (default 4; quick 2)")
    parser.add_argument("--tokens", type=int, help="tokens per run (default 2000; quick 500)")
    parser.add_argument("--repeats", type=int, help="repeats per system; medians are reported (default 3)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    parser.add_argument(
        "--runs", action="store_true", help="only the model-stream benchmark (many runs per process), as --only runs"
    )
    parser.add_argument(
        "--broker",
        choices=["redis"],
        help="only the broker benchmark: the Redis broker and PostgreSQL beside memory and SQLite, as --only broker",
    )
    parser.add_argument(
        "--baseline",
        default=model_cost.BASELINE,
        help=f"the commit the offline model's cost is compared with (--only model; default {model_cost.BASELINE})",
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the results")
    args = parser.parse_args()
    quick = args.quick
    params = {
        "watchers": args.watchers or (200 if quick else 1000),
        "runs": args.streams or (2 if quick else 4),
        "tokens": args.tokens or (500 if quick else 2000),
        "repeats": args.repeats or (1 if quick else 3),
        "idle_counts": [1000] if quick else [1000, 5000],
        "slow_watchers": 100 if quick else 300,
        "slow_tokens": 3000,
        "persist_events": 50_000 if quick else 200_000,
        "list_runs": 100_000,
        "memory_runs": 200 if quick else 1000,
        "auth_tokens": 1200 if quick else 4000,
        "auth_repeats": 1 if quick else 5,
    }
    parts = ["runs"] if args.runs else ["broker"] if args.broker else args.only or PARTS
    started = time.monotonic()
    res: dict[str, Any] = {"params": params, "machine": machine()}
    if "fanout" in parts:
        res["fanout"] = fanout(params["watchers"], params["runs"], params["tokens"], params["repeats"])
    if "idle" in parts:
        res["idle"] = idle(params["idle_counts"])
    if "runs" in parts:
        workloads = model_streams.QUICK_WORKLOADS if quick else model_streams.WORKLOADS
        res["model_streams"] = model_streams.run_all(workloads, params["repeats"], progress)
    if "model" in parts:
        workloads = model_cost.QUICK_WORKLOADS if quick else model_cost.WORKLOADS
        res["model_cost"] = model_cost.run_all(workloads, params["repeats"], args.baseline, progress)
    if "broker" in parts:
        res["broker"] = broker.run_all(params, loadgen, progress)
    if "auth" in parts:
        res["auth"] = auth(params["watchers"], params["runs"], params["auth_tokens"], params["auth_repeats"])
    if "presence" in parts:
        res["presence"] = presence(params["watchers"], params["runs"], params["auth_tokens"], params["auth_repeats"])
    if "search" in parts:
        res["search"] = search_bench.run(params["list_runs"], progress)
    if "slices" in parts:
        res["slices"] = loop_slices.run_all(params["repeats"], progress)
    if "ingest" in parts:
        res["ingest"] = ingest.run_all(quick, params["repeats"], progress)
    if "frameworks" in parts:
        res["frameworks"] = frameworks.run_all(quick, params["repeats"], progress)
    if "slow" in parts:
        res["slow"] = slow_consumers.run(
            partial(with_server, runwatch_with(25, slow_consumers.ENV)),
            params["slow_watchers"],
            1,
            params["slow_tokens"],
            params["repeats"],
            progress,
        )
    res["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2))
    if any(part in res for part in ("fanout", "idle", "slow")):
        print(report(res))
    if "model_streams" in res:
        print(model_streams.report(res["model_streams"]))
    if "model_cost" in res:
        print(model_cost.report(res["model_cost"]))
    if "broker" in res:
        print(broker.report(res["broker"], params))
    if "search" in res:
        print(search_bench.report(res["search"]))
    if "slices" in res:
        print(loop_slices.report(res["slices"]))
    if "auth" in res:
        print(on_off_report("Authentication", res["auth"], params))
    if "presence" in res:
        print(on_off_report("Presence", res["presence"], params))
    if "ingest" in res:
        print(ingest.report(res["ingest"]))
    if "frameworks" in res:
        print(frameworks.report(res["frameworks"]))
    progress(f"done in {res['seconds']} s; raw results in {args.json}")


def machine() -> dict[str, Any]:
    import os
    import platform

    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
    }


if __name__ == "__main__":
    main()
