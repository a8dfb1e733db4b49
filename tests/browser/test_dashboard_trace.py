# ruff: noqa: F811 -- pytest injects the imported browser fixtures by name
"""The run view in real headless Chromium: the trace of steps and tool calls with its waterfall and
detail panel, the answer panel, the live figures, rerun and export, the disconnected state, Markdown,
a phone's screen and accessibility.

The elements the tests (and anyone scripting the dashboard) rely on:

=====================================  ============================================================
``#trace-tree``                        the trace (role ``tree``): one ``.trace-row`` (``treeitem``)
                                       per item, ``data-id`` = ``step-N`` (``step-N-K`` for a step
                                       run again), ``tool-CALL_ID``, ``approval-ID``,
                                       ``message-SEQ`` or ``note-SEQ``; ``data-kind``; ``data-state``
                                       (``waiting``, ``running``, ``done``, ``failed``,
                                       ``cancelled``, ``denied``, ``interrupted``, ``approved``,
                                       ``expired``, ``closed``); ``aria-level`` (a step's tool calls
                                       and approvals are level 2); ``aria-selected``
``.trace-label`` ``.trace-state``      what the item is, its state in words (empty when done), and
``.trace-time``                        its duration ("1.2 s · ttft 340 ms"; "…" while it runs)
``.trace-track .bar``                  its waterfall bar (``open`` while it runs)
``#detail-title`` ``#detail-facts``    the selected item: facts as ``dd[data-fact=NAME]`` (``model``,
``#detail-text`` ``#detail``           ``finish reason``, ``time to first token``, ``duration``,
                                       ``input tokens``, ``output tokens``, ``speed``, ``cost``, …);
                                       a step's streamed text; a tool call's arguments, progress and
                                       result or error
``#answer``                            the answer (bounded, scrolls); ``data-following`` says if it
                                       follows the stream; ``#answer-follow`` resumes following
``[data-counter=NAME] .v``             ``elapsed``, ``tokens in``, ``tokens out``, ``tokens/s``,
                                       ``tool calls``, ``cost``, ``started``
``#model-wait``                        "waiting for the model…" until a step's first token
``#rerun`` ``#edit-run``               operators only; ``#export-json`` ``#export-md`` for everyone
``#conn-banner`` ``#run-conn``         shown while the live connection is down, with ``#retry-now``
=====================================  ============================================================
"""

from __future__ import annotations

import json
import re
import signal
import time
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from runwatch.agents.offline.model import scenario_text
from tests.a11y import serious_violations
from tests.browser.test_dashboard import ARTIFACTS, browser, open_page, start_run  # noqa: F401 -- the same browser fixtures
from tests.conftest import Server

pytestmark = pytest.mark.timeout(90)

#: What a figure that is not known (yet) shows: an en dash.
NONE = "\u2013"

#: USD per million tokens for the offline model on the priced server: whole micro-dollars per token.
PRICE = {"input": 1.0, "output": 3.0}


def replay(server: Server, run: str) -> list[dict]:
    """Every event of ``run`` from the REST replay, page after page."""
    events: list[dict] = []
    after = 0
    while True:
        page = httpx.get(
            f"{server.url}/api/runs/{run}/events", params={"after": after, "limit": 5000}, headers=server.auth
        ).json()
        events += page["events"]
        if not page["more"]:
            return events
        after = page["next_after"]


def usd(cost: float | None) -> str:
    """The dashboard's way of writing a cost (run-figures.js)."""
    if cost is None:
        return "unpriced"
    if cost == 0:
        return "$0"
    return f"${cost:.2f}" if cost >= 1 else f"${cost:.4f}" if cost >= 0.01 else f"${cost:.6f}"


def shown_seconds(text: str) -> float:
    """The seconds in "850 ms" or "3.2 s"."""
    value, unit = text.split()
    return float(value) / 1000 if unit == "ms" else float(value)


def row(page: Page, item_id: str):
    return page.locator(f'#trace-tree .trace-row[data-id="{item_id}"]')


def rows(page: Page, kind: str | None = None):
    return page.locator("#trace-tree .trace-row" + (f'[data-kind="{kind}"]' if kind else ""))


