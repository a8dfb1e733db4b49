"""The run view's answer and live figures in real headless Chromium: the answer follows the stream
until the reader scrolls up, renders Markdown, and the header's tokens/s and elapsed time are the
run's. The elements the tests rely on are listed in tests/browser/pages/run_view.py.
"""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.pages import start_run
from tests.browser.pages.run_view import NONE, counter, finished, replay, shown_seconds
from tests.harness.waiting import eventually_blocking

pytestmark = pytest.mark.timeout(90)


#: The box's scrollTop once it has stopped moving (a wheel's smooth scroll takes a few frames).
STILL = """el => new Promise((resolve) => {
    let last = -1;
    const check = () => (el.scrollTop === last ? resolve(last) : ((last = el.scrollTop), setTimeout(check, 100)));
    check();
})"""


def test_the_answer_follows_the_stream_until_the_reader_scrolls_up(server, open_page):
    run = start_run(server, {"tokens": 100_000, "rate": 400, "token_chars": 12})
    page = open_page(f"{server.url}/#/runs/{run}")
    box = page.locator("#answer")
    box.wait_for()  # the run view is shown (a predicate over it before then would throw, not wait)
    overflowing = "el => el.scrollHeight > el.clientHeight + 300"
    page.wait_for_function(f"({overflowing})(document.querySelector('#answer'))", timeout=15_000)
    expect(box).to_have_attribute("data-following", "true")
    gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    assert box.evaluate(gap) <= 8  # it followed
    height = box.evaluate("el => el.scrollHeight")
    box.hover()
    page.mouse.wheel(0, -400)  # the reader scrolls up…
    expect(box).to_have_attribute("data-following", "false")
    expect(page.locator("#answer-follow")).to_be_visible()
    top = box.evaluate(STILL)  # where the scroll came to rest
    page.wait_for_function(
        f"document.querySelector('#answer').scrollHeight > {height} + 600", timeout=15_000
    )  # …and the text keeps coming
    assert box.evaluate("el => el.scrollTop") == top  # but the box stays where they are
    box.evaluate("el => { el.scrollTop = el.scrollHeight; }")  # back at the bottom: following again
    expect(box).to_have_attribute("data-following", "true")
    height = box.evaluate("el => el.scrollHeight")
    page.wait_for_function(f"document.querySelector('#answer').scrollHeight > {height} + 300", timeout=15_000)
    page.wait_for_function(f"({gap})(document.querySelector('#answer')) <= 8", timeout=5_000)
    httpx.post(f"{server.url}/api/runs/{run}/cancel", json={}, headers=server.auth)
    finished(page, "cancelled")


def test_tokens_per_second_waits_for_streaming_time_and_is_then_right(server, open_page):
    run = start_run(server, {"tokens": 30, "rate": 10, "ttft": 2.0})
    page = open_page(f"{server.url}/#/runs/{run}")
    expect(page.locator("#model-wait")).to_have_text("waiting for the model…")
    expect(counter(page, "tokens/s")).to_have_text(NONE)
    # What the header says in the frame that shows the first token, and the first rate it shows.
    assert page.evaluate("""() => {
        const rate = () => document.querySelector('[data-counter="tokens/s"] .v').textContent;
        window.__atFirstToken = null; window.__firstRate = null;
        new MutationObserver(() => {
            if (window.__atFirstToken === null && document.querySelector('#answer').textContent.trim())
                window.__atFirstToken = rate();
            if (window.__firstRate === null && rate() !== "\u2013") window.__firstRate = rate();
        }).observe(document.querySelector('#view'), {subtree: true, childList: true, characterData: true});
        return !document.querySelector('#answer').textContent.trim();
    }"""), "the first token came before the test could watch for it"
    expect(page.locator("#model-wait")).to_have_text("", timeout=5_000)
    page.wait_for_function("window.__firstRate !== null", timeout=5_000)
    assert page.evaluate("window.__atFirstToken") == NONE
    assert 5 < float(page.evaluate("window.__firstRate")) < 25  # ~10 tokens/s, not 100+
    finished(page)
    rate = float(counter(page, "tokens/s").inner_text())
    assert 7 < rate < 15  # 10 tokens/s
    events = replay(server, run)
    started = next(e["ts"] for e in events if e["type"] == "run.started")
    assert abs(shown_seconds(counter(page, "elapsed").inner_text()) - (events[-1]["ts"] - started)) <= 0.051


def test_a_run_waiting_since_before_the_page_opened_shows_its_whole_wait(server, open_page):
    """The clock is the server's (hello's server_time), not "the last event was just now"."""
    run = start_run(server, {"tokens": 3, "approvals": 1})

    def summary() -> dict:
        return httpx.get(f"{server.url}/api/runs/{run}", headers=server.auth).json()

    eventually_blocking(lambda: summary()["status"] == "waiting", what="the run to wait for its approval")
    time.sleep(2.5)  # the run waits on: how long it has waited is what the page must show
    page = open_page(f"{server.url}/#/runs/{run}")
    expect(page.locator("#run-status")).to_have_text("waiting")
    age = time.time() - summary()["started_at"]
    assert shown_seconds(counter(page, "elapsed").inner_text()) >= age - 0.5
    httpx.post(f"{server.url}/api/runs/{run}/cancel", headers=server.auth)
    finished(page, "cancelled")


def test_italic_text_with_underscores_renders_as_italic(server, open_page):
    run = start_run(server, "explain *a_b* and _see snake_case here_ please")
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    answer = page.locator(".answer")
    expect(answer.locator("em", has_text="a_b")).to_have_text("a_b")
    expect(answer.locator("em", has_text="snake_case")).to_have_text("see snake_case here")
    # The offline model's footnote: one italic line with OPENAI_BASE_URL in it.
    expect(answer.locator("em", has_text="OPENAI_BASE_URL")).to_have_text(
        "This answer comes from runwatch's offline model; set OPENAI_BASE_URL for a real one."
    )
    assert "_see" not in answer.inner_text() and "one._" not in answer.inner_text()
