"""Runs of an agent that runs elsewhere, in real headless Chromium: a separate process
(``agents/external_agent.py``, with ``runwatch.client``) reports three runs of ``billing-bot``, and a person
logged in as an operator of the same tenant watches, cancels and approves them on the dashboard.

One agent process and one page serve the module's tests, in order: the last one stops the agent.

The elements the tests (and anyone scripting the dashboard) rely on:

=====================================  ============================================================
``.badge.external``                    "external": beside the agent of a run (list, run view,
                                       overview) or an agent (agents page) that runs elsewhere
``#run-source``                        an external run: who reports it and which controls it takes
``#trace-source``                      the trace's note that an external agent reported it
``#agents-window button``              the agents page's time window (as the overview's)
``#agents-body tr[data-agent]``        one agent: ``data-external``, ``data-state`` (``active``,
                                       ``idle``, ``stale``); cells ``td[data-col]``: ``agent``,
                                       ``state``, ``running``, ``runs``, ``error-rate``,
                                       ``duration``, ``heartbeat`` (``data-value``: the figure)
=====================================  ============================================================
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.pages import ARTIFACTS
from tests.browser.pages.runs_list import cell
from tests.conftest import ROOT, Server
from tests.harness.a11y import serious_violations
from tests.harness.identity import make_key

pytestmark = pytest.mark.timeout(90)

SCRIPT = Path(__file__).with_name("agents") / "external_agent.py"
AGENT = "billing-bot"


class ExternalAgent:
    """The agent's process, and what it says (one JSON object a line), read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        #: Its runs' ids: ``stream``, ``approval``, ``watch``.
        self.runs: dict[str, str] = self.said("runs", timeout=30)["runs"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))

    def said(self, key: str, timeout: float = 10) -> dict:
        """The next line that has ``key`` (earlier lines without it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the agent said nothing with {key!r} in {timeout} s") from None
            if key in line:
                return line


def _sync(coroutine):
    """Run ``coroutine`` to its end from this (Playwright's synchronous) test."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


@pytest.fixture(scope="module")
def keys(server: Server) -> dict[str, str]:
    """An operator key and an agent key of a tenant of this module's own."""
    tenant = f"ext{secrets.token_hex(4)}"

    async def made() -> dict[str, str]:
        return {
            "operator": await make_key(server, tenant, "operator", "ada"),
            "agent": await make_key(server, tenant, "agent", AGENT),
        }

    return _sync(made())


@pytest.fixture(scope="module")
def agent(server: Server, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalAgent]:
    errors = (tmp_path_factory.mktemp("agent") / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), server.url, keys["agent"]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    try:
        yield ExternalAgent(proc)
    finally:
        proc.kill()
        proc.wait(10)
        errors.close()


@pytest.fixture(scope="module")
def own_run(server: Server, keys: dict[str, str]) -> dict:
    """A run of runwatch's own demo agent in the tenant, finished: its summary."""

    async def run() -> dict:
        w = await server.watcher(keys["operator"])
        try:
            async with server.client(keys["operator"]) as c:
                r = await c.post("/api/runs", json={"agent": "demo", "input": '{"tokens": 3}'})
                assert r.status_code == 202, r.text
                await w.subscribe(r.json()["id"])
                await w.until_finished(r.json()["id"])
                return (await c.get(f"/api/runs/{r.json()['id']}")).json()
        finally:
            await w.close()

    return _sync(run())


@pytest.fixture(scope="module")
def page(browser: Browser, server: Server, keys: dict[str, str]) -> Iterator[Page]:
    """One page of the module, logged in as the tenant's operator; a script error on it fails the module."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    assert context.request.post(server.url + "/api/login", data={"key": keys["operator"]}).ok
    shown = context.new_page()
    errors: list[str] = []
    shown.on("pageerror", lambda exc: errors.append(str(exc)))
    yield shown
    context.close()
    assert not errors, f"script errors: {errors}"


def open_run(page: Page, server: Server, run: str) -> None:
    page.goto(f"{server.url}/#/runs/{run}")
    expect(page.locator("#view h1")).to_have_text(f"Run {run}")


def test_an_external_run_is_marked_with_its_agent_and_streams_live(server, page, agent):
    run = agent.runs["stream"]
    page.goto(f"{server.url}/#/")
    expect(cell(page, run, "agent")).to_have_text(f"{AGENT} external")
    expect(cell(page, run, "agent").locator(".badge.external")).to_have_attribute(
        "title", "External: an agent running elsewhere reports it (the ingest API)"
    )
    cell(page, run, "input").locator("a").click()
    expect(page.locator(".run-meta")).to_contain_text(AGENT)
    expect(page.locator(".run-meta .badge.external")).to_have_text("external")
    expect(page.locator("#run-source")).to_contain_text(
        f"{AGENT} runs elsewhere and reports this run. It takes cancels and messages;"
    )
    expect(page.locator("#trace-source")).to_contain_text(f"as {AGENT} (external) reported them")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("#rerun")).to_be_hidden()  # (runwatch cannot run an agent that runs elsewhere)
    expect(page.locator("#cancel-run")).to_be_visible()
    expect(page.locator("#steer")).to_be_visible()
    expect(page.locator(".answer")).to_contain_text("tok3")
    so_far = page.locator(".answer").inner_text().count("tok")
    expect(page.locator(".answer")).to_contain_text(f"tok{so_far + 5} ")  # still streaming, live
    assert serious_violations(page) == []


def test_cancel_pressed_in_the_dashboard_stops_the_agent_within_a_second(server, page, agent):
    run = agent.runs["stream"]
    open_run(page, server, run)
    expect(page.locator(".answer")).to_contain_text("tok")
    page.click("#cancel-run")
    confirm = page.locator("dialog[open] button.danger")
    expect(confirm).to_be_visible()
    pressed = time.time()
    confirm.click()
    seen = agent.said("cancelled")
    assert seen["cancelled"] == run
    assert seen["at"] - pressed < 1.0, f"the agent saw the cancel {seen['at'] - pressed:.3f} s after the click"
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#cancel-run")).to_be_hidden()


def test_an_approval_the_agent_asked_for_is_approved_with_edited_arguments(server, page, agent):
    run = agent.runs["approval"]
    open_run(page, server, run)
    card = page.locator("#approvals .approval-card")
    expect(card.locator(".name")).to_have_text("send_report")
    expect(card.locator(".reason")).to_have_text("emails the report outside the team")
    expect(card.locator(".arguments")).to_have_text(json.dumps({"to": "cfo@acme.test"}, indent=2))
    card.locator(".edit-arguments").click()
    card.locator(".arguments-editor").fill(json.dumps({"to": "board@acme.test"}))
    card.locator(".approve").click()
    assert agent.said("decision") == {"decision": "approved", "arguments": {"to": "board@acme.test"}, "run": run}
    expect(card).to_have_attribute("data-state", "approved")
    expect(card.locator(".approval-state")).to_have_text("Approved by ada with edited arguments")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "external-run.png"))
    expect(page.locator('#trace-tree .trace-row[data-id="tool-call_1"]')).to_have_attribute("data-state", "done")


def test_an_observe_only_run_has_no_cancel_button_and_no_message_box(server, page, agent):
    run = agent.runs["watch"]
    open_run(page, server, run)
    expect(page.locator(".answer")).to_contain_text("seen2")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("#run-source")).to_contain_text("It takes no cancel and no message;")
    expect(page.locator("#cancel-run")).to_be_hidden()
    expect(page.locator("#steer")).to_be_hidden()


def test_search_and_the_overview_show_external_runs_marked(server, page, agent):
    page.goto(f"{server.url}/#/?q=watch")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(cell(page, agent.runs["watch"], "agent").locator(".badge.external")).to_have_text("external")
    page.click("#nav >> text=Overview")
    expect(page.locator(f'#overview-agents tr[data-agent="{AGENT}"] .badge.external')).to_have_text("external")


def test_the_agents_page_lists_both_agents_and_the_external_one_goes_stale_once_it_stops(
    server, page, agent, keys, own_run
):
    page.goto(f"{server.url}/#/")
    page.click("#nav >> text=Agents")
    bot = page.locator(f'#agents-body tr[data-agent="{AGENT}"]')
    demo = page.locator('#agents-body tr[data-agent="demo"]')
    expect(bot).to_have_attribute("data-state", "active")
    expect(bot.locator('[data-col="agent"] .badge.external')).to_have_text("external")
    expect(demo).to_have_attribute("data-external", "false")
    expect(demo.locator(".badge.external")).to_have_count(0)
    # The page shows the endpoint's figures.
    figures = {
        a["name"]: a
        for a in httpx.get(
            f"{server.url}/api/agents/activity", headers={"Authorization": f"Bearer {keys['operator']}"}
        ).json()["agents"]
    }
    assert set(figures) == {AGENT, "demo"}
    for row, name in ((bot, AGENT), (demo, "demo")):
        expect(row.locator('[data-col="runs"]')).to_have_text(str(figures[name]["runs"]))
        expect(row.locator('[data-col="running"]')).to_contain_text(str(figures[name]["running"]))
        expect(row.locator('[data-col="error-rate"]')).to_have_text(f"{round(figures[name]['error_rate'] * 100)}%")
    expect(bot.locator('[data-col="runs"]')).to_have_text("3")
    expect(demo).to_have_attribute("data-state", "idle")
    expect(demo.locator('[data-col="runs"]')).to_have_text("1")
    expect(demo.locator('[data-col="error-rate"]')).to_have_text("0%")
    duration = own_run["finished_at"] - own_run["started_at"]
    assert float(demo.locator('[data-col="duration"]').get_attribute("data-value")) == pytest.approx(duration, abs=1e-3)
    expect(bot.locator('[data-col="heartbeat"] time')).to_have_text("just now")
    assert serious_violations(page) == []
    agent.proc.kill()  # it stops: no post, no poll; its watch run's lease (1 s) runs out
    expect(bot).to_have_attribute("data-state", "stale", timeout=5_000)
    expect(bot.locator('[data-col="state"]')).to_have_text("stale")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "agents.png"))
