"""Secrets never leave: not in logs, not in run errors, not in the API, whatever the upstream echoes."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runwatch.agents.redact import Redactor, endpoint_secrets, mask_url
from runwatch.api.logs import RedactSecrets

KEY = "sk-test-SECRET123abcdefghijklmnop"
PASSWORD = "s3cret"


class _RejectingUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that refuses every request with a 401 echoing its credentials."""

    seen: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        authorization = self.headers.get("authorization", "")
        self.seen.append(authorization)
        body = json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {authorization}. Get a key from your dashboard.",
                    "type": "invalid_request_error",
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[str]]]:
    """``(host:port, authorization headers seen)`` of a rejecting upstream on a free loopback port."""
    seen: list[str] = []
    handler = type("Handler", (_RejectingUpstream,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


async def _failed_run(srv) -> tuple[dict, str]:
    """Start a run against the rejecting upstream; its ``run.finished`` and ``GET /api/runs`` body."""
    watcher = await srv.watcher()
    run = await srv.start_run("hello")
    await watcher.subscribe(run)
    finished = (await watcher.until_finished(run))[-1]
    await watcher.close()
    async with srv.client() as c:
        listing = (await c.get("/api/runs")).text
    return finished, listing


async def test_credentials_in_the_endpoint_url_never_reach_logs_or_run_errors(make_server, upstream):
    address, seen = upstream
    srv = make_server({"OPENAI_BASE_URL": f"http://user:{PASSWORD}@{address}/v1", "OPENAI_API_KEY": KEY})
    finished, listing = await _failed_run(srv)
    srv.stop()
    basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert seen and (basic in seen[0] or KEY in seen[0]), seen  # the upstream did echo a credential
    ready = next(line for line in srv.log_lines() if line["event"] == "runwatch.ready")
    assert ready["endpoint"] == f"http://***@{address}/v1"
    assert finished["status"] == "failed" and "401" in finished["error"]
    for shown in (srv.logs(), json.dumps(finished), listing):
        assert PASSWORD not in shown and basic not in shown and KEY not in shown


async def test_an_upstream_401_that_echoes_the_key_shows_it_nowhere(make_server, upstream):
    address, seen = upstream
    srv = make_server({"OPENAI_BASE_URL": f"http://{address}/v1", "OPENAI_API_KEY": KEY})
    finished, listing = await _failed_run(srv)
    srv.stop()
    assert seen == [f"Bearer {KEY}"]  # the upstream's error message carried the key
    assert finished["status"] == "failed"
    assert "answered 401" in finished["error"] and "Incorrect API key provided: Bearer ***" in finished["error"]
    assert KEY not in listing and "SECRET123" not in listing
    assert "SECRET123" not in srv.logs()
    assert any(line.get("event") == "run.finished" and "401" in line["error"] for line in srv.log_lines())


def test_url_credentials_are_masked_and_the_rest_of_the_url_kept():
    assert mask_url("http://user:pa%40ss@host:8001/v1?x=1") == "http://***@host:8001/v1?x=1"
    assert mask_url("https://api.openai.com/v1") == "https://api.openai.com/v1"


def test_the_configured_secrets_go_first_whatever_their_shape():
    redact = Redactor(endpoint_secrets("http://u:plain-pw@h/v1", "my-own-key-123"))
    text = redact("got my-own-key-123 and plain-pw from http://u:plain-pw@h/v1")
    assert text == "got *** and *** from http://***@h/v1"


def test_bearer_tokens_and_sk_keys_are_scrubbed_from_any_text():
    redact = Redactor()
    text = redact("Authorization: Bearer abc.DEF-123_xyz; key sk-proj-AbC123xyz789; Basic dXNlcjpwYXNz=")
    assert text == "Authorization: Bearer ***; key sk-***; Basic ***"


def test_prose_about_tokens_and_auth_is_left_alone():
    text = "basic authentication failed; a bearer token is required; task-123456789 ran"
    assert Redactor()(text) == text


def test_the_log_processor_scrubs_every_value_nested_ones_and_tracebacks_too():
    scrub = RedactSecrets(Redactor(["hunter2-pw"]))
    line = scrub(
        None,
        "error",
        {
            "event": "upstream said hunter2-pw",
            "url": "http://u:hunter2-pw@h/v1",
            "attempts": 3,
            "headers": {"sent": ["Bearer abc.DEF-123_xyz"]},
            "exception": 'Traceback (most recent call last):\n  ...\nError: "sk-proj-AbC123xyz789"',
        },
    )
    assert line == {
        "event": "upstream said ***",
        "url": "http://***@h/v1",
        "attempts": 3,
        "headers": {"sent": ["Bearer ***"]},
        "exception": 'Traceback (most recent call last):\n  ...\nError: "sk-***"',
    }


LEAKY_MODULE = """
import os
from runwatch.agents import Agent


def leak() -> str:
    \"\"\"Fails with a message that carries the server's key, as a careless tool might.\"\"\"
    raise RuntimeError(f"auth failed with key {os.environ['OPENAI_API_KEY']} and Bearer eyJ0eXAi.eyJzdWIi.sig123")


leaky = Agent(name="leaky", instructions="Call leak.", tools=[leak], max_steps=2)
"""


async def test_a_tool_error_that_echoes_the_key_is_scrubbed_before_it_becomes_an_event(make_server, tmp_path):
    # its offline model answers the other server, which has a key configured (of another service)
    model = make_server({"RUNWATCH_OFFLINE_MODEL_OPEN": "true"})
    (tmp_path / "leaky_agents.py").write_text(LEAKY_MODULE)
    key = "sk-test-TOOLLEAK1234567890"
    srv = make_server(
        {
            "OPENAI_BASE_URL": model.url + "/v1",
            "OPENAI_API_KEY": key,
            "RUNWATCH_MODEL": "runwatch-offline",
            "RUNWATCH_AGENTS": "leaky_agents",
            "PYTHONPATH": str(tmp_path),
        }
    )
    w = await srv.watcher()
    run = await srv.start_run("call leak {}", agent="leaky")
    await w.subscribe(run)
    events = await w.until_finished(run)
    finished = next(e for e in events if e["type"] == "tool.finished")
    assert finished["error"].startswith("RuntimeError: auth failed with key")
    assert key not in json.dumps(events) and "eyJzdWIi" not in json.dumps(events)
    assert key not in srv.logs()
