"""The ``Host`` names a server answers: with authentication off only loopback ones (a DNS-rebound
page is refused on HTTP and WebSocket alike), plus those ``RUNWATCH_ALLOWED_HOSTS`` names."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.conftest import Server, free_port

AUTH_OFF = {"RUNWATCH_AUTH": "off"}


async def _get(srv, host: str, path: str = "/api/runs") -> httpx.Response:
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
        return await c.get(path, headers={"Host": host})


async def _handshake(srv, host: str) -> websockets.ClientConnection:
    """Open ``/ws`` on ``srv`` with ``Host: host`` (the connection itself goes to 127.0.0.1)."""
    return await websockets.connect(f"ws://{host}/ws", host="127.0.0.1", port=srv.port, proxy=None, open_timeout=10)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with authentication off and no RUNWATCH_ALLOWED_HOSTS."""
    srv = Server(tmp_path_factory.mktemp("open"), AUTH_OFF).start()
    yield srv
    srv.stop()


async def test_auth_off_refuses_a_foreign_host_on_http_and_says_which_setting_lets_it_in(open_server):
    r = await _get(open_server, f"evil.example:{open_server.port}")
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "host_not_allowed" and "RUNWATCH_ALLOWED_HOSTS" in body["detail"]
    assert "evil.example" in body["detail"] and "RUNWATCH_AUTH=off" in body["detail"]


async def test_auth_off_refuses_a_foreign_host_at_the_websocket_handshake(open_server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await _handshake(open_server, f"evil.example:{open_server.port}")
    response = refused.value.response
    assert response.status_code == 400 and b"host_not_allowed" in response.body
    assert b"RUNWATCH_ALLOWED_HOSTS" in response.body


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "LocalHost."])
async def test_auth_off_answers_loopback_names_on_any_port(open_server, name):
    assert (await _get(open_server, f"{name}:{open_server.port}")).status_code == 200
    assert (await _get(open_server, f"{name}:1234")).status_code == 200


async def test_auth_off_opens_the_websocket_to_a_loopback_name(open_server):
    ws = await _handshake(open_server, f"localhost:{open_server.port}")
    try:
        assert '"hello"' in await ws.recv(decode=True)
    finally:
        await ws.close()


@pytest.mark.parametrize("host", ["", "0.0.0.0", "evil.example:x", "::1"])
async def test_auth_off_refuses_a_missing_wildcard_or_malformed_host(open_server, host):
    assert (await _get(open_server, host)).status_code == 400


async def test_allowed_hosts_lets_a_named_host_in_with_auth_off(make_server):
    srv = make_server(AUTH_OFF | {"RUNWATCH_ALLOWED_HOSTS": "example.com,*.runwatch.test"})
    assert (await _get(srv, "example.com")).status_code == 200
    assert (await _get(srv, f"example.com:{srv.port}")).status_code == 200
    assert (await _get(srv, "dash.runwatch.test")).status_code == 200
    assert (await _get(srv, "evil.example")).status_code == 400
    ws = await _handshake(srv, "example.com")
    await ws.close()


async def test_allowed_hosts_applies_with_authentication_on_too(make_server):
    srv = make_server({"RUNWATCH_ALLOWED_HOSTS": "example.com"})
    refused = await _get(srv, "evil.example", "/api/health")
    assert refused.status_code == 400 and "RUNWATCH_AUTH=off" not in refused.json()["detail"]
    assert (await _get(srv, "example.com", "/api/health")).status_code == 200
    assert (await _get(srv, "localhost", "/api/health")).status_code == 200  # the machine's own clients


async def test_auth_on_answers_any_host_unless_told_otherwise(server):
    assert (await _get(server, "anything.example", "/api/health")).status_code == 200


@pytest.mark.parametrize("entry", ["https://example.com", "example.com:8000", "exa mple.com"])
def test_an_allowed_host_with_a_scheme_or_port_is_refused_at_start(tmp_path, entry):
    env = {"RUNWATCH_ALLOWED_HOSTS": entry, "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "runwatch.api.cli", "serve", "--data-dir", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2 and "RUNWATCH_ALLOWED_HOSTS" in result.stderr and "Traceback" not in result.stderr
