"""The runs list (``#/``) as its tests read it: a run's row and cells, the money format, and the
server settings the list and overview tests start servers with."""

from __future__ import annotations

import json

from playwright.sync_api import Page, expect

#: The offline model at $100 per million input tokens and $200 per million output tokens: a step
#: costs about a cent, so costs show as "$0.00xx".
PRICED = {"RUNWATCH_PRICES": json.dumps({"runwatch-offline": {"input": 100.0, "output": 200.0}})}
#: A run of ``{"tokens": 100000, "rate": 0}`` fails on this limit, with a long error.
SMALL_OUTPUT = {"RUNWATCH_MAX_OUTPUT_BYTES": "2000"}


def usd(cost: float | None) -> str:
    """The dashboard's money format (dom.js ``usd``)."""
    if cost is None:
        return "—"
    if cost == 0:
        return "$0"
    if cost >= 1:
        return f"${cost:.2f}"
    return f"${cost:.4f}" if cost >= 0.0001 else "<$0.0001"


def row(page: Page, run: str):
    return page.locator(f'tr[data-run="{run}"]')


def cell(page: Page, run: str, column: str):
    return row(page, run).locator(f'td[data-col="{column}"]')


def list_page(open_page, server, query: str = "", **kwargs) -> Page:
    page = open_page(f"{server.url}/#/{query}", **kwargs)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    return page
