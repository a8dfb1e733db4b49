"""The run view as a whole in real headless Chromium: rerun, edit and export, what a viewer may do,
the disconnected state and the resume after a restart, a phone's screen and accessibility. The
elements the tests rely on are listed in tests/browser/pages/run_view.py.
"""

from __future__ import annotations

import json
import re
import signal
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from runwatch.agents.offline.model import scenario_text
from tests.browser.pages import ARTIFACTS, start_run
from tests.browser.pages.run_view import counter, finished, replay, row, rows
from tests.conftest import Server
from tests.harness.a11y import serious_violations

pytestmark = pytest.mark.timeout(90)


def test_rerun_starts_the_same_agent_on_the_same_input(server, open_page):
    text = "what is 6*7?"
    run = start_run(server, text)
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    page.click("#rerun")
    expect(page).not_to_have_url(re.compile(f"#/runs/{run}$"))
    again = page.url.rsplit("/", 1)[1]
    finished(page)
    expect(page.locator(".input-text")).to_have_text(text)
    summary = httpx.get(f"{server.url}/api/runs/{again}", headers=server.auth).json()
    assert (summary["agent"], summary["input"]) == ("demo", text)


def test_edit_and_run_opens_the_start_form_with_the_agent_and_input(server, open_page):
    text = 'call wait {"seconds": 0.1} & more'
    run = start_run(server, text)
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    expect(page.locator("#edit-run")).to_have_attribute("href", f"#/?agent=demo&input={quote(text, safe='')}")


def test_export_json_is_every_event_as_the_rest_replay_gives_it(server, open_page):
    run = start_run(server, {"tokens": 30, "tool_calls": 1, "tool_seconds": 0.1})
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    with page.expect_download() as download:
        page.click("#export-json")
    assert download.value.suggested_filename == f"run-{run}.json"
    with open(download.value.path()) as f:
        assert json.load(f) == replay(server, run)


def test_export_markdown_is_a_transcript_of_the_run(server, open_page):
    user_input = {"tokens": 30, "tool_calls": 1, "tool_seconds": 0.1}
    run = start_run(server, user_input)
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    with page.expect_download() as download:
        page.click("#export-md")
    assert download.value.suggested_filename == f"run-{run}.md"
    with open(download.value.path()) as f:
        text = f.read()
    assert f"# Run {run}" in text
    assert f"## Input\n\n> {json.dumps(user_input)}" in text
    assert "### Tool call: wait" in text and '"seconds": 0.1' in text and '"waited":' in text
    assert "".join(scenario_text(30)).strip() in text
    assert "- status: succeeded" in text


def test_a_viewer_can_export_but_not_rerun_or_edit(server, open_page):
    made = httpx.post(
        f"{server.url}/api/keys/", json={"tenant": "default", "role": "viewer", "name": "vic"}, headers=server.auth
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    run = start_run(server, {"tokens": 5})
    page = open_page("", login=server.url, as_admin=False)
    assert page.context.request.post(server.url + "/api/login", data={"key": key}).ok
    page.goto(f"{server.url}/#/runs/{run}")
    finished(page)
    expect(page.locator("#export-json")).to_be_visible()
    expect(page.locator("#export-md")).to_be_visible()
    expect(page.locator("#rerun")).to_be_hidden()
    expect(page.locator("#edit-run")).to_be_hidden()


def test_a_killed_server_shows_disconnected_and_the_view_resumes_after_a_restart(make_server, open_page):
    srv = make_server()
    waiting = start_run(srv, {"tokens": 5, "approvals": 1})  # watched on a second page: its approval card
    run = start_run(srv, {"tokens": 100_000, "rate": 20})
    other = open_page(f"{srv.url}/#/runs/{waiting}")
    expect(other.locator("#approvals .approve")).to_be_enabled()
    page = open_page(f"{srv.url}/#/runs/{run}")
    expect(page.locator(".answer")).to_contain_text("the agent streams", timeout=10_000)
    expect(page.locator("#cancel-run")).to_be_enabled()
    expect(page.locator("#conn-banner")).to_be_hidden()
    expect(page.locator("#watchers")).to_be_visible()
    srv.stop(signal.SIGKILL)
    expect(page.locator("#run-conn")).to_have_text("Disconnected — reconnecting…")
    expect(page.locator("#watchers")).to_be_hidden()  # who watches is unknown while disconnected
    for action in ("#cancel-run", "#rerun", "#message-send"):
        expect(page.locator(action)).to_be_disabled()
    expect(page.locator("#retry-now")).to_be_visible()
    expect(other.locator("#run-conn")).to_have_text("Disconnected — reconnecting…")
    for action in (".approve", ".deny", ".edit-arguments"):
        expect(other.locator(f"#approvals {action}")).to_be_disabled()
    page.context.set_offline(True)  # the page's own retries fail until the test lets them through
    elapsed = counter(page, "elapsed").inner_text()
    again = Server(srv.data_dir, port=srv.port).start()  # the same port and data: the page's server
    try:
        expect(counter(page, "elapsed")).to_have_text(elapsed)  # the clock stopped (a restart takes > 1 s)
        expect(page.locator("#conn-banner")).to_be_visible()
        page.context.set_offline(False)
        page.locator("#retry-now").dispatch_event("click")  # (the page may have just reconnected by itself)
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5_000)
        finished(page, "failed")  # cut off by the kill: interrupted
        expect(page.locator("#run-error")).to_contain_text("interrupted")
        expect(page.locator("#conn-banner")).to_be_hidden()
        expect(page.locator("#watchers")).to_be_visible()  # told again on resubscribing
        expect(page.locator("#rerun")).to_be_enabled()
        said = "".join(e["text"] for e in replay(again, run) if e["type"] == "token")
        assert page.locator(".answer").inner_text().strip() == said.strip()  # nothing twice, nothing lost
    finally:
        again.stop()


def test_on_a_phone_the_run_view_is_one_column_without_horizontal_overflow(server, open_page):
    run = start_run(server, {"tokens": 60, "tool_calls": 1, "tool_seconds": 0.2})
    page = open_page("", login=server.url)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server.url}/#/runs/{run}")
    finished(page)
    row(page, "step-1").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    trace = page.locator(".trace-panel").bounding_box()
    detail = page.locator("#detail-panel").bounding_box()
    assert detail["y"] >= trace["y"] + trace["height"]  # stacked, not side by side
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("scrollTo(0, 0)")  # (the sticky top bar would sit mid-page in a full-page picture)
    page.screenshot(path=str(ARTIFACTS / "run-view-phone.png"), full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_run_view_has_no_serious_accessibility_violations(server, open_page, scheme):
    run = start_run(server, {"tokens": 40, "tool_calls": 1, "tool_seconds": 0.1, "approvals": 1})
    page = open_page(f"{server.url}/#/runs/{run}", color_scheme=scheme)
    expect(page.locator("#run-status")).to_have_text("waiting")  # an approval card, a waiting item
    expect(rows(page, "approval")).to_have_count(1)
    assert serious_violations(page) == []
    approval = rows(page, "approval").get_attribute("data-id").removeprefix("approval-")
    r = httpx.post(
        f"{server.url}/api/runs/{run}/approvals/{approval}", json={"decision": "approve"}, headers=server.auth
    )
    assert r.status_code == 200, r.text
    finished(page)
    rows(page, "tool").last.click()
    assert serious_violations(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"run-view-{scheme}.png"), full_page=True)
