"""Pointed at an OpenAI-compatible endpoint, runwatch uses it — and never logs or publishes the key."""

from __future__ import annotations

from tests.harness.watcher import text_of

SECRET = "sk-test-7f3a9c-never-log-me"


async def test_a_configured_endpoint_is_used_and_the_key_stays_secret(make_server):
    model_server = make_server({"RUNWATCH_OFFLINE_MODEL_OPEN": "true"})  # a third party's model endpoint
    srv = make_server(
        {
            "OPENAI_BASE_URL": model_server.url + "/v1",
            "OPENAI_API_KEY": SECRET,
            "RUNWATCH_MODEL": "runwatch-offline",
            "RUNWATCH_LOG_LEVEL": "debug",
        }
    )
    async with srv.client() as c:
        health = (await c.get("/api/health")).json()
        assert health["offline"] is False
        # No offline endpoint on a server that has a real one configured.
        assert (await c.post("/v1/chat/completions", json={})).status_code in (404, 405)
    w = await srv.watcher()
    run = await srv.start_run("what is 7 * 6?")
    await w.subscribe(run)
    events = await w.until_finished(run)
    assert events[-1]["status"] == "succeeded" and "42" in text_of(events)
    assert events[0]["offline"] is False
    async with srv.client() as c:
        replay = (await c.get(f"/api/runs/{run}/events")).text
    assert SECRET not in srv.logs() and SECRET not in replay
    await w.close()


async def test_an_unreachable_endpoint_fails_the_run_with_what_to_check(make_server):
    srv = make_server({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": SECRET})
    w = await srv.watcher()
    run = await srv.start_run("hello")
    await w.subscribe(run)
    final = (await w.until_finished(run, timeout=30))[-1]
    assert final["status"] == "failed" and "OPENAI_BASE_URL" in final["error"]
    assert SECRET not in srv.logs()
    await w.close()
