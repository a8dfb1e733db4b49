"""The ingest part's scenarios, side by side in one run, and its report (method: bench/README.md).

* **live**: K external runs x R tok/s, one watcher each. runwatch alone on the server core; the
  agent process and the watchers' process on the load core. Server CPU from ``/proc`` over the
  window from before the runs register to the moment the watchers have seen every run finish.
* **runner path**: the same runs executed inside runwatch (its own agent streaming from the offline
  model at the same rate, one watcher per run): bench/runs.py's ``runwatch+watchers`` as it is.
* **client**: the agent process on the server core, alone, streaming K chat completions from the
  offline model on the openai SDK — once reporting them, once not — interleaved.
* **outage**: ``outage.py``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

from bench import runs as model_streams
from bench import servers
from bench.ingest import outage
from bench.ingest.child import Child
from bench.loadgen import cpu_seconds
from bench.stats import median_of, ratio

#: (runs, tokens/s, tokens per run, outage seconds): the full part, and ``--quick``.
FULL = {"runs": 100, "rate": 50, "tokens": 500, "down_s": 10.0}
QUICK = {"runs": 20, "rate": 50, "tokens": 250, "down_s": 5.0}

Progress = Callable[[str], None]


#: The ingest routes whose requests are counted (one per batch a client posts: of one run, or of
#: all the runs it has events of).
EVENTS_ROUTES = ('path="/api/ingest/runs/{run_id}/events"', 'path="/api/ingest/events"')


def posts(server: servers.Running) -> int:
    """How many batches (``POST .../events``) ``server`` has answered, from its metrics."""
    r = httpx.get(f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {server.token}"})
    r.raise_for_status()
    lines = r.text.splitlines()
    return int(
        sum(
            float(x.rsplit(" ", 1)[1])
            for x in lines
            if x.startswith("runwatch_http_requests_total{") and any(route in x for route in EVENTS_ROUTES)
        )
    )


def live(runs: int, rate: float, tokens: int) -> dict[str, Any]:
    """Server CPU per ingested token and the watchers' call-to-receipt latency."""
    server = servers.runwatch_alone()
    children: list[Child] = []
    try:
        spec = {"url": server.http_url, "key": servers.agent_key(server), "runs": runs, "tokens": tokens, "rate": rate}
        watch = Child("watchers", servers.LOAD_CORE, "bench.ingest.watch",
                      {"ws_url": server.ws_url, "token": server.token, "runs": runs})  # fmt: skip
        # RUNWATCH_BENCH_PROFILE=PREFIX: cProfile the agent's thread and the client's (agent.py, ``Profiles``).
        spec |= {"mode": "paced", "profile": os.environ.get("RUNWATCH_BENCH_PROFILE")}
        agent = Child("agent", servers.LOAD_CORE, "bench.ingest.agent", spec)
        children += [watch, agent]
        watch.expect("connected")
        agent.expect("ready")
        cpu0, posts0 = cpu_seconds(server.pid), posts(server)
        agent.send({"command": "register"})
        ids = agent.expect("registered")["runs"]
        watch.send({"runs": ids})
        watch.expect("ready")
        agent.send({"command": "go"})
        seen = watch.expect("done", timeout=tokens / rate + 120)
        cpu = cpu_seconds(server.pid) - cpu0
        sent = agent.expect("sent")
        batches = posts(server) - posts0
    finally:
        for child in children:
            child.stop()
        server.stop()
    return {
        "server_cpu_s": round(cpu, 3),
        "tokens": seen["tokens"],
        "server_cpu_us_per_token": round(cpu * 1e6 / max(seen["tokens"], 1), 1),
        "watch_p50_ms": seen["p50_ms"],
        "watch_p99_ms": seen["p99_ms"],
        "watch_max_ms": seen["max_ms"],
        "frames": seen["frames"],
        "posts": batches,
        "tokens_per_post": round(seen["tokens"] / max(batches, 1), 2),
        "server_cpu_us_per_post": round(cpu * 1e6 / max(batches, 1)),
        "agent_cpu_s": sent["cpu_s"],
        "agent_client_thread_cpu_s": sent["client_thread_cpu_s"],
        "client_thread_us_per_post": round(sent["client_thread_cpu_s"] * 1e6 / max(batches, 1)),
        "agent_rss_growth_mib": sent["rss_growth_mib"],
        "client_errors": sent["errors"],
        "complete": seen["tokens"] == runs * tokens and seen["succeeded"] == runs and not sent["dropped"],
        "problems": seen["problems"],
    }


