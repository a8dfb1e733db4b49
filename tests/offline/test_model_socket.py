"""The embedded default: runs read the built-in offline model over a Unix socket of the process's own
(``RUNWATCH_MODEL_SOCKET``), made private, refused when another process holds it, removed at exit."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runwatch.api.model_client import ModelSocket, sweep_stale
from runwatch.api.settings.config import ConfigError, load_settings
from tests.conftest import free_port
from tests.harness.waiting import eventually


def test_model_socket_must_be_auto_off_or_an_absolute_path():
    assert load_settings(environ={}).offline_model.socket == "auto"
    for bad in ("relative/model.sock", "/" + "x" * 120, "on"):
        with pytest.raises(ConfigError, match="model_socket must be auto, off or an absolute path"):
            load_settings(environ={"RUNWATCH_MODEL_SOCKET": bad})


async def _socket_path(srv) -> str:
    await eventually(lambda: any(e.get("event") == "server.model_socket" for e in srv.log_lines()), what="socket")
    return next(e["path"] for e in srv.log_lines() if e.get("event") == "server.model_socket")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_runs_read_the_offline_model_through_its_socket(make_server, tmp_path, transport):
    path = tmp_path / "model.sock"
    srv = make_server(env={"RUNWATCH_MODEL_SOCKET": str(path), "RUNWATCH_MODEL_TRANSPORT": transport})
    assert await _socket_path(srv) == str(path)
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600

    path.unlink()  # the TCP port still serves /v1: a run that read the model that way would succeed
    final = (await srv.run_to_end({"tokens": 20}))[-1]
    assert final["type"] == "run.finished" and final["status"] == "failed", final


async def test_the_default_socket_is_private_and_removed_at_shutdown(make_server):
    srv = make_server()
    folder = os.path.dirname(await _socket_path(srv))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert (await srv.run_to_end({"tokens": 5}))[-1]["status"] == "succeeded"
    srv.stop()
    assert not Path(folder).exists()  # noqa: ASYNC240


async def test_with_the_socket_off_runs_read_the_model_over_tcp(make_server):
    srv = make_server(env={"RUNWATCH_MODEL_SOCKET": "off"})
    assert (await srv.run_to_end({"tokens": 5}))[-1]["status"] == "succeeded"
    assert not any(e.get("event") == "server.model_socket" for e in srv.log_lines())


def test_a_socket_another_process_listens_on_is_not_taken(make_server, tmp_path):
    path = tmp_path / "taken.sock"
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(path))
        holder.listen()
        inode = path.stat().st_ino
        with pytest.raises(RuntimeError, match="runwatch exited with 3") as failed:
            make_server(env={"RUNWATCH_MODEL_SOCKET": str(path)})
        assert f"another process listens on {path}" in str(failed.value)
        assert path.stat().st_ino == inode  # still the holder's
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            holder.accept()[0].close()


async def test_a_socket_left_by_a_process_that_is_gone_is_replaced(make_server, tmp_path):
    path = tmp_path / "model.sock"
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(path))  # closed without anyone listening: connecting is refused
    srv = make_server(env={"RUNWATCH_MODEL_SOCKET": str(path)})
    assert await _socket_path(srv) == str(path)
    assert (await srv.run_to_end({"tokens": 5}))[-1]["status"] == "succeeded"


async def test_a_given_socket_is_removed_at_shutdown_unless_another_process_bound_it_since(make_server, tmp_path):
    path = tmp_path / "model.sock"
    srv = make_server(env={"RUNWATCH_MODEL_SOCKET": str(path)})
    await _socket_path(srv)
    srv.stop()
    assert not path.exists()

    again = make_server(env={"RUNWATCH_MODEL_SOCKET": str(path)})
    await _socket_path(again)
    path.unlink()
    with socket.socket(socket.AF_UNIX) as successor:  # a new instance bound the path meanwhile
        successor.bind(str(path))
        again.stop()
        assert stat.S_ISSOCK(path.stat().st_mode)  # the successor's, left alone


def _left_behind(folder, *, minutes_ago: float, listening: bool = False) -> socket.socket | None:
    """A private socket folder as a process killed before its shutdown leaves it (or, listening,
    as a live process has it)."""
    folder.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "model.sock"))
    then = time.time() - 60 * minutes_ago
    os.utime(folder / "model.sock", (then, then), follow_symlinks=False)
    if listening:
        sock.listen()
        return sock
    sock.close()
    return None


def test_folders_left_by_killed_processes_are_swept_and_no_others(tmp_path):
    dead = tmp_path / "runwatch-dead"
    _left_behind(dead, minutes_ago=5)
    new = tmp_path / "runwatch-new"
    _left_behind(new, minutes_ago=0)  # perhaps bound a moment ago, not listening yet
    live = tmp_path / "runwatch-live"
    holder = _left_behind(live, minutes_ago=5, listening=True)
    data = tmp_path / "runwatch-bench-data"  # a folder of another kind under the same prefix
    data.mkdir()
    (data / "runwatch.sqlite3").write_text("")
    try:
        assert sweep_stale(tmp_path) == 1
    finally:
        assert holder is not None
        holder.close()
    assert not dead.exists() and new.exists() and live.exists() and data.exists()


def test_a_socket_in_a_folder_that_does_not_exist_is_refused_with_what_to_do():
    with pytest.raises(ConfigError, match="model_socket's folder /nonexistent/dir does not exist; create it"):
        ModelSocket.for_settings(load_settings(environ={"RUNWATCH_MODEL_SOCKET": "/nonexistent/dir/m.sock"}))


def test_a_path_that_is_not_a_socket_is_refused_at_start(tmp_path):
    path = tmp_path / "model.sock"
    path.write_text("not a socket")
    port = str(free_port())
    out = subprocess.run(
        [sys.executable, "-m", "runwatch.api.cli", "serve", "--port", port, "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "RUNWATCH_MODEL_SOCKET": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"model_socket {path} exists and is not a socket; check RUNWATCH_MODEL_SOCKET" in out.stderr
