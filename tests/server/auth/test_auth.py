"""Principals: nothing is readable without one; bad tokens are refused on REST, WebSocket and SSE
alike; each role may do exactly its actions; keys, tickets and fresh tokens behave as documented."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest
import websockets

from tests.conftest import Server
from tests.harness.identity import AUDIENCE, PUBLIC_PEM, bearer, jwt_env, make_key, token
from tests.harness.waiting import eventually
from tests.harness.watcher import Watcher

SHORT_RUN = {"tokens": 3}
LONG_RUN = {"tokens": 100_000, "rate": 50}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory):
    """A server that accepts the test identity provider's JWTs (HS256 and RS256) and its own keys."""
    folder = tmp_path_factory.mktemp("secure")
    srv = Server(folder, jwt_env(folder)).start()
    yield srv
    srv.stop()


async def _ws_close_code(server: Server, headers: dict[str, str], path: str = "/ws") -> int | None:
    """Connect and return the close code the server ends the socket with."""
    async with websockets.connect(server.ws_url.replace("/ws", path), additional_headers=headers) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


async def test_nothing_is_readable_without_a_principal(secure):
    run = await secure.start_run(SHORT_RUN)
    async with httpx.AsyncClient(base_url=secure.url, timeout=10) as anonymous:
        for path in (
            "/api/runs",
            f"/api/runs/{run}",
            f"/api/runs/{run}/events",
            f"/api/runs/{run}/stream",
            "/api/agents",
            "/api/me",
            "/metrics",
        ):
            r = await anonymous.get(path)
            assert r.status_code == 401, path
            assert r.json()["code"] == "unauthenticated"
        health = (await anonymous.get("/api/health")).json()
    assert set(health) <= {"status", "version", "problem"}, health  # minimal: no load figures
    assert await _ws_close_code(secure, {}) == 4401


BAD_TOKENS = {
    "forged": lambda: token(key="another-secret-of-the-same-length-as-ours!!"),
    "expired": lambda: token(ttl=-120),
    "not yet valid": lambda: token(nbf=int(time.time()) + 600),
    "wrong audience": lambda: token(aud="someone-else"),
    "wrong issuer": lambda: token(iss="https://evil.test"),
    "alg none": lambda: jwt.encode(
        {
            "sub": "x",
            "tenant": "acme",
            "roles": ["admin"],
            "iss": "https://idp.runwatch.test",
            "aud": AUDIENCE,
            "exp": int(time.time()) + 300,
        },
        None,
        algorithm="none",
    ),
    # The RSA public key, which anyone may know, used as an HMAC secret: algorithm confusion.
    "algorithm confusion": lambda: _hs256_with(PUBLIC_PEM),
    "no role": lambda: token(roles=None),
    "no tenant": lambda: token(tenant=None),
    "not a token": lambda: "hello",
    # Times are numbers: PyJWT alone would read these strings as numbers.
    "exp as a string": lambda: token(exp="9999999999"),
    "nbf as a string": lambda: token(nbf=str(int(time.time()) - 60)),
    "iat as a string": lambda: token(iat=str(int(time.time()))),
    # Tenants are names a key could have, refused rather than cut short or cleaned up.
    "tenant *": lambda: token(tenant="*"),
    "tenant ../B": lambda: token(tenant="../B"),
    "tenant with a NUL": lambda: token(tenant="B\u0000"),
    "tenant ending in a newline": lambda: token(tenant="B\n"),
    "tenant of 201 characters": lambda: token(tenant="B" * 201),
    "tenant not a string": lambda: token(tenant=["acme"]),
    "admin of tenant *": lambda: token(tenant="*", roles=["admin"]),
    "sub of 256 characters": lambda: token("s" * 256),
}


def _hs256_with(secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "test-key"}).encode())
    body = b64(
        json.dumps(
            {
                "sub": "mallory",
                "tenant": "acme",
                "roles": ["admin"],
                "iss": "https://idp.runwatch.test",
                "aud": AUDIENCE,
                "exp": int(time.time()) + 300,
            }
        ).encode()
    )
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_a_bad_token_is_refused_on_rest_websocket_and_sse(secure, kind):
    bad = BAD_TOKENS[kind]()
    run = await secure.start_run(SHORT_RUN)
    async with secure.client(bad) as c:
        rest = await c.get("/api/runs")
        sse = await c.get(f"/api/runs/{run}/stream")
    assert rest.status_code == sse.status_code == 401, (rest.text, sse.text)
    assert rest.json()["code"] == sse.json()["code"] == "unauthenticated"
    assert rest.headers["www-authenticate"].startswith("Bearer")
    assert await _ws_close_code(secure, bearer(bad)) == 4401