def fact(page: Page, name: str):
    return page.locator(f'#detail-facts dd[data-fact="{name}"]')


def counter(page: Page, name: str):
    return page.locator(f'[data-counter="{name}"] .v')


def finished(page: Page, status: str = "succeeded", timeout: float = 15_000) -> None:
    expect(page.locator("#run-status")).to_have_text(status, timeout=timeout)


def test_the_trace_nests_tool_calls_under_their_steps_and_grows_live(server, open_page):
    # Each call takes 3 s: long enough for the page to open and see the first one running.
    run = start_run(server, {"tokens": 20, "rate": 40, "tool_calls": 2, "tool_seconds": 3})
    page = open_page(f"{server.url}/#/runs/{run}")
    running = rows(page, "tool").first
    expect(running).to_have_attribute("data-state", "running")  # seen while it runs…
    expect(running).to_have_attribute("aria-level", "2")
    expect(running.locator(".bar")).to_have_class(re.compile(r"\bopen\b"))
    expect(running.locator(".trace-state")).to_have_text("running")
    expect(running.locator(".trace-time")).to_have_text(re.compile(r"…$"))
    expect(running).to_have_attribute("data-state", "done", timeout=8_000)  # …then finished
    expect(running.locator(".bar")).not_to_have_class(re.compile(r"\bopen\b"))
    finished(page)
    calls = [e["call_id"] for e in replay(server, run) if e["type"] == "tool.started"]
    expected = [("step-0", "1"), (f"tool-{calls[0]}", "2"), ("step-1", "1"), (f"tool-{calls[1]}", "2"), ("step-2", "1")]
    ids = rows(page).evaluate_all("rs => rs.map(r => [r.dataset.id, r.getAttribute('aria-level')])")
    assert [tuple(x) for x in ids] == expected
    for step in ("step-0", "step-1", "step-2"):  # durations and time to first token, as words
        expect(row(page, step).locator(".trace-time")).to_have_text(
            re.compile(r"^\d+(\.\d)? m?s · ttft \d+(\.\d)? m?s$")
        )
    expect(row(page, f"tool-{calls[1]}").locator(".trace-time")).to_have_text(re.compile(r"^3\.[0-9] s$"))


def test_parallel_tool_calls_are_siblings_under_their_step(server, open_page):
    run = start_run(server, {"tokens": 3, "tool_calls": 3, "tool_seconds": 0.2, "parallel": True})
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    tools = rows(page, "tool")
    expect(tools).to_have_count(3)
    for i in range(3):
        expect(tools.nth(i)).to_have_attribute("aria-level", "2")
        expect(tools.nth(i)).to_have_attribute("aria-setsize", "3")
        expect(tools.nth(i)).to_have_attribute("aria-posinset", str(i + 1))
    expect(row(page, "step-0")).to_have_attribute("aria-expanded", "true")
    expect(rows(page, "step")).to_have_count(2)


