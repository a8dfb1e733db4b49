"""Dashboard sessions and the browser's threats: the login cookie, the one-time code, log out, CSRF,
and WebSocket handshakes from other origins."""

from __future__ import annotations

import re

import httpx
import pytest
import websockets

from tests.conftest import Server


def _login_code(server: Server) -> str:
    """The one-time code of the login URL ``serve`` printed at start."""
    found = re.findall(r"\?code=(rwc_[\w-]+)", server.logs())
    assert found, server.logs()[-2000:]
    return found[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("site"), {"RUNWATCH_ALLOWED_ORIGINS": "https://partner.example"}).start()
    yield srv
    srv.stop()


async def _logged_in(server: Server) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=server.url, timeout=10)
    r = await client.post("/api/login", json={"key": server.token})
    assert r.status_code == 200, r.text
    return client


async def test_login_sets_a_strict_http_only_cookie_and_logout_clears_it(site):
    async with httpx.AsyncClient(base_url=site.url) as c:
        r = await c.post("/api/login", json={"key": site.token})
        assert r.status_code == 200 and r.json()["source"] == "session" and r.json()["role"] == "admin"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
        assert (await c.get("/api/runs")).status_code == 200
        out = await c.post("/api/logout", json={})
        assert out.status_code == 204
        assert (await c.get("/api/runs")).status_code == 401


async def test_a_wrong_key_does_not_log_in(site):
    async with httpx.AsyncClient(base_url=site.url) as c:
        r = await c.post("/api/login", json={"key": "rw_not-a-key-of-this-server"})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated" and "set-cookie" not in r.headers


async def test_the_one_time_code_works_once(make_server):
    srv = make_server()
    code = _login_code(srv)
    async with httpx.AsyncClient(base_url=srv.url) as first, httpx.AsyncClient(base_url=srv.url) as second:
        assert (await first.post("/api/login", json={"code": code})).status_code == 200
        assert (await first.get("/api/me")).json()["role"] == "admin"
        again = await second.post("/api/login", json={"code": code})
    assert again.status_code == 401 and "used" in again.json()["detail"]


async def test_a_cross_site_text_plain_post_starts_nothing(site):
    client = await _logged_in(site)
    before = len((await client.get("/api/runs", params={"limit": 500})).json()["runs"])
    body = '{"agent": "demo", "input": "pwned"}'
    forged = [
        {"content-type": "text/plain", "origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        {"content-type": "text/plain"},  # even without Origin: a form can send text/plain
        {"content-type": "application/json", "origin": "https://evil.example"},  # (would need CORS anyway)
    ]
    for headers in forged:
        r = await client.post("/api/runs", content=body, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (headers, r.text)
    after = len((await client.get("/api/runs", params={"limit": 500})).json()["runs"])
    assert after == before
    same_site = await client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert same_site.status_code == 202
    await client.aclose()


async def test_cors_is_off_unless_configured(site):
    async with httpx.AsyncClient(base_url=site.url) as c:
        r = await c.options(
            "/api/runs", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("https://evil.example", False), ("null", False), ("https://partner.example", True), (None, True)],
)
async def test_a_websocket_handshake_from_another_origin_is_refused(site, origin, allowed):
    headers = {"Authorization": f"Bearer {site.token}"}
    if allowed:
        async with websockets.connect(site.ws_url, additional_headers=headers, origin=origin) as ws:
            assert '"hello"' in await ws.recv()
        return
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(site.ws_url, additional_headers=headers, origin=origin)
    assert refused.value.response.status_code == 403


async def test_the_own_origin_may_connect_with_the_session_cookie(site):
    client = await _logged_in(site)
    cookie = f"runwatch_session={client.cookies['runwatch_session']}"
    host = site.url.removeprefix("http://")
    async with websockets.connect(site.ws_url, additional_headers={"Cookie": cookie}, origin=f"http://{host}") as ws:
        hello = await ws.recv()
    assert '"role":"admin"' in hello
    await client.aclose()


async def test_log_out_ends_the_session_everywhere_not_just_in_this_browser(site):
    client = await _logged_in(site)
    stolen = client.cookies["runwatch_session"]
    assert (await client.post("/api/logout", json={})).status_code == 204
    async with httpx.AsyncClient(base_url=site.url, cookies={"runwatch_session": stolen}) as thief:
        r = await thief.get("/api/runs")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    await client.aclose()


@pytest.mark.parametrize(
    "cookie",
    ["rws_made-up-by-someone-who-has-no-session-000000", "a.\u00e9", "x" * 5000, "rws_\u2603"],
    ids=["forged", "non-ascii", "huge", "snowman"],
)
async def test_a_bad_session_cookie_is_refused_cleanly(site, cookie):
    raw = f"runwatch_session={cookie}".encode()
    async with httpx.AsyncClient(base_url=site.url) as c:
        r = await c.get("/api/runs", headers={"cookie": raw})
        health = await c.get("/api/health", headers={"cookie": raw})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    assert health.status_code == 200


async def test_a_ticket_is_not_used_up_by_a_handshake_from_a_refused_origin(site):
    async with site.client() as c:
        ticket = (await c.post("/api/ws-ticket", json={})).json()["ticket"]
    url = f"{site.ws_url}?ticket={ticket}"
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(url, origin="https://evil.example")
    async with websockets.connect(url) as ws:  # the rightful holder still can
        assert '"hello"' in await ws.recv()