async def test_a_refused_tenant_claim_says_what_a_tenant_name_is(secure):
    async with secure.client(token(tenant="../B")) as c:
        r = await c.get("/api/me")
    assert r.status_code == 401 and "'tenant' claim is not a tenant name" in r.json()["detail"]
    assert "letters, digits" in r.json()["detail"]


async def test_a_refused_time_claim_says_it_must_be_a_number(secure):
    async with secure.client(token(exp="9999999999")) as c:
        r = await c.get("/api/me")
    assert r.status_code == 401 and "'exp' claim must be a number" in r.json()["detail"]


async def test_a_key_tenant_ending_in_a_newline_is_refused(secure):
    async with secure.client() as admin:
        r = await admin.post("/api/keys/", json={"tenant": "acme\n", "role": "viewer"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"


@pytest.mark.parametrize("alg", ["HS256", "RS256"])
async def test_a_good_token_is_a_principal_of_its_tenant_and_role(secure, alg):
    good = token("bob", tenant="acme", roles=["viewer"], alg=alg, name="Bob B.")
    async with secure.client(good) as c:
        me = (await c.get("/api/me")).json()
    assert me == {
        "id": "jwt:bob",
        "name": "Bob B.",
        "tenant": "acme",
        "role": "viewer",
        "source": "jwt",
        "expires_at": me["expires_at"],
        "auth": True,
    }
    w = await secure.watcher(good)
    hello = await w.wait_for(lambda m: m["type"] == "hello")
    assert hello["principal"] == {"id": "jwt:bob", "name": "Bob B.", "tenant": "acme", "role": "viewer"}
    assert hello["expires_at"] == me["expires_at"]
    await w.close()


async def test_each_role_may_do_exactly_its_actions(secure):
    viewer, operator = token("v", roles=["viewer"]), token("o", roles=["operator"])
    async with secure.client(viewer) as c:
        assert (await c.get("/api/runs")).status_code == 200
        refused = await c.post("/api/runs", json={"agent": "demo", "input": "hi"})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert (await c.get("/api/keys/")).status_code == 403
    wv = await secure.watcher(viewer)
    assert (await wv.request({"type": "start", "agent": "demo", "input": "hi"}))["code"] == "forbidden"
    async with secure.client(operator) as c:
        started = await c.post("/api/runs", json={"agent": "demo", "input": '{"tokens": 100000, "rate": 50}'})
        assert started.status_code == 202
        run = started.json()["id"]
        assert (await c.get("/api/keys/")).status_code == 403
    assert (await wv.subscribe(run))["type"] == "ack"  # a viewer watches ...
    assert (await wv.request({"type": "cancel", "run": run}))["code"] == "forbidden"  # ... but cannot cancel
    wo = await secure.watcher(operator)
    assert (await wo.request({"type": "cancel", "run": run}))["status"] == "cancelling"
    async with secure.client() as admin:  # the local admin key
        assert (await admin.get("/api/keys/")).status_code == 200
    await wv.close()
    await wo.close()


async def test_attribution_who_started_and_who_cancelled(secure):
    operator = token("carol", roles=["operator"], name="Carol")
    async with secure.client(operator) as c:
        run = (await c.post("/api/runs", json={"agent": "demo", "input": '{"tokens": 100000, "rate": 50}'})).json()[
            "id"
        ]
    w = await secure.watcher()
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
    async with secure.client(token("dave", roles=["operator"], name="Dave")) as c:
        assert (await c.post(f"/api/runs/{run}/cancel", json={})).status_code == 202
    events = await w.until_finished(run)
    assert events[0]["by"] == {"id": "jwt:carol", "name": "Carol"}
    types = [e["type"] for e in events]
    asked = events[types.index("run.cancel_requested")]
    assert asked["by"] == {"id": "jwt:dave", "name": "Dave"}
    assert types.index("run.cancel_requested") < types.index("run.finished")
    await w.close()


async def test_an_api_key_works_until_revoked_and_its_socket_closes_4401(secure):
    key = await make_key(secure, "acme", "viewer", "ci bot")
    async with secure.client(key) as c:
        me = (await c.get("/api/me")).json()
    assert me["role"] == "viewer" and me["tenant"] == "acme" and me["name"] == "ci bot"
    key_id = me["id"].removeprefix("key:")
    w = await secure.watcher(key)
    await w.wait_for(lambda m: m["type"] == "hello")
    async with secure.client() as admin:
        assert (await admin.delete(f"/api/keys/{key_id}")).status_code == 204
        listed = {k["id"]: k for k in (await admin.get("/api/keys/")).json()}
    assert listed[key_id]["revoked_at"] is not None and "key" not in listed[key_id]
    closed = await w.wait_closed(timeout=15)
    assert closed.code == 4401

    async def refused() -> bool:  # each instance caches a key for at most 5 s
        async with secure.client(key) as c:
            return (await c.get("/api/runs")).status_code == 401

    await eventually(refused, timeout=8, interval=0.5)


async def test_a_ticket_opens_one_socket_once(secure):
    async with secure.client(token("erin", roles=["viewer"])) as c:
        r = await c.post("/api/ws-ticket", json={})
    assert r.status_code == 201 and r.json()["expires_in"] <= 30
    ticket = r.json()["ticket"]
    w = await Watcher.connect(secure.ws_url + f"?ticket={ticket}")
    hello = await w.wait_for(lambda m: m["type"] == "hello")
    assert hello["principal"]["id"] == "jwt:erin"
    await w.close()
    assert await _ws_close_code(secure, {}, f"/ws?ticket={ticket}") == 4401  # used up


async def test_a_token_expiring_on_an_open_socket_closes_it_4401_unless_refreshed(secure):
    short = token("frank", roles=["viewer"], ttl=3)
    closing, staying = await secure.watcher(short), await secure.watcher(short)
    await staying.wait_for(lambda m: m["type"] == "hello")
    fresh = token("frank", roles=["viewer"], ttl=300)
    assert (await staying.request({"type": "auth", "token": fresh}))["type"] == "ack"
    other = token("grace", roles=["viewer"])
    assert (await staying.request({"type": "auth", "token": other}))["code"] == "forbidden"
    promoted = token("frank", roles=["admin"])  # the same subject with another role: a new socket
    assert (await staying.request({"type": "auth", "token": promoted}))["code"] == "forbidden"
    started = time.monotonic()
    closed = await closing.wait_closed(timeout=10)
    assert closed.code == 4401 and time.monotonic() - started < 6
    await staying.send({"type": "ping", "id": "p"})
    assert (await staying.wait_for(lambda m: m.get("type") == "pong" and m.get("id") == "p"))["type"] == "pong"
    assert staying.closed is None
    await staying.close()


async def test_metrics_need_the_scrape_token(make_server):
    srv = make_server({"RUNWATCH_METRICS_TOKEN": "scrape-me-please-0123456789"})
    async with httpx.AsyncClient(base_url=srv.url) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers=bearer("wrong"))).status_code == 401
        ok = await c.get("/metrics", headers=bearer("scrape-me-please-0123456789"))
    assert ok.status_code == 200 and "runwatch_auth_failures_total" in ok.text
    assert 'runwatch_auth_failures_total{reason="missing"}' in ok.text
    async with srv.client() as admin:  # an admin may look too
        assert (await admin.get("/metrics")).status_code == 200


