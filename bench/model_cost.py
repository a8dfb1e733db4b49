"""The offline model's own CPU per streamed chunk: at a baseline commit beside now, interleaved.

``python -m bench --only model [--baseline REV]``. The model server (a ``runwatch serve`` with the
offline model) runs on the load core; one consumer, the bare ``openai`` npm client, on the server
core reads the same streams from each. Three servers, in turn, each repeat:

* ``baseline``: the code at ``REV`` (default 9facc93, the commit issue 10 was filed on), over TCP;
* ``now, TCP``: this checkout, its Unix socket off (``RUNWATCH_MODEL_SOCKET=off``);
* ``now, socket``: this checkout over its Unix socket, as the embedded default reads it.

The baseline is checked out with ``git worktree`` into a temporary folder and run from there
(``python -m runwatch.api.cli``, or ``python -m api.cli`` before the code was one package).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import servers
from bench.loadgen import cpu_seconds

BASELINE = "9facc93"
#: (runs, tokens/s, tokens per run): issue 10's workloads; ``--quick`` takes the first, shorter.
WORKLOADS = [(10, 100, 2000), (100, 50, 500), (300, 50, 500)]
QUICK_WORKLOADS = [(10, 100, 500)]
MODES = ["baseline", "now-tcp", "now-socket"]
LABELS = {"baseline": "baseline, TCP", "now-tcp": "now, TCP", "now-socket": "now, Unix socket (embedded default)"}


@contextmanager
def checkout(rev: str) -> Iterator[tuple[list[str], dict[str, str], Path]]:
    """``rev`` in a temporary worktree: the module to run (``-m …``), the environment's additions
    and the folder to run it from."""
    folder = Path(tempfile.mkdtemp(prefix="runwatch-baseline-"))
    tree = folder / "tree"
    try:
        added = subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=servers.ROOT,
                               capture_output=True, text=True)  # fmt: skip
        if added.returncode != 0:
            raise RuntimeError(
                f"cannot check out {rev!r} ({added.stderr.strip()}); pass --baseline a commit of this repository"
            )
        if "runwatch." in (tree / "api" / "cli.py").read_text():
            package = folder / "pkg" / "runwatch"  # the layout pyproject.toml maps to runwatch.*
            package.mkdir(parents=True)
            (package / "__init__.py").write_text("")
            for part in ("agents", "api", "dashboard"):
                (package / part).symlink_to(tree / part)
            yield ["-m", "runwatch.api.cli"], {"PYTHONPATH": str(folder / "pkg")}, servers.ROOT
        else:
            yield ["-m", "api.cli"], {"PYTHONPATH": str(tree)}, tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=servers.ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _model(mode: str, baseline: tuple[list[str], dict[str, str], Path], sock: Path) -> servers.Running:
    port = servers.free_port()
    data = tempfile.mkdtemp(prefix="runwatch-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RUNWATCH_", "PYTHONPATH"))}
    env["RUNWATCH_LOG_LEVEL"] = "warning"
    env["RUNWATCH_OFFLINE_MODEL_OPEN"] = "true"  # the consumer is a third-party client (the baseline's is open)
    module, cwd = ["-m", "runwatch.api.cli"], servers.ROOT
    if mode == "baseline":
        module, extra, cwd = baseline
        env |= extra
    else:
        env["RUNWATCH_MODEL_SOCKET"] = str(sock) if mode == "now-socket" else "off"
    argv = [sys.executable, *module, "serve", "--port", str(port), "--data-dir", data]
    proc = subprocess.Popen(servers.pinned(servers.LOAD_CORE, argv), cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    servers.wait_healthy(port, proc)
    return servers.Running("model", proc, port, "", f"http://127.0.0.1:{port}", data)


def measure(mode: str, baseline: Any, runs: int, rate: float, tokens: int) -> dict[str, Any]:
    sock = Path(tempfile.mkdtemp(prefix="runwatch-sock-")) / "model.sock"
    model = _model(mode, baseline, sock)
    try:
        servers.npm_install()
        argv = ["node", str(servers.PEERS / "stream_consumer.mjs"), "openai", model.http_url + "/v1"]
        argv += [str(runs), str(tokens), str(rate)] + ([str(sock)] if mode == "now-socket" else [])
        before = cpu_seconds(model.pid)
        raw = servers.run_json(f"consumer of {mode}", servers.SERVER_CORE, argv, 600)
        model_s = cpu_seconds(model.pid) - before
    finally:
        model.stop()
        shutil.rmtree(sock.parent, ignore_errors=True)
    return {
        "model_us_per_chunk": round(model_s * 1e6 / (runs * tokens), 2),
        "consumer_us_per_chunk": round(raw["cpu_s"] * 1e6 / max(raw["chunks"], 1), 1),
        "wall_over_nominal_max": round(max(raw["wall_s"]) / (tokens / rate), 3),
        "complete": raw["chunks"] == runs * tokens,
    }


def run_all(workloads: list[tuple[int, int, int]], repeats: int, rev: str, progress: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"baseline": rev}
    with checkout(rev) as baseline:
        for runs, rate, tokens in workloads:
            name = f"{runs} runs x {rate} tok/s x {tokens} tokens"
            rows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
            for i in range(repeats):  # interleaved: the machine's drift falls on all three alike
                for mode in MODES:
                    progress(f"offline model {name}: {LABELS[mode]} ({i + 1}/{repeats})")
                    rows[mode].append(measure(mode, baseline, runs, rate, tokens))
            res[name] = rows
    return res


def report(res: dict[str, Any]) -> str:
    rev = res["baseline"]
    lines = [
        f"### The offline model's CPU per chunk: {rev} beside now (medians; the repeats in brackets)",
        "",
        "| workload | "
        + " | ".join(LABELS[m] for m in MODES)
        + f" | now TCP / {rev} | now socket / {rev} (target ≤ 0.5) |",
        "|---|" + "---:|" * (len(MODES) + 2),
    ]
    for name, rows in res.items():
        if name == "baseline":
            continue
        med = {m: statistics.median(r["model_us_per_chunk"] for r in rows[m]) for m in MODES}
        cells = [
            f"{med[m]:.1f} ({', '.join(str(r['model_us_per_chunk']) for r in rows[m])})"
            + ("" if all(r["complete"] for r in rows[m]) else " INCOMPLETE")
            for m in MODES
        ]
        base = med["baseline"] or float("nan")
        lines.append(
            f"| {name} | {' | '.join(cells)} | {med['now-tcp'] / base:.2f} | **{med['now-socket'] / base:.2f}** |"
        )
    return "\n".join([*lines, ""])
