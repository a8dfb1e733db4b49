"""Start and stop the servers under test, each pinned to one core with taskset."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
SERVER_CORE, LOAD_CORE = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if os.cpu_count() and os.cpu_count() > 1 else argv


def run_json(name: str, core: str, argv: list[str], timeout: float) -> Any:
    """Run a measuring process pinned to ``core`` (from the repository root) and decode the JSON
    of its last output line; its stderr's tail in the error if it fails."""
    out = subprocess.run(pinned(core, argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass
class Running:
    name: str
    proc: subprocess.Popen
    port: int
    ws_url: str
    http_url: str | None = None
    #: The server's data folder, removed when it stops (a soak writes gigabytes to it).
    data_dir: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def token(self) -> str | None:
        """The local admin key the server made (None with authentication off, or not runwatch)."""
        if self.data_dir is None:
            return None
        key = Path(self.data_dir) / "admin.key"
        return key.read_text().strip() if key.exists() else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def wait_healthy(port: int, proc: subprocess.Popen) -> None:
    """Until the runwatch ``proc`` listens on ``port`` and says it is healthy."""
    _wait_port(port, proc)
    deadline = time.monotonic() + 30
    while httpx.get(f"http://127.0.0.1:{port}/api/health").status_code != 200:  # open to anyone
        if time.monotonic() > deadline:
            raise RuntimeError("runwatch not healthy")


def _runwatch(env: dict[str, str], core: str, port: int | None = None, data: str | None = None) -> Running:
    port = port or free_port()
    data = data or tempfile.mkdtemp(prefix="runwatch-bench-")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RUNWATCH_"))}
    # The slow-consumer runs stream 4.5 MB in one step, over the 4 MiB default of max_output_bytes.
    full_env |= {
        "RUNWATCH_LOG_LEVEL": "warning",
        "RUNWATCH_MAX_RUNNING": "64",
        "RUNWATCH_MAX_OUTPUT_BYTES": str(64 * 2**20),
        # A load generator is one principal starting hundreds of runs: no quota in its way.
        "RUNWATCH_RUNS_PER_MINUTE": "1000000",
        "RUNWATCH_TENANT_MAX_ACTIVE": "1000000",
        # ... and every watcher connects as that principal too.
        "RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL": "1000000",
        **env,
    }
    proc = subprocess.Popen(
        pinned(core, [sys.executable, "-m", "runwatch.api.cli", "serve", "--port", str(port), "--data-dir", data]),
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_healthy(port, proc)
    return Running("runwatch", proc, port, f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}", data)


def model_server() -> Running:
    """The offline model in a process of its own, on the load core, so the server under test only
    does what it would do with a real model: parse the stream, publish, fan out. Its ``/v1`` is
    open: the peers and the runwatch under test call it as third-party clients, with no key of it."""
    return _runwatch({"RUNWATCH_OFFLINE_MODEL_OPEN": "true"}, LOAD_CORE)


def runwatch_alone(core: str = SERVER_CORE, *, port: int | None = None, data_dir: str | None = None) -> Running:
    """A runwatch that only takes what agents elsewhere report (the ingest API): no model in front
    of it. ``port`` and ``data_dir`` start it again where a killed one was."""
    return _runwatch({}, core, port, data_dir)


def agent_key(server: Running, tenant: str = "bench") -> str:
    """A new key of the role ``agent`` on ``server`` (runwatch), made by its admin."""
    r = httpx.post(
        f"{server.http_url}/api/keys/",
        json={"tenant": tenant, "role": "agent", "name": "bench-agent"},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    r.raise_for_status()
    return r.json()["key"]


def runwatch(model: Running, *, coalesce_ms: float, env: dict[str, str] | None = None) -> Running:
    return _runwatch(
        {
            "OPENAI_BASE_URL": model.http_url + "/v1",
            "OPENAI_API_KEY": "bench",
            "RUNWATCH_MODEL": "runwatch-offline",
            "RUNWATCH_COALESCE_MS": str(coalesce_ms),
            **(env or {}),
        },
        SERVER_CORE,
    )


def npm_install() -> None:
    """The Node peers' packages (bench/peers/package.json), installed on first use."""
    if not all((PEERS / "node_modules" / name).exists() for name in ("ws", "ai", "@ai-sdk/openai", "openai", "undici")):
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=PEERS, check=True)


def node_rooms() -> Running:
    npm_install()
    port = free_port()
    proc = subprocess.Popen(
        pinned(SERVER_CORE, ["node", str(PEERS / "node_rooms.js"), str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc)
    return Running("node ws rooms", proc, port, f"ws://127.0.0.1:{port}/")


def py_rooms() -> Running:
    port = free_port()
    proc = subprocess.Popen(
        pinned(SERVER_CORE, [sys.executable, str(PEERS / "py_rooms.py"), str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc)
    return Running("python websockets broadcast", proc, port, f"ws://127.0.0.1:{port}/")
