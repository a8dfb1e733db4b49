"""Bad input gets a clear error, the connection keeps working, and nobody else is affected."""

from __future__ import annotations

import pytest

from runwatch.api.http_errors import NOT_UTF8
from tests.harness.watcher import assert_contiguous


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("{not json", "bad_json", "malformed JSON"),
        ("[1, 2]", "not_an_object", "JSON object"),
        ('"subscribe"', "not_an_object", "JSON object"),
        ('{"type": "explode", "id": 7}', "unknown_type", "expected one of"),
        ('{"id": 8}', "unknown_type", "expected one of"),
        ('{"type": "subscribe", "id": 9}', "bad_message", "missing required field `run`"),
        ('{"type": "subscribe", "run": 5, "id": 10}', "bad_message", "Expected `str`"),
        ('{"type": "subscribe", "run": "x", "after": -1, "id": 11}', "bad_message", "after"),
        ('{"type": "start", "agent": "demo", "bogus": 1, "id": 12}', "bad_message", "unknown field"),
    ],
)
async def test_malformed_messages_get_an_error_and_the_connection_keeps_working(server, frame, code, words):
    w = await server.watcher()
    await w.send(frame)
    error = await w.wait_for(lambda m: m["type"] == "error")
    assert error["code"] == code and words in error["message"]
    if '"id"' in frame:
        assert error["id"] == int(frame.split('"id": ')[1].rstrip("}"))
    run = await server.start_run({"tokens": 5})
    await w.subscribe(run)
    assert_contiguous(await w.until_finished(run))
    await w.close()


async def test_unknown_run_and_unknown_agent_are_errors_with_codes(server):
    w = await server.watcher()
    reply = await w.request({"type": "subscribe", "run": "no-such-run"})
    assert reply["type"] == "error" and reply["code"] == "unknown_run" and "no-such-run" in reply["message"]
    reply = await w.request({"type": "cancel", "run": "no-such-run"})
    assert reply["code"] == "unknown_run"
    reply = await w.request({"type": "unsubscribe", "run": "no-such-run"})
    assert reply["code"] == "not_subscribed"
    reply = await w.request({"type": "start", "agent": "nobody"})
    assert reply["code"] == "unknown_agent" and "known agents: demo" in reply["message"]
    await w.close()


async def test_an_oversized_frame_closes_1009_and_harms_no_one_else(make_server):
    srv = make_server({"RUNWATCH_WS_MAX_MESSAGE_BYTES": "1024"}, in_process=True)
    bystander = await srv.watcher()
    run = await srv.start_run({"tokens": 400, "rate": 400})
    await bystander.subscribe(run)
    offender = await srv.watcher()
    await offender.send({"type": "start", "agent": "demo", "input": "x" * 5000})
    closed = await offender.wait_closed()
    assert closed.code == 1009
    assert_contiguous(await bystander.until_finished(run))
    await bystander.close()


async def test_too_many_subscriptions_is_refused(make_server):
    srv = make_server({"RUNWATCH_WS_MAX_SUBSCRIPTIONS": "2"}, in_process=True)
    w = await srv.watcher()
    runs = [await srv.start_run({"tokens": 1}) for _ in range(3)]
    await w.subscribe(runs[0])
    await w.subscribe(runs[1])
    reply = await w.request({"type": "subscribe", "run": runs[2]})
    assert reply["code"] == "too_many_subscriptions"
    assert (await w.request({"type": "unsubscribe", "run": runs[0]}))["type"] == "ack"
    assert (await w.request({"type": "subscribe", "run": runs[2]}))["type"] == "ack"
    await w.close()


