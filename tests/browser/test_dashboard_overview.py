"""The overview page (``#/overview``) in real headless Chromium: its figures against the runs a
test started, its time window in the address bar, its empty state, its live refresh, a phone's
width, and axe-core's accessibility rules (light and dark).

The elements the tests rely on:

=================================  ================================================================
``#overview-window button``        the time window (``data-window`` seconds, ``aria-pressed``)
``[data-figure=…] .v``             ``runs``, ``success-rate``, ``duration``, ``ttft``, ``queue``
``figure.chart``                   runs per minute (``data-total``: the runs it draws)
``#overview-models tr[data-model]``  output tokens/s and cost by model
``#overview-agents tr[data-agent]``  runs, failures and cost by agent (``data-value``: USD)
``#overview-instances .instance``  each instance's slots in use
=================================  ================================================================
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import ARTIFACTS, PHONE, finish, start_run
from tests.browser.pages.runs_list import PRICED, SMALL_OUTPUT, usd
from tests.harness.a11y import serious_violations

pytestmark = pytest.mark.timeout(90)


def overview(open_page, server, query: str = "", **kwargs) -> Page:
    page = open_page(f"{server.url}/#/overview{query}", **kwargs)
    expect(page.locator("#overview-body .figures")).to_be_visible(timeout=10_000)
    return page


#: What a figure shows when there is nothing to show (dom.js: an en dash).
NOTHING = "\u2013"


def figure(page: Page, name: str):
    return page.locator(f'[data-figure="{name}"] .v')


def test_the_figures_match_the_runs_started(make_server, open_page):
    srv = make_server(PRICED | SMALL_OUTPUT)
    runs = [finish(srv, {"tokens": 20}) for _ in range(3)] + [finish(srv, {"tokens": 100_000, "rate": 0})]
    assert [r[-1]["status"] for r in runs] == ["succeeded"] * 3 + ["failed"]
    cost = sum(r[-1]["totals"]["cost"] for r in runs)
    page = overview(open_page, srv)
    expect(figure(page, "runs")).to_have_text("4")
    expect(figure(page, "success-rate")).to_have_text("75%")
    expect(page.locator('[data-figure="success-rate"]')).to_contain_text("3 of 4 finished runs")
    expect(page.locator("figure.chart")).to_have_attribute("data-total", "4")
    agent = page.locator('#overview-agents tr[data-agent="demo"]')
    expect(agent.locator("td").nth(1)).to_have_text("4")
    expect(agent.locator("td").nth(2)).to_have_text("1")
    assert float(agent.locator("td[data-value]").get_attribute("data-value")) == pytest.approx(cost)
    expect(agent.locator("td[data-value]")).to_have_text(usd(cost))
    expect(page.locator('#overview-models tr[data-model="runwatch-offline"]')).to_be_visible()
    expect(figure(page, "duration")).not_to_have_text(NOTHING)
    expect(page.locator("#overview-instances .instance")).to_contain_text(re.compile(r"0 of \d+ slots busy"))


def test_the_window_is_in_the_address_bar_and_survives_a_reload(server, open_page):
    page = overview(open_page, server)
    expect(page.locator('#overview-window button[aria-pressed="true"]')).to_have_text("1 h")
    page.click('#overview-window button[data-window="86400"]')
    expect(page).to_have_url(re.compile(r"#/overview\?window=86400$"))
    expect(page.locator('[data-figure="runs"] .k')).to_have_text("runs in the last 24 hours")
    page.reload()
    expect(page.locator('#overview-window button[aria-pressed="true"]')).to_have_text("24 h")
    page.go_back()
    expect(page.locator('#overview-window button[aria-pressed="true"]')).to_have_text("1 h")
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Overview")


def test_updated_says_when_the_figures_were_read_not_when_the_last_bar_ends(server, open_page):
    page = overview(open_page, server, "?window=604800")  # (7 d: bars of 2 h 48 min)
    updated = page.locator("#overview-updated time")
    expect(updated).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    shown = page.evaluate("Date.parse(document.querySelector('#overview-updated time').dateTime) / 1000")
    assert abs(shown - time.time()) < 30


def test_with_no_runs_it_says_what_to_do(make_server, open_page):
    srv = make_server()
    page = overview(open_page, srv)
    expect(page.locator(".empty-state")).to_have_text("No runs in the last hour — start one from Runs.")
    expect(figure(page, "success-rate")).to_have_text(NOTHING)
    page.locator(".empty-state a").click()
    expect(page.locator("#start-input")).to_be_visible()


def test_it_refreshes_by_itself_while_visible(make_server, open_page):
    srv = make_server()
    page = open_page("", login=srv.url)
    page.clock.install()
    page.goto(f"{srv.url}/#/overview")
    expect(figure(page, "runs")).to_have_text("0", timeout=10_000)
    finish(srv, {"tokens": 5})
    with page.expect_response(re.compile(r".*/api/overview\?window=3600$")):
        page.clock.run_for(10_500)
    expect(figure(page, "runs")).to_have_text("1")


def test_the_top_bar_links_the_runs_list_and_the_overview(server, open_page):
    page = open_page(server.url + "/")
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Runs")
    page.click("#nav >> text=Overview")
    expect(page).to_have_url(re.compile(r"#/overview$"))
    expect(page.locator("#overview-body .figures")).to_be_visible()
    page.click("#nav >> text=Runs")
    expect(page.locator("#search")).to_be_visible()


def test_on_a_phone_the_overview_has_no_horizontal_scrolling(make_server, open_page):
    srv = make_server(PRICED)
    finish(srv, {"tokens": 20, "tool_calls": 1})
    page = overview(open_page, srv, color_scheme="dark")
    page.set_viewport_size(PHONE)
    expect(figure(page, "runs")).to_have_text("1")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "overview-phone.png"), full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_overview_has_no_serious_accessibility_violation(make_server, open_page, scheme):
    srv = make_server(PRICED | SMALL_OUTPUT)
    finish(srv, {"tokens": 20, "tool_calls": 1})
    finish(srv, {"tokens": 20})
    finish(srv, {"tokens": 100_000, "rate": 0})
    start_run(srv, {"tokens": 2000, "rate": 50})  # running while checked
    assert httpx.get(f"{srv.url}/api/overview", headers=srv.auth).json()["runs"]["total"] == 4
    page = overview(open_page, srv, color_scheme=scheme)
    expect(figure(page, "runs")).to_have_text("4")
    assert serious_violations(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"overview-{scheme}.png"), full_page=True)
