"""The run view's trace in real headless Chromium: steps and their tool calls as a tree that grows
live, with its waterfall, the detail panel of the selected item, the keyboard, and failed or denied
calls. The elements the tests rely on are listed in tests/browser/pages/run_view.py.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

from runwatch.agents.offline.model import scenario_text
from tests.browser.pages import start_run
from tests.browser.pages.run_view import PRICE, counter, fact, finished, replay, row, rows, shown_seconds, usd

pytestmark = pytest.mark.timeout(90)


def test_the_trace_nests_tool_calls_under_their_steps_and_grows_live(server, open_page):
    # Each call takes 3 s: long enough to see the first one running, with the dashboard loaded first
    # (its load is not in the window: the run view is then a change of the page's hash).
    page = open_page(f"{server.url}/")
    run = start_run(server, {"tokens": 20, "rate": 40, "tool_calls": 2, "tool_seconds": 3})
    page.goto(f"{server.url}/#/runs/{run}")
    running = rows(page, "tool").first
    expect(running).to_have_attribute("data-state", "running")  # seen while it runs…
    # (read at once, in one frame: a busy machine may let the 3 s call end between separate reads)
    seen = running.evaluate(
        """r => ({state: r.dataset.state, level: r.getAttribute('aria-level'),
                 bar: r.querySelector('.bar').className, text: r.querySelector('.trace-state').textContent,
                 time: r.querySelector('.trace-time').textContent})"""
    )
    assert seen["state"] == "running" and seen["level"] == "2", seen
    assert re.search(r"\bopen\b", seen["bar"]) and seen["text"] == "running", seen
    assert seen["time"].endswith("…"), seen
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
