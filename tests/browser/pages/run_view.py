"""The run view (``#/runs/ID``) as its tests read it: the trace's rows, the detail panel's facts,
the header's counters, and the run's events as the REST replay gives them.

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

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import Server

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
