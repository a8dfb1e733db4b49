"""Figures the dashboard shows in more than one place agree, in real headless Chromium: output
tokens/s on the overview and in the run view, a step's time to first token while it streams and
after, cost by agent with an unpriced run, and tokens in when the model never said.

Some runs here talk to ``tests.harness.fake_model``: an endpoint that streams like a local model (a tool
call in one chunk, text a token a chunk), with or without usage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import finish, start_run
from tests.browser.pages.run_view import NONE, counter, fact, finished, replay, row
from tests.browser.pages.runs_list import cell, list_page
from tests.harness.fake_model import FakeModel

pytestmark = pytest.mark.timeout(90)

#: One step that streams for 10 s: still streaming when a page on a busy machine has loaded.
LONG_STEP = {"tokens": 300, "rate": 30}


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    model = FakeModel()
    yield model
    model.close()


def overview(server, window: int = 900) -> dict:
    r = httpx.get(f"{server.url}/api/overview", params={"window": window}, headers=server.auth)
    assert r.status_code == 200, r.text
    return r.json()


def run_page(open_page, server, run: str) -> Page:
    page = open_page(f"{server.url}/#/runs/{run}")
    expect(page.locator("#run-status")).not_to_have_text("loading", timeout=10_000)
    return page


def test_the_overview_and_the_run_view_give_a_run_the_same_output_tokens_per_second(make_server, open_page, fake_model):
    srv = make_server(fake_model.env("llama3.1"))
    events = finish(srv, {"tool_calls": 2, "tokens": 40, "rate": 40})  # two whole tool calls, then 40 tokens/s
    assert events[-1]["status"] == "succeeded", events[-1]
    (model,) = overview(srv)["models"]
    assert model["model"] == "llama3.1"
    page = run_page(open_page, srv, events[0]["run_id"])
    finished(page)
    shown = float(counter(page, "tokens/s").inner_text())
    assert shown == pytest.approx(model["tokens_per_second"], abs=0.051)  # the view shows one decimal
    # The text's speed: the answer step's tokens over its streaming time, as its step.finished says;
    # not the tool calls' tokens (they came whole, not streamed), nor their steps' time. (How fast
    # the fake model really streamed depends on the machine's load: that is for bench/, not here.)
    steps = [e for e in events if e["type"] == "step.finished"]
    (answer,) = [s for s in steps if s["streamed_text"]]
    assert len(steps) == 3 and answer["usage"]["output_tokens"] == 40
    assert shown == pytest.approx(40 / (answer["duration"] - answer["ttft"]), abs=0.051)
    assert shown < 45  # the model sends 40 tokens a second at most


def ttft_shown(page: Page) -> dict[str, str]:
    """The first step's state and its time to first token as the trace row and the details say it,
    read in one go."""
    return page.evaluate("""() => {
        const step = document.querySelector('#trace-tree .trace-row[data-id="step-0"]');
        const time = step.querySelector('.trace-time').textContent;
        const fact = document.querySelector('#detail-facts dd[data-fact="time to first token"]');
        const detail = fact ? fact.textContent : '';
        return {state: step.dataset.state, trace: time.split(' · ttft ')[1] || '', detail};
    }""")


def test_a_steps_time_to_first_token_reads_the_same_while_it_streams_and_after(server, open_page):
    run = start_run(server, LONG_STEP | {"ttft": 0.3})
    page = run_page(open_page, server, run)
    expect(row(page, "step-0")).to_have_attribute("data-state", "running", timeout=10_000)
    expect(row(page, "step-0").locator(".trace-time")).to_contain_text("ttft")
    live = ttft_shown(page)
    assert live["state"] == "running" and live["trace"] and live["trace"] == live["detail"], live
    finished(page, timeout=30_000)
    done = ttft_shown(page)
    assert done["state"] == "done" and (done["trace"], done["detail"]) == (live["trace"], live["detail"])
    (step,) = [e for e in replay(server, run) if e["type"] == "step.finished"]
    assert 0.3 <= step["ttft"] < 0.3 + 0.2  # the model's delay, not runwatch's token window on top


def test_cost_by_agent_marks_an_agent_with_an_unpriced_run_instead_of_showing_it_free(make_server, open_page, tmp_path):
    data = tmp_path / "data"
    free = make_server(data_dir=data)  # the offline model is free: $0
    finish(free, {"tokens": 3})
    free.stop()
    srv = make_server({"RUNWATCH_MODEL": "somebody-elses-model"}, data_dir=data)  # a model with no price
    finish(srv, {"tokens": 3})
    (agent,) = overview(srv)["agents"]
    assert (agent["agent"], agent["cost"], agent["unpriced"]) == ("demo", 0.0, 1)
    page = open_page(f"{srv.url}/#/overview?window=900")
    shown = page.locator('#overview-agents tr[data-agent="demo"] td.cost-cell')
    expect(shown).to_contain_text("$0")
    expect(shown.locator(".unpriced")).to_have_attribute("title", re.compile("1 run unpriced"))
    expect(shown).not_to_have_text(re.compile(r"^\s*\$0\s*$"))


def test_tokens_in_read_a_dash_while_the_first_step_streams(server, open_page):
    run = start_run(server, LONG_STEP)
    page = run_page(open_page, server, run)
    expect(row(page, "step-0")).to_have_attribute("data-state", "running", timeout=10_000)
    expect(counter(page, "tokens in")).to_have_text(NONE)
    finished(page, timeout=30_000)
    totals = replay(server, run)[-1]["totals"]
    expect(counter(page, "tokens in")).to_have_text(f"{totals['input_tokens']:,}")


def test_tokens_in_read_a_dash_everywhere_when_the_model_sends_no_usage(make_server, open_page, fake_model):
    srv = make_server(fake_model.env("llama3.1"))
    events = finish(srv, {"tokens": 12, "usage": False})
    run = events[0]["run_id"]
    (step,) = [e for e in events if e["type"] == "step.finished"]
    assert step["usage"]["estimated"], step
    page = run_page(open_page, srv, run)
    finished(page)
    expect(counter(page, "tokens in")).to_have_text(NONE)
    expect(counter(page, "tokens out")).to_have_text("≈12")
    row(page, "step-0").click()
    expect(fact(page, "input tokens")).to_have_text(NONE)
    listed = list_page(open_page, srv)
    expect(cell(listed, run, "tokens").locator("span")).to_have_attribute("title", f"{NONE} in, 12 out")


def test_tokens_in_say_at_least_when_a_cut_step_never_said(server, open_page):
    run = start_run(server, LONG_STEP | {"tool_calls": 1, "tool_seconds": 0.1})
    page = run_page(open_page, server, run)
    expect(row(page, "step-1")).to_have_attribute("data-state", "running", timeout=10_000)
    httpx.post(f"{server.url}/api/runs/{run}/cancel", json={}, headers=server.auth)
    finished(page, "cancelled")
    first, cut = [e for e in replay(server, run) if e["type"] == "step.finished"]
    assert cut["usage"]["estimated"] and not first["usage"]["estimated"]
    expect(counter(page, "tokens in")).to_have_text(f"≥{first['usage']['input_tokens']:,}")
