"""What every browser test does besides opening pages: start runs, read the answer, save pictures.

The room holds the pages' helpers too: ``run_view`` (the run view's elements the tests rely on)
and ``runs_list`` (the runs list's)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import httpx
from playwright.sync_api import Page

from runwatch.agents.offline.model import scenario_text
from tests.conftest import ROOT

#: Screenshots of the dashboard, saved on every run.
ARTIFACTS = ROOT / "tests" / "artifacts"
#: A phone's screen.
PHONE = {"width": 390, "height": 844}


def start_run(server, user_input: str | dict, agent: str = "demo") -> str:
    text = user_input if isinstance(user_input, str) else json.dumps(user_input)
    r = httpx.post(server.url + "/api/runs", json={"agent": agent, "input": text}, headers=server.auth)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def answer_text(page: Page) -> str:
    return page.locator(".answer").inner_text().strip()


def expected_text(tokens: int) -> str:
    return "".join(scenario_text(tokens)).strip()


def finish(server, user_input: str | dict) -> list[dict]:
    """Start a run and return its events once it has finished (watched over the WebSocket)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, server.run_to_end(user_input)).result(timeout=60)