def client_cost(runs: int, rate: float, tokens: int, repeats: int, progress: Progress) -> dict[str, Any]:
    """The agent process's CPU per chunk streaming on the openai SDK, without and with reporting."""
    model = servers.model_server()
    server = servers.runwatch_alone(servers.LOAD_CORE)
    rows: dict[str, list[dict[str, Any]]] = {"bare": [], "reporting": []}
    try:
        spec = {"mode": "openai", "url": server.http_url, "key": servers.agent_key(server)}
        spec |= {"model_url": model.http_url + "/v1", "runs": runs, "tokens": tokens, "rate": rate}
        for i in range(repeats):  # interleaved: the machine's drift falls on both alike
            for mode in rows:
                progress(f"ingest client cost: openai SDK, {mode} ({i + 1}/{repeats})")
                argv = [sys.executable, "-m", "bench.ingest.agent", json.dumps({**spec, "report": mode == "reporting"})]
                posts0 = posts(server)
                raw = servers.run_json(f"agent ({mode})", servers.SERVER_CORE, argv, 600)
                rows[mode].append(_client_row(raw, posts(server) - posts0, tokens / rate, runs * tokens))
    finally:
        server.stop()
        model.stop()
    chunks = runs * tokens
    bare, with_ = (median_of(rows[m], "cpu_s") or 0.0 for m in ("bare", "reporting"))
    thread = median_of(rows["reporting"], "client_thread_cpu_s") or 0.0
    return {
        "repeats": rows,
        "bare_us_per_chunk": round(bare * 1e6 / chunks, 1),
        # The target's figure: what the client's thread and the calls into the client cost, measured.
        "client_us_per_token": round((median_of(rows["reporting"], "client_cpu_s") or 0.0) * 1e6 / chunks, 1),
        # The cross-check: the process's CPU with reporting minus without (see bench/README.md).
        "difference_us_per_token": round((with_ - bare) * 1e6 / chunks, 1),
        "client_thread_us_per_token": round(thread * 1e6 / chunks, 1),
        "tokens_per_post": median_of(rows["reporting"], "tokens_per_post"),
        "client_thread_us_per_post": median_of(rows["reporting"], "client_thread_us_per_post"),
        "wall_over_nominal_max": {m: median_of(rows[m], "wall_over_nominal_max") for m in rows},
        "complete": all(r["complete"] and not r["errors"] for rs in rows.values() for r in rs),
    }


def _client_row(raw: dict[str, Any], batches: int, nominal: float, chunks: int) -> dict[str, Any]:
    return {
        "cpu_s": raw["cpu_s"],
        "client_thread_cpu_s": raw["client_thread_cpu_s"],
        "client_cpu_s": round(raw["client_thread_cpu_s"] + raw["token_calls_cpu_s"], 3),
        "chunks": raw["chunks"],
        "posts": batches,
        "tokens_per_post": round(raw["chunks"] / batches, 2) if batches else None,
        "client_thread_us_per_post": round(raw["client_thread_cpu_s"] * 1e6 / batches) if batches else None,
        "wall_over_nominal_max": round(max(raw["wall_s"]) / nominal, 3),
        "errors": raw["errors"],
        "complete": raw["chunks"] == chunks,
    }


def run_all(quick: bool, repeats: int, progress: Progress) -> dict[str, Any]:
    size = QUICK if quick else FULL
    runs, rate, tokens = size["runs"], size["rate"], size["tokens"]
    res: dict[str, Any] = {"size": size, "live": [], "runner": []}
    for i in range(repeats):  # interleaved with the runner path, for the same reason
        progress(f"ingest: {runs} external runs x {rate} tok/s x {tokens} tokens, a watcher each ({i + 1}/{repeats})")
        res["live"].append(live(runs, rate, tokens))
        progress(f"ingest: the same runs on runwatch's runner path ({i + 1}/{repeats})")
        res["runner"].append(model_streams.measure("runwatch+watchers", runs, rate, tokens))
    res["client"] = client_cost(runs, rate, tokens, repeats, progress)
    progress(f"ingest: {runs} runs, the server killed for {size['down_s']} s mid-stream")
    res["outage"] = outage.run(runs, rate, size["down_s"])
    return res