async def test_rest_rejects_malformed_json_with_400(server):
    async with server.client() as c:
        r = await c.post("/api/runs", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400


async def test_rest_rejects_a_body_without_agent(server):
    async with server.client() as c:
        r = await c.post("/api/runs", json={"input": "hi"})
        assert r.status_code == 400 and "agent" in r.text


async def test_rest_unknown_agent_is_422_naming_the_known_ones(server):
    async with server.client() as c:
        r = await c.post("/api/runs", json={"agent": "nobody", "input": "hi"})
        assert r.status_code == 422
        assert r.json()["detail"] == "unknown agent 'nobody'; known agents: demo"


async def test_rest_unknown_run_is_404(server):
    async with server.client() as c:
        for path in ("/api/runs/nope", "/api/runs/nope/events"):
            r = await c.get(path)
            assert r.status_code == 404 and "no run 'nope'" in r.json()["detail"]


async def test_rest_bad_query_parameters_are_400(server):
    async with server.client() as c:
        assert (await c.get("/api/runs", params={"status": "sleeping"})).status_code == 400
        assert (await c.get("/api/runs", params={"limit": 0})).status_code == 400
        assert (await c.get("/api/runs/x/events", params={"after": -1})).status_code == 400


async def test_a_full_queue_answers_429(make_server):
    srv = make_server({"RUNWATCH_MAX_RUNNING": "1", "RUNWATCH_MAX_QUEUED": "1"}, in_process=True)
    async with srv.client() as c:
        body = {"agent": "demo", "input": '{"tokens": 100000, "rate": 10}'}
        assert (await c.post("/api/runs", json=body)).status_code == 202
        assert (await c.post("/api/runs", json=body)).status_code == 202
        r = await c.post("/api/runs", json=body)
        assert r.status_code == 429 and r.headers["retry-after"] == "5" and "queued" in r.json()["detail"]


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        ("/api/runs", b'{"agent": "demo", "input": "\xff\xfe"}', "bad_json", "not valid UTF-8; send JSON encoded as"),
        ("/api/runs", b"[" * 100_000 + b"]" * 100_000, "bad_json", "nested too deeply"),
        ("/api/runs", b'{"agent": "demo", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "bad_json", "nested"),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [USER], "tools": [{"function": "x"}]},
            "bad_request",
            "$.tools[0].function",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [USER, {"role": "assistant", "tool_calls": "abc"}]},
            "bad_request",
            "$.messages[1].tool_calls",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [USER, {"role": "assistant", "tool_calls": [1, 2]}]},
            "bad_request",
            "$.messages[1].tool_calls[0]",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [USER, {"role": "tool", "tool_call_id": ["c1"], "content": "x"}]},
            "bad_request",
            "$.messages[1].tool_call_id",
        ),
        ("/v1/chat/completions", b"\xff" * 10, "bad_json", "not valid JSON"),
    ],
)
async def test_a_malformed_body_is_a_400_with_a_code_and_a_reason(server, path, body, code, words):
    async with server.client() as c:
        if isinstance(body, bytes):
            r = await c.post(path, content=body, headers={"content-type": "application/json"})
        else:
            r = await c.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code and words in r.json()["detail"], r.text


@pytest.mark.parametrize(
    ("path", "params", "headers"),
    [
        ("/api/runs/{run}/events", {"after": "1" * 26}, {}),
        ("/api/runs/{run}/stream", {}, {"last-event-id": "1" * 26}),
        ("/api/runs/{run}/stream", {"after": "1" * 26}, {}),
        ("/api/runs", {"cursor": "1" * 26}, {}),
    ],
)
async def test_a_position_past_any_integer_is_a_400(server, path, params, headers):
    run = await server.start_run({"tokens": 1})
    async with server.client() as c:
        r = await c.get(path.format(run=run), params=params, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text


async def test_a_cursor_of_two_to_the_63_lists_runs(server):
    run = await server.start_run({"tokens": 1})
    async with server.client() as c:
        r = await c.get("/api/runs", params={"cursor": str(2**63)})
    assert r.status_code == 200 and run in [x["id"] for x in r.json()["runs"]]


async def test_a_last_event_id_of_5000_zeros_replays_from_the_start(server):
    run = await server.start_run({"tokens": 1})
    async with server.client() as c:
        r = await c.get(f"/api/runs/{run}/stream", headers={"last-event-id": "0" * 5000})
    assert r.status_code == 200 and r.text.startswith("id: 1\r\n"), r.text[:200]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"agent": "demo", "input": ""}, "input is empty"),
        ({"agent": "demo", "input": "  \n"}, "input is empty"),
        ({"agent": "demo"}, "missing required field `input`"),
    ],
)
async def test_an_empty_or_missing_input_is_a_400_saying_so(server, body, words):
    async with server.client() as c:
        r = await c.post("/api/runs", json=body)
    assert r.status_code == 400 and words in r.json()["detail"], r.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"agent": "demo", "input": "\xff\xfe"}',
        b"\xff" * 10,
        b'{"agent": "dem\xc3"}',
        b'{"agent": "demo", "input": "\xed\xa0\x80"}',
    ],
    ids=["in-a-string", "only-bad-bytes", "cut-sequence", "surrogate"],
)
async def test_a_body_that_is_not_utf8_gets_runwatch_s_own_sentence_whatever_msgspec_says(server, body):
    async with server.client() as c:
        r = await c.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json() == {"status_code": 400, "detail": NOT_UTF8, "code": "bad_json"}, r.text