def test_selecting_a_tool_call_shows_its_arguments_progress_and_result(server, open_page):
    run = start_run(server, {"tokens": 5, "tool_calls": 1, "tool_seconds": 0.6})
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    done = next(e for e in replay(server, run) if e["type"] == "tool.finished")
    row(page, f"tool-{done['call_id']}").click()
    expect(row(page, f"tool-{done['call_id']}")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#detail-title")).to_contain_text("Tool call: wait")
    expect(fact(page, "tool")).to_have_text("wait")
    expect(fact(page, "duration")).to_have_text(re.compile(r"^\d+ ms$"))
    assert abs(shown_seconds(fact(page, "duration").inner_text()) - done["duration"]) < 0.001
    detail = page.locator("#detail")
    expect(detail).to_contain_text('"seconds": 0.6')  # arguments
    expect(detail.locator(".progress-list li").first).to_contain_text("waiting 0.0/0.6 s")  # progress
    expect(detail).to_contain_text(f'"waited": {done["result"]["waited"]}')  # result


def test_selecting_a_step_shows_its_text_tokens_speed_and_cost_from_the_price_table(make_server, open_page):
    srv = make_server({"RUNWATCH_PRICES": json.dumps({"runwatch-offline": PRICE})})
    run = start_run(srv, {"tokens": 60, "rate": 50, "tool_calls": 1, "tool_seconds": 0.1})
    page = open_page(f"{srv.url}/#/runs/{run}")
    finished(page)
    events = replay(srv, run)
    last = [e for e in events if e["type"] == "step.finished"][-1]
    usage = last["usage"]
    assert last["cost"] == (usage["input_tokens"] * PRICE["input"] + usage["output_tokens"] * PRICE["output"]) / 1e6
    row(page, "step-1").click()
    expect(page.locator("#detail-title")).to_contain_text("LLM step: step 2")
    expect(page.locator("#detail-text")).to_have_text("".join(scenario_text(60)))
    expect(fact(page, "model")).to_have_text("runwatch-offline")
    expect(fact(page, "finish reason")).to_have_text("stop")
    expect(fact(page, "input tokens")).to_have_text(f"{usage['input_tokens']:,}")
    expect(fact(page, "output tokens")).to_have_text(f"{usage['output_tokens']:,}")
    expect(fact(page, "cost")).to_have_text(usd(last["cost"]))
    assert abs(shown_seconds(fact(page, "time to first token").inner_text()) - last["ttft"]) < 0.001
    speed = float(fact(page, "speed").inner_text().split()[0])
    assert speed == pytest.approx(usage["output_tokens"] / (last["duration"] - last["ttft"]), abs=0.06)
    assert 30 < speed < 80  # 50 tokens/s (a late first token is caught up with), measured from the first token
    totals = events[-1]["totals"]
    expect(counter(page, "cost")).to_have_text(usd(totals["cost"]))
    row(page, "step-0").click()  # the step that asked for the tool: its own figures
    expect(fact(page, "finish reason")).to_have_text("tool_calls")
    first = next(e for e in events if e["type"] == "step.finished")
    expect(fact(page, "cost")).to_have_text(usd(first["cost"]))


def test_a_long_step_text_shows_its_end_until_all_of_it_is_asked_for(server, open_page):
    run = start_run(server, {"tokens": 5_000})
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    text = "".join(scenario_text(5_000))
    row(page, "step-0").click()
    shown = page.locator("#detail-text")
    expect(shown).to_have_text(re.compile("^…"))
    assert text.endswith(shown.inner_text()[1:])
    page.click("#detail-text-all")
    expect(shown).to_have_text(text)
    expect(page.locator("#detail-text-all")).to_be_hidden()


def test_a_model_without_a_price_costs_unpriced_not_zero(make_server, open_page):
    srv = make_server({"RUNWATCH_MODEL": "mystery-model-1"})
    run = start_run(srv, {"tokens": 5})
    page = open_page(f"{srv.url}/#/runs/{run}")
    finished(page)
    assert replay(srv, run)[-1]["totals"]["cost"] is None
    expect(counter(page, "cost")).to_have_text("unpriced")
    row(page, "step-0").click()
    expect(fact(page, "cost")).to_have_text("unpriced")


def test_arrow_keys_move_the_selection_through_the_tree(server, open_page):
    run = start_run(server, {"tokens": 5, "tool_calls": 2, "tool_seconds": 0.1})
    page = open_page(f"{server.url}/#/runs/{run}")
    finished(page)
    ids = rows(page).evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert len(ids) == 5
    row(page, ids[0]).click()
    expect(row(page, ids[0])).to_be_focused()
    for i in (1, 2):
        page.keyboard.press("ArrowDown")
        expect(row(page, ids[i])).to_have_attribute("aria-selected", "true")
        expect(row(page, ids[i])).to_be_focused()
    expect(page.locator("#detail-title")).to_contain_text("LLM step: step 2")
    page.keyboard.press("ArrowUp")
    expect(row(page, ids[1])).to_be_focused()
    expect(page.locator("#detail-title")).to_contain_text("Tool call: wait")
    page.keyboard.press("ArrowLeft")  # from a tool call to its step
    expect(row(page, ids[0])).to_have_attribute("aria-selected", "true")
    page.keyboard.press("End")
    expect(row(page, ids[4])).to_be_focused()
    expect(page.locator("#trace-tree [aria-selected=true]")).to_have_count(1)
    expect(page.locator("#trace-tree [tabindex='0']")).to_have_count(1)  # one row in the tab order
    page.keyboard.press("Home")
    page.keyboard.press("ArrowLeft")  # collapse step 1: its tool call is hidden, and skipped
    expect(row(page, ids[0])).to_have_attribute("aria-expanded", "false")
    expect(row(page, ids[1])).to_be_hidden()
    page.keyboard.press("ArrowDown")
    expect(row(page, ids[2])).to_be_focused()
    page.keyboard.press("Shift+Tab")  # leave the tree, come back: to the selected row
    page.keyboard.press("Tab")
    expect(row(page, ids[2])).to_be_focused()
    page.keyboard.press("Enter")
    expect(row(page, ids[2])).to_have_attribute("aria-selected", "true")


def test_a_selection_stays_while_the_run_streams(server, open_page):
    run = start_run(server, {"tokens": 40, "rate": 40, "tool_calls": 2, "tool_seconds": 1.5})
    page = open_page(f"{server.url}/#/runs/{run}")
    row(page, "step-0").click()
    expect(row(page, "step-2")).to_have_count(0)  # selected before the later items came
    expect(page.locator("#follow-latest")).to_be_visible()
    expect(row(page, "step-2")).to_have_attribute("data-state", "running", timeout=10_000)  # later items came
    finished(page)
    expect(row(page, "step-0")).to_have_attribute("aria-selected", "true")
    expect(row(page, "step-0")).to_be_focused()
    expect(page.locator("#trace-tree [aria-selected=true]")).to_have_count(1)
    expect(page.locator("#detail-title")).to_contain_text("LLM step: step 1")
    page.click("#follow-latest")  # back to following: the latest item
    expect(row(page, "step-2")).to_have_attribute("aria-selected", "true")


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
    for _ in range(100):
        summary = httpx.get(f"{server.url}/api/runs/{run}", headers=server.auth).json()
        if summary["status"] == "waiting":
            break
        time.sleep(0.05)
    time.sleep(2.5)  # (the wait itself is what is measured)
    page = open_page(f"{server.url}/#/runs/{run}")
    expect(page.locator("#run-status")).to_have_text("waiting")
    age = time.time() - summary["started_at"]
    assert shown_seconds(counter(page, "elapsed").inner_text()) >= age - 0.5
    httpx.post(f"{server.url}/api/runs/{run}/cancel", headers=server.auth)
    finished(page, "cancelled")


def test_a_failed_and_a_denied_tool_call_say_so(server, open_page):
    failing = start_run(server, 'call calculator {"expression": "1/0"}')
    page = open_page(f"{server.url}/#/runs/{failing}")
    finished(page)
    tool = rows(page, "tool")
    expect(tool).to_have_attribute("data-state", "failed")
    expect(tool.locator(".trace-state")).to_have_text("error")
    expect(tool.locator(".bar")).to_have_class(re.compile(r"\bfailed\b"))
    tool.click()
    expect(page.locator("#detail .error-text")).to_contain_text("division by zero")

    denied = start_run(server, {"tokens": 3, "approvals": 1})
    page.goto(f"{server.url}/#/runs/{denied}")
    approval = rows(page, "approval")
    expect(approval).to_have_attribute("data-state", "waiting")
    expect(approval).to_have_attribute("aria-level", "2")
    approval_id = approval.get_attribute("data-id").removeprefix("approval-")
    r = httpx.post(
        f"{server.url}/api/runs/{denied}/approvals/{approval_id}",
        json={"decision": "deny", "message": "not today"},
        headers=server.auth,
    )
    assert r.status_code == 200, r.text
    finished(page)
    for item in (approval, rows(page, "tool")):
        expect(item).to_have_attribute("data-state", "denied")
        expect(item.locator(".trace-state")).to_have_text("denied")
    rows(page, "tool").click()
    expect(fact(page, "approval")).to_have_text("denied by local admin: not today")
    expect(page.locator("#detail")).to_contain_text("not today")


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
