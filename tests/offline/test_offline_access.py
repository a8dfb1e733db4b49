"""Who may call the offline model's ``/v1``: a principal of any role, this server's own runs (with a
key only they hold, over the Unix socket or TCP), or anyone once ``RUNWATCH_OFFLINE_MODEL_OPEN``
says so at start; and only in JSON, so a page on another site cannot make a browser call it."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.harness.identity import make_key

PATH = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": json.dumps({"tokens": 3})}]}
#: What a page on another site can make a browser send without a CORS preflight.
CROSS_SITE = {"content-type": "text/plain", "origin": "https://evil.example", "sec-fetch-site": "cross-site"}


async def test_the_offline_model_asks_a_caller_with_no_credential_to_sign_in(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as anonymous:
        r = await anonymous.post(PATH, json=BODY)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthenticated" and "Authorization: Bearer" in r.json()["detail"]


async def test_a_cross_site_text_plain_post_to_the_offline_model_is_refused(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as anonymous:
        r = await anonymous.post(PATH, content=json.dumps(BODY), headers=CROSS_SITE)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "Content-Type: application/json" in r.json()["detail"]


async def test_a_text_plain_post_is_refused_even_with_a_credential(server):
    async with server.client() as c:
        r = await c.post(PATH, content=json.dumps(BODY), headers={"content-type": "text/plain"})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"


async def test_a_viewer_may_call_the_offline_model(server):
    viewer = await make_key(server, "acme", "viewer")
    async with server.client(viewer) as c:
        r = await c.post(PATH, json=BODY)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "the agent streams "


async def test_a_made_up_runner_key_is_refused(server):
    async with server.client("rwm_" + "x" * 43) as c:
        r = await c.post(PATH, json=BODY)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("model_socket", ["auto", "off"])
async def test_runs_reach_the_offline_model_with_a_key_that_is_never_logged(make_server, model_socket):
    srv = make_server({"RUNWATCH_MODEL_SOCKET": model_socket, "RUNWATCH_LOG_LEVEL": "debug"})
    events = await srv.run_to_end({"tokens": 5})
    assert events[-1]["status"] == "succeeded", events[-1]
    assert "rwm_" not in srv.logs() and "rwm_" not in json.dumps(events)


async def test_an_open_offline_model_answers_anyone_and_says_so_at_start(make_server):
    srv = make_server({"RUNWATCH_OFFLINE_MODEL_OPEN": "true"})
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as anonymous:
        r = await anonymous.post(PATH, json=BODY)
        assert r.status_code == 200, r.text
        refused = await anonymous.post(PATH, content=json.dumps(BODY), headers=CROSS_SITE)
        assert refused.status_code == 403, refused.text
        assert (await anonymous.get("/api/runs")).status_code == 401  # only /v1 is open
    warning = next(e for e in srv.log_lines() if e.get("event") == "offline_model.open")
    assert warning["level"] == "warning" and "without a credential" in warning["message"]
