"""The dashboard's login, logout and expired session in real Chromium, and what a page on another
origin can do to runwatch from a logged-in browser: nothing."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import free_port

pytestmark = pytest.mark.timeout(90)


def _code(server) -> str:
    return re.findall(r"\?code=(rwc_[\w-]+)", server.logs())[-1]


def test_without_a_session_the_login_page_shows_and_a_key_logs_in_and_out(server, open_page):
    page = open_page(server.url + "/", as_admin=False)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#view")).to_be_hidden()
    page.fill("#login-secret", "rw_wrong")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("unknown")
    page.fill("#login-secret", server.token)
    page.click("#login-submit")
    expect(page.locator("#whoami")).to_contain_text("local admin")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    page.reload()
    expect(page.locator("#login")).to_be_visible()  # the cookie is gone, not just the view


def test_the_login_link_works_once(make_server, open_page):
    srv = make_server()
    url = f"{srv.url}/?code={_code(srv)}"
    first = open_page(url, as_admin=False)
    expect(first.locator("#whoami")).to_contain_text("admin")
    assert "code=" not in first.url
    second = open_page(url, as_admin=False)
    expect(second.locator("#login")).to_be_visible()
    expect(second.locator("#login-error")).to_contain_text("used")


def test_an_expired_session_shows_the_login_page_instead_of_reconnecting(make_server, open_page):
    srv = make_server({"RUNWATCH_SESSION_HOURS": "0.0015", "RUNWATCH_LOG_LEVEL": "debug"})  # 5.4 s; connects logged
    page = open_page(srv.url + "/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(page.locator("#login")).to_be_visible(timeout=15_000)  # the socket closed 4401 at expiry
    assert "Authorization" not in srv.logs()
    closes = [line for line in srv.log_lines() if line.get("event") == "ws.disconnected"]
    assert closes and closes[-1]["code"] == 4401
    page.wait_for_timeout(2_000)  # (no reconnect loop: still one connection logged)
    assert len([line for line in srv.log_lines() if line.get("event") == "ws.connected"]) == 1


@pytest.fixture
def evil_site() -> Iterator[str]:
    """A page on another origin (another port of the same host: the same *site*, so the browser
    even sends runwatch's SameSite=Strict cookie along — only the Origin check stands)."""
    port = free_port()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>evil</title><p>hello"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/"
    httpd.shutdown()


def test_a_page_on_another_origin_cannot_open_the_socket_or_start_a_run(server, open_page, evil_site):
    page = open_page(evil_site, login=server.url)  # the browser holds a live runwatch session
    ws = server.ws_url
    outcome = page.evaluate(
        """(url) => new Promise((done) => {
            const ws = new WebSocket(url);
            let opened = false;
            ws.onopen = () => { opened = true; };
            ws.onclose = (e) => done({opened, code: e.code});
        })""",
        ws,
    )
    assert outcome == {"opened": False, "code": 1006}  # refused at the handshake (HTTP 403)
    before = httpx.get(server.url + "/api/runs?limit=500", headers=server.auth).json()["runs"]
    page.evaluate(
        """(url) => fetch(url, {method: "POST", mode: "no-cors", credentials: "include",
                               headers: {"content-type": "text/plain"},
                               body: JSON.stringify({agent: "demo", input: "pwned"})}).catch(() => null)""",
        server.url + "/api/runs",
    )
    after = httpx.get(server.url + "/api/runs?limit=500", headers=server.auth).json()["runs"]
    assert [r for r in after if r["input"] == "pwned"] == []
    assert len(after) == len(before)


def test_single_sign_on_logs_in_through_the_identity_provider(make_server, open_page, idp):
    srv = make_server(
        {"RUNWATCH_OIDC_ISSUER": idp, "RUNWATCH_OIDC_CLIENT_ID": "runwatch", "RUNWATCH_OIDC_CLIENT_SECRET": "s"}
    )
    page = open_page(srv.url + "/", as_admin=False)
    page.click("#login-oidc")
    page.fill("input[name=sub]", "olivia")  # the provider's own page
    page.click("button[type=submit]:has-text('Authorize')")
    expect(page.locator("#whoami")).to_contain_text("Olivia O.", timeout=10_000)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)


def test_a_refused_single_sign_on_returns_to_the_login_page_saying_why(make_server, open_page, idp):
    srv = make_server(
        {"RUNWATCH_OIDC_ISSUER": idp, "RUNWATCH_OIDC_CLIENT_ID": "runwatch", "RUNWATCH_OIDC_CLIENT_SECRET": "s"}
    )
    page = open_page(srv.url + "/", as_admin=False)
    page.click("#login-oidc")
    page.fill("input[name=sub]", "nadia")  # known to the provider, but with no role here
    page.click("button[type=submit]:has-text('Authorize')")
    expect(page.locator("#login")).to_be_visible(timeout=10_000)
    expect(page.locator("#login-error")).to_contain_text("role")
    assert "login_error" not in page.url
