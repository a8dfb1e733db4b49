"""The dashboard's SSE fallback in real headless Chromium, through a run that goes quiet for longer
than the heartbeat: the stream's heartbeats reach the page as comments, never as messages."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from runwatch.agents.offline.model import scenario_text
from tests.browser.pages import answer_text, start_run

pytestmark = pytest.mark.timeout(120)

#: A proxy that refuses the upgrade: every WebSocket closes before it opens, so the page uses SSE.
NO_WEBSOCKETS = """
    window.WebSocket = class {
        constructor() { this.readyState = 3; setTimeout(() => this.onclose?.({code: 1006}), 5); }
        send() {}
        close() {}
    };
    window.WebSocket.OPEN = 1;
"""


def _approval(srv, run: str) -> dict:
    events = httpx.get(f"{srv.url}/api/runs/{run}/events", headers=srv.auth, timeout=10).json()["events"]
    return next(e for e in events if e["type"] == "approval.requested")


def _quiet_for(srv, run: str, after: int, heartbeats: int) -> None:
    """Return once a stream of ``run`` from ``after`` has gone quiet for ``heartbeats`` heartbeats."""
    seen = 0
    url = f"{srv.url}/api/runs/{run}/stream"
    with httpx.stream("GET", url, params={"after": after}, headers=srv.auth, timeout=15) as r:
        for line in r.iter_lines():
            seen += line == ": heartbeat"
            if seen >= heartbeats:
                return


def test_over_sse_a_run_quiet_for_heartbeats_shows_no_error_and_goes_on(make_server, open_page):
    srv = make_server({"RUNWATCH_HEARTBEAT": "0.3"})
    page = open_page("", login=srv.url)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(NO_WEBSOCKETS)
    run = start_run(srv, {"approvals": 1, "tokens": 30})
    page.goto(f"{srv.url}/#/runs/{run}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "sse", timeout=15_000)
    expect(page.locator('.approval-card[data-state="open"]')).to_have_count(1, timeout=15_000)

    approval = _approval(srv, run)
    _quiet_for(srv, run, approval["seq"], 3)  # the page's stream is as quiet, from the same moment
    decided = httpx.post(
        f"{srv.url}/api/runs/{run}/approvals/{approval['approval_id']}",
        json={"decision": "approve"},
        headers=srv.auth,
        timeout=10,
    )
    assert decided.status_code == 200, decided.text

    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=20_000)
    assert "".join(scenario_text(30)).strip() in answer_text(page)
    expect(page.locator("#conn")).to_have_attribute("data-state", "sse")
    assert errors == []
