"""The local admin key goes only to the server that proves it holds it: not to whatever listens on a
killed server's port, nor to any port ``--url`` names, nor through a relay to the real server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Server, free_port


def runwatch(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A client command in ``cwd`` (a folder with no ``runwatch-data`` of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "runwatch.api.cli", *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def same_user(server: Server) -> dict[str, str]:
    """Another terminal of the user who started ``server``: it finds the key file ``serve`` left."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    return env | {"XDG_DATA_HOME": server.env["XDG_DATA_HOME"]}


def port_file(server: Server) -> Path:
    return Path(server.env["XDG_DATA_HOME"]) / "runwatch" / "servers" / f"{server.port}.key"


class _Recorder(BaseHTTPRequestHandler):
    """Not runwatch: answers every request 401 and records the ``Authorization`` header it got. With
    ``relay_to``, it passes the local-key proof's request on to that server (a relaying impostor)."""

    seen: list[tuple[str, str | None]]
    relay_to: str | None = None

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append((self.path, self.headers.get("authorization")))
        status, body = 401, b'{"detail": "who are you?"}'
        if self.relay_to and self.path.startswith("/api/local-proof"):
            with urllib.request.urlopen(self.relay_to + self.path, timeout=5) as r:
                status, body = r.status, r.read()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextlib.contextmanager
def recorder(address: tuple[str, int], relay_to: str | None = None) -> Iterator[list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "relay_to": relay_to})
    httpd = (_V6Server if ":" in address[0] else ThreadingHTTPServer)(address, handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_killed_servers_key_goes_not_to_the_next_program_on_its_port(make_server, tmp_path):
    srv = make_server()
    srv.stop(signal.SIGKILL)
    assert port_file(srv).exists()  # left behind: nothing ran at shutdown
    with recorder(("127.0.0.1", srv.port)) as seen:
        result = runwatch("agents", "--url", srv.url, env=same_user(srv), cwd=tmp_path)
    assert seen, "the command did not reach the program on the port"
    assert [auth for _, auth in seen if auth] == []
    assert result.returncode == 2
    assert "did not prove it holds the local admin key" in result.stderr and "was not sent" in result.stderr
    assert not port_file(srv).exists()


def test_a_data_folder_key_goes_not_to_another_program_on_another_port(make_server, tmp_path):
    srv = make_server()
    other = free_port()
    elsewhere = same_user(srv) | {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    with recorder(("127.0.0.1", other)) as seen:
        result = runwatch(
            "agents", "--url", f"http://127.0.0.1:{other}", "--data-dir", str(srv.data_dir), env=elsewhere, cwd=tmp_path
        )
    assert seen and [auth for _, auth in seen if auth] == []
    assert result.returncode == 2 and str(srv.data_dir / "admin.key") in result.stderr


@pytest.mark.skipif(not socket.has_ipv6, reason="needs IPv6 loopback")
def test_a_proof_relayed_from_the_real_server_on_another_address_is_not_accepted(make_server, tmp_path):
    srv = make_server()  # listens on 127.0.0.1; the impostor takes the same port on [::1] and relays
    with recorder(("::1", srv.port), relay_to=srv.url) as seen:
        result = runwatch("agents", "--url", f"http://[::1]:{srv.port}", env=same_user(srv), cwd=tmp_path)
    assert any(path.startswith("/api/local-proof") for path, _ in seen), seen
    assert [auth for _, auth in seen if auth] == []
    assert result.returncode == 2 and "did not prove" in result.stderr
    assert port_file(srv).exists()  # its server is alive: the file stays


def test_the_data_folder_key_reaches_the_server_that_holds_it_by_name_too(make_server, tmp_path):
    srv = make_server()
    elsewhere = same_user(srv) | {"XDG_DATA_HOME": str(tmp_path / "xdg")}  # no port file: the data folder's key
    url = f"http://localhost:{srv.port}"
    result = runwatch("agents", "--url", url, "--data-dir", str(srv.data_dir), env=elsewhere, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("demo"), result.stderr
    assert result.stderr == ""


def test_a_stale_key_file_is_removed_when_nothing_listens_on_its_port(make_server, tmp_path):
    srv = make_server()
    srv.stop(signal.SIGKILL)
    result = runwatch("agents", "--url", srv.url, env=same_user(srv), cwd=tmp_path)
    assert result.returncode == 2 and "is `runwatch serve` running?" in result.stderr
    assert not port_file(srv).exists()


def test_the_key_file_of_a_server_still_starting_is_kept(make_server, tmp_path):
    srv = make_server()
    srv.stop(signal.SIGKILL)
    # As ``serve`` leaves it before its port opens: written by a process that is alive.
    text = json.loads(port_file(srv).read_text())
    port_file(srv).write_text(json.dumps(text | {"pid": os.getpid()}))
    runwatch("agents", "--url", srv.url, env=same_user(srv), cwd=tmp_path)
    assert port_file(srv).exists()


def test_a_server_stopped_with_sigterm_takes_its_key_file_back(make_server):
    srv = make_server()
    assert port_file(srv).exists()
    srv.stop()
    assert not port_file(srv).exists()


def test_the_key_file_is_private_to_its_user(make_server):
    srv = make_server()
    assert port_file(srv).stat().st_mode & 0o777 == 0o600