async def test_auth_off_says_so_loudly_and_needs_nothing(make_server):
    srv = make_server({"RUNWATCH_AUTH": "off"})
    assert srv.token is None
    async with httpx.AsyncClient(base_url=srv.url) as c:
        assert (await c.get("/api/runs")).status_code == 200
    assert any(line.get("event") == "auth.off" and line.get("level") == "warning" for line in srv.log_lines())


async def test_no_key_token_cookie_or_ticket_appears_in_any_log_line_event_or_metric(secure):
    key = await make_key(secure, "acme", "operator", "leak check")
    jwt_token = token("heidi", roles=["operator"])
    secrets_used = [secure.token, key, jwt_token]
    async with httpx.AsyncClient(base_url=secure.url) as c:
        login = await c.post("/api/login", json={"key": key})
        secrets_used.append(c.cookies["runwatch_session"])
        ticket = (await c.post("/api/ws-ticket", json={})).json()["ticket"]
        secrets_used.append(ticket)
        await c.post("/api/login", json={"token": jwt_token + "x"})  # a refused one is not logged either
    assert login.status_code == 200
    runs = []
    for who in (key, jwt_token):
        async with secure.client(who) as c:
            runs.append((await c.post("/api/runs", json={"agent": "demo", "input": "hello"})).json()["id"])
    w = await Watcher.connect(secure.ws_url + f"?ticket={ticket}")
    for run in runs:
        await w.subscribe(run)
        await w.until_finished(run)
    await w.close()
    async with secure.client() as admin:
        events = [(await admin.get(f"/api/runs/{run}/events")).text for run in runs]
        metrics = (await admin.get("/metrics")).text
    async with secure.client(key) as c:
        key_principal = (await c.get("/api/me")).json()["id"]
    started_by = {line.get("principal") for line in secure.log_lines() if line.get("run_id") == runs[0]}
    assert key_principal in started_by  # log lines carry who: the principal's id, never its key
    logs = secure.logs()
    banner = logs.count("?code=")  # the one-time login URL is printed once at start (not a log line)
    assert banner == 1
    for secret in secrets_used:
        for where, text in (("log", logs), ("events", "".join(events)), ("metrics", metrics)):
            assert secret not in text and secret[:24] not in text, f"a credential leaked into the {where}"
