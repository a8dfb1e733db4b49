"""The runs list in real headless Chromium: search, filters and sort in the address bar, live
counters of running runs, the run id copied, keyboard use, the start form filled from the URL, a
phone's width, and axe-core's accessibility rules (light and dark).

The elements the tests (and anyone scripting the dashboard) rely on:

=================================  ================================================================
``#search``                        the search box (``q``; ``/`` focuses it)
``#filter-status`` ``-agent``      filters; ``#filter-range`` the time range (``1h``, ``24h``,
``-model``                         ``7d``); ``#sort`` (``created``, ``duration``, ``tokens``,
                                   ``cost``) and ``#order`` (``desc``, ``asc``)
``tr[data-run]``                   a run: ``data-status``; its cells ``td[data-col=…]``: ``status``,
                                   ``id``, ``agent``, ``model``, ``input``, ``error``, ``started``,
                                   ``duration``, ``tokens``, ``tools``, ``cost``
``button.copy``                    copies the run id (says "Copied ✓")
``tr.selected``                    the run ``j``/``k`` selected (``aria-current="true"``)
``#load-more``                     the next page
``#shortcuts``                     the keyboard shortcuts dialog (``?``)
=================================  ================================================================
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.pages import ARTIFACTS, PHONE, finish, start_run
from tests.browser.pages.runs_list import PRICED, SMALL_OUTPUT, cell, list_page, row, usd
from tests.harness.a11y import serious_violations

pytestmark = pytest.mark.timeout(90)


def test_search_finds_a_run_by_a_word_only_its_answer_has(make_server, open_page):
    srv = make_server()
    long = finish(srv, {"tokens": 20})[0]["run_id"]  # "…while watchers follow along…"
    short = finish(srv, {"tokens": 3})[0]["run_id"]  # "the agent streams"
    page = list_page(open_page, srv)
    expect(row(page, short)).to_have_count(1)
    page.fill("#search", "watch")
    expect(row(page, short)).to_have_count(0)
    expect(row(page, long)).to_have_count(1)
    expect(cell(page, long, "input")).to_contain_text("watchers")  # its answer's preview
    expect(page).to_have_url(re.compile(r"#/\?q=watch$"))
    page.fill("#search", short[:-2])  # a run id's prefix finds it too (ids of one moment share a start)
    expect(row(page, long)).to_have_count(0)
    expect(row(page, short)).to_have_count(1)


def test_filters_and_sort_survive_a_reload_and_the_back_button(make_server, open_page):
    srv = make_server()
    small = finish(srv, {"tokens": 5})[0]["run_id"]
    big = finish(srv, {"tokens": 60})[0]["run_id"]
    page = list_page(open_page, srv)
    rows = page.locator("tr[data-run]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-run", big)  # newest first
    page.select_option("#sort", "tokens")
    page.select_option("#order", "asc")
    expect(rows.first).to_have_attribute("data-run", small)
    page.select_option("#filter-status", "succeeded")
    expect(page).to_have_url(re.compile(r"#/\?status=succeeded&sort=tokens&order=asc$"))
    page.reload()
    expect(page.locator("#sort")).to_have_value("tokens")
    expect(page.locator("#order")).to_have_value("asc")
    expect(page.locator("#filter-status")).to_have_value("succeeded")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-run", small)
    expect(page.locator('th[aria-sort="ascending"]')).to_have_text(re.compile("Tokens"))
    page.go_back()  # before the status filter: sorted still
    expect(page.locator("#filter-status")).to_have_value("")
    expect(page.locator("#sort")).to_have_value("tokens")
    page.go_back()
    page.go_back()  # the list as it first was
    expect(page.locator("#sort")).to_have_value("created")
    expect(rows.first).to_have_attribute("data-run", big)


def test_a_time_range_asks_for_runs_since_then(server, open_page):
    page = list_page(open_page, server)
    with page.expect_request(re.compile(r".*/api/runs\?.*since=")) as asked:
        page.select_option("#filter-range", "24h")
    since = float(re.search(r"since=(\d+)", asked.value.url).group(1))
    now = page.evaluate("Date.now() / 1000")
    assert now - 86400 - 5 <= since <= now - 86400 + 1
    expect(page).to_have_url(re.compile(r"#/\?range=24h$"))
    page.reload()
    expect(page.locator("#filter-range")).to_have_value("24h")


def test_a_new_run_that_does_not_match_the_search_is_not_inserted(make_server, open_page):
    srv = make_server()
    page = list_page(open_page, srv, "?q=watchers")
    expect(page.locator("text=No runs match")).to_be_visible()
    other = start_run(srv, {"tokens": 3})
    match = start_run(srv, {"tokens": 20, "rate": 100})
    expect(cell(page, match, "status")).to_have_text("succeeded", timeout=15_000)
    expect(row(page, other)).to_have_count(0)
    page.fill("#search", "")
    expect(row(page, other)).to_have_count(1)  # it was there, only not matching


def test_live_counters_move_for_a_running_run(make_server, open_page):
    srv = make_server(PRICED)
    page = list_page(open_page, srv)
    run = start_run(srv, {"tokens": 150, "rate": 100, "tool_calls": 3, "tool_seconds": 0.5})
    expect(cell(page, run, "tools")).to_have_text("2", timeout=10_000)
    expect(row(page, run)).to_have_attribute("data-status", "running")  # counted live, not at the end
    tokens = int(cell(page, run, "tokens").inner_text().replace(",", ""))
    assert tokens > 0
    expect(cell(page, run, "cost")).to_have_text(re.compile(r"^\$0\.\d{4}$"))
    duration = cell(page, run, "duration").inner_text()
    expect(cell(page, run, "duration")).not_to_have_text(duration)  # it ticks
    expect(row(page, run)).to_have_attribute("data-status", "succeeded", timeout=15_000)
    summary = httpx.get(f"{srv.url}/api/runs/{run}", headers=srv.auth).json()
    expect(cell(page, run, "tools")).to_have_text("3")
    expect(cell(page, run, "tokens")).to_have_text(f"{summary['input_tokens'] + summary['output_tokens']:,}")
    expect(cell(page, run, "cost")).to_have_text(usd(summary["cost"]))


def test_the_copy_button_copies_the_run_id_and_says_so(make_server, open_page):
    srv = make_server()
    run = finish(srv, {"tokens": 3})[0]["run_id"]
    page = list_page(open_page, srv)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=srv.url)
    button = cell(page, run, "id").locator("button.copy")
    expect(button).to_have_accessible_name(f"Copy run id {run}")
    button.click()
    expect(button).to_have_text("Copied ✓")
    assert page.evaluate("navigator.clipboard.readText()") == run
    expect(page.locator("p.sr-only[role=status]")).to_have_text(f"Copied {run}")


def test_keyboard_slash_searches_j_k_select_and_enter_opens(make_server, open_page):
    srv = make_server()
    older = finish(srv, {"tokens": 3})[0]["run_id"]
    newer = finish(srv, {"tokens": 4})[0]["run_id"]
    page = list_page(open_page, srv)
    expect(page.locator("tr[data-run]")).to_have_count(2)
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    expect(page.locator("#search")).to_have_value("")  # the "/" was not typed
    page.keyboard.press("j")  # typing in the search box: a letter, not a shortcut
    expect(page.locator("#search")).to_have_value("j")
    page.fill("#search", "")
    page.locator("#search").blur()
    expect(page.locator("tr[data-run]")).to_have_count(2)
    page.keyboard.press("j")
    expect(page.locator("tr.selected")).to_have_attribute("data-run", newer)
    page.keyboard.press("j")
    expect(page.locator("tr.selected")).to_have_attribute("data-run", older)
    expect(page.locator("tr.selected")).to_have_attribute("aria-current", "true")
    page.keyboard.press("k")
    page.keyboard.press("j")
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("Select the next run")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#/runs/{older}$"))


def test_ctrl_enter_in_the_start_form_starts_the_run(server, open_page):
    page = list_page(open_page, server)
    expect(page.locator("#start-agent")).to_have_value("demo")
    page.fill("#start-input", json.dumps({"tokens": 5}))
    page.keyboard.press("Control+Enter")
    expect(page).to_have_url(re.compile(r"#/runs/\w+$"))
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=10_000)


def test_edit_and_run_prefills_the_form_from_the_url_and_focuses_it(server, open_page):
    text = "what is (2+3)*4? & what time is it in Europe/Paris?"
    page = list_page(open_page, server, f"?agent=demo&input={quote(text, safe='')}")
    expect(page.locator("#start-input")).to_have_value(text)
    expect(page.locator("#start-input")).to_be_focused()
    expect(page.locator("#start-agent")).to_have_value("demo")


def test_a_long_error_is_cut_with_the_full_text_a_click_away(make_server, open_page):
    srv = make_server(SMALL_OUTPUT)
    events = finish(srv, {"tokens": 100_000, "rate": 0})
    run, error = events[0]["run_id"], events[-1]["error"]
    assert len(error) > 100
    page = list_page(open_page, srv, "?status=failed")
    summary = cell(page, run, "error").locator("summary")
    expect(summary).to_have_text(error[:60] + "…")
    expect(summary).to_have_attribute("title", error)
    summary.click()
    expect(cell(page, run, "error").locator(".error-body")).to_have_text(error)


def test_an_unpriced_cost_is_a_dash_that_says_why(make_server, open_page):
    srv = make_server({"RUNWATCH_MODEL": "somebody-elses-model"})
    run = finish(srv, {"tokens": 3})[0]["run_id"]
    page = list_page(open_page, srv)
    cost = cell(page, run, "cost").locator(".unpriced")
    expect(cost).to_have_attribute("title", re.compile("unpriced"))
    expect(cost.locator('[aria-hidden="true"]')).to_have_text("—")
    expect(cost.locator(".sr-only")).to_contain_text("price table")
    expect(cell(page, run, "model")).to_have_text("somebody-elses-model")


def test_load_more_fetches_the_next_page(make_server, open_page):
    srv = make_server()
    with httpx.Client(base_url=srv.url, headers=srv.auth) as client:
        for _ in range(52):
            r = client.post("/api/runs", json={"agent": "demo", "input": '{"tokens": 1}'})
            assert r.status_code == 202, r.text
    page = list_page(open_page, srv)
    expect(page.locator("tr[data-run]")).to_have_count(50)
    page.click("#load-more")
    expect(page.locator("tr[data-run]")).to_have_count(52)
    expect(page.locator("#load-more")).to_be_hidden()


def test_on_a_phone_the_list_is_cards_without_horizontal_scrolling(make_server, open_page):
    srv = make_server(SMALL_OUTPUT)
    finish(srv, {"tokens": 100_000, "rate": 0})  # a long error
    start_run(srv, "tell me about " + "supercalifragilistic" * 12 + " and " + "everything " * 40)  # a long input
    page = list_page(open_page, srv)
    page.set_viewport_size(PHONE)
    expect(page.locator("tr[data-run]")).to_have_count(2)
    assert page.evaluate("getComputedStyle(document.querySelector('tr[data-run]')).display") == "grid"
    width = page.evaluate("document.querySelector('#start-input').getBoundingClientRect().width")
    assert width > 250, f"the start box is {width} px wide"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "runs-list-phone.png"), full_page=True)


def test_the_login_page_fits_a_phone(server, open_page):
    page = open_page(server.url + "/", as_admin=False)
    page.set_viewport_size(PHONE)
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_runs_list_has_no_serious_accessibility_violation(make_server, open_page, scheme):
    srv = make_server(SMALL_OUTPUT)
    finish(srv, {"tokens": 100_000, "rate": 0})
    finish(srv, {"tokens": 20})
    start_run(srv, {"tokens": 2000, "rate": 50})  # running while checked
    page = list_page(open_page, srv, color_scheme=scheme)
    expect(page.locator("tr[data-run]")).to_have_count(3)
    expect(page.locator('tr[data-status="running"]')).to_have_count(1, timeout=10_000)
    page.keyboard.press("j")  # a selected row too
    expect(page.locator("tr.selected")).to_have_count(1)
    assert serious_violations(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"runs-list-{scheme}.png"), full_page=True)
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    assert serious_violations(page) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_login_page_has_no_serious_accessibility_violation(server, open_page, scheme):
    page = open_page(server.url + "/", as_admin=False, color_scheme=scheme)
    expect(page.locator("#login")).to_be_visible()
    assert serious_violations(page) == []