def figures(res: dict[str, Any]) -> dict[str, Any]:
    """The part's targets, each measured against its goal."""
    live_, runner, client, down = res["live"], res["runner"], res["client"], res["outage"]
    per_token = median_of(live_, "server_cpu_us_per_token")
    per_chunk = median_of(runner, "cpu_us_per_chunk")
    return {
        "server_us_per_token": per_token,
        "runner_us_per_chunk": per_chunk,
        "server_ratio": ratio(per_token, per_chunk),
        "watch_p99_ms": median_of(live_, "watch_p99_ms"),
        "runner_watch_p99_ms": median_of(runner, "watch_p99_ms"),
        "client_ratio": ratio(client["client_us_per_token"], client["bare_us_per_chunk"]),
        "outage_exact": down["exact"],
        "buffered_peak_mib": round(down["agent"]["buffered_peak_bytes"] / 2**20, 3),
        "rss_growth_mib": down["agent"]["rss_growth_mib"],
        "buffer_mib": down["agent"]["buffer_bytes"] / 2**20,
    }


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _scenarios(res: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | server CPU µs per token (chunk) | tokens per post | server / client thread CPU µs per post | "
        "watchers p50 / p99 / max ms | complete |",
        "|---|---:|---:|---:|---:|:-:|",
    ]
    for row in res["live"]:
        lines.append(
            f"| external runs (runwatch.client), a watcher each | {row['server_cpu_us_per_token']} | "
            f"{row['tokens_per_post']} | {row['server_cpu_us_per_post']} / {row['client_thread_us_per_post']} | "
            f"{row['watch_p50_ms']} / {row['watch_p99_ms']} / {row['watch_max_ms']} | "
            f"{'yes' if row['complete'] else 'NO'} |"
        )
    for row in res["runner"]:
        lines.append(
            f"| runner path (offline model), a watcher each | {row['cpu_us_per_chunk']} | — | — | "
            f"{row.get('watch_p50_ms')} / {row.get('watch_p99_ms')} / — | {'yes' if row['complete'] else 'NO'} |"
        )
    return lines


def _targets(f: dict[str, Any], c: dict[str, Any]) -> list[str]:
    mib = f"{f['buffer_mib']:.0f} MiB"
    return [
        "| target | goal | measured | |",
        "|---|---:|---:|:-:|",
        f"| server CPU per ingested token / the runner path's per chunk | ≤ 0.5 | {f['server_ratio']} "
        f"({f['server_us_per_token']} / {f['runner_us_per_chunk']} µs) | {_met((f['server_ratio'] or 9) <= 0.5)} |",
        f"| watchers' p99, `run.token()` to receipt | ≤ 100 ms | {f['watch_p99_ms']} ms | "
        f"{_met((f['watch_p99_ms'] or 1e9) <= 100)} |",
        f"| the client's CPU per token / the bare openai SDK's per chunk | ≤ 0.2 | {f['client_ratio']} "
        f"({c['client_us_per_token']} / {c['bare_us_per_chunk']} µs) | {_met((f['client_ratio'] or 9) <= 0.2)} |",
        f"| outage: every run's stored events = what its agent sent | exact | "
        f"{'exact' if f['outage_exact'] else 'DIFFERENT'} | {_met(f['outage_exact'])} |",
        f"| outage: the client's buffered bytes, peak | ≤ {mib} | {f['buffered_peak_mib']} MiB | "
        f"{_met(f['buffered_peak_mib'] <= f['buffer_mib'])} |",
        f"| outage: the agent process's RSS growth | ≤ {mib} | {f['rss_growth_mib']} MiB | "
        f"{_met(f['rss_growth_mib'] <= f['buffer_mib'])} |",
    ]


def report(res: dict[str, Any]) -> str:
    s, c, d = res["size"], res["client"], res["outage"]
    load = f"{s['runs']} runs x {s['rate']} tok/s x {s['tokens']} tokens"
    walls = c["wall_over_nominal_max"]
    return "\n".join(
        [
            f"### Ingest (issue 27): {load}, median of {len(res['live'])}",
            "",
            *_scenarios(res),
            "",
            f"Client cost: the agent process alone on the server core, the openai SDK streaming {load} from the "
            f"offline model: bare {c['bare_us_per_chunk']} µs per chunk; reporting costs {c['client_us_per_token']} "
            f"µs per token (the client's thread {c['client_thread_us_per_token']}, the rest `run.token()` on the "
            f"agent's; {c['tokens_per_post']} tokens per post, the client's thread {c['client_thread_us_per_post']} "
            f"µs per post); the process's CPU with reporting minus without: {c['difference_us_per_token']} µs per "
            f"token. Wall / nominal, max: {walls['bare']} bare, {walls['reporting']} reporting"
            f"{'' if c['complete'] else ' (INCOMPLETE, or client errors)'}.",
            "",
            f"Outage: {d['runs']} runs x {d['tokens_per_run']} tokens; the server killed (SIGKILL) "
            f"{d['kill_after_s']} s into the streams, started again after {d['restarted_after_s']} s, healthy after "
            f"{d['down_s']} s; {d['tokens_sent']} tokens sent, {d['tokens_stored']} stored, {d['lost']} lost, "
            f"{d['duplicated']} stored twice; runs whose events differ from what was sent: {d['runs_differ']}; "
            f"client errors (retried; the last 100 kept): {d['agent']['errors']}; dropped tokens: "
            f"{d['agent']['dropped']}; agent RSS {d['agent']['rss_start_mib']} → {d['agent']['rss_peak_mib']} MiB "
            f"(the live runs, without an outage: +{median_of(res['live'], 'agent_rss_growth_mib')} MiB).",
            "",
            *_targets(figures(res), c),
            "",
        ]
    )
