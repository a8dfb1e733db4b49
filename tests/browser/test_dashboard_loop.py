"""People in the loop on the dashboard, in real headless Chromium: two people (two browser contexts,
two API keys) see one approval; one decides and the other sees it resolved live; a denial's message
changes the model's answer; edited arguments are checked in the page and by the server; a message
interrupts a running answer; a finished run is continued in its thread; a viewer only watches.

The elements the tests (and anyone scripting the dashboard) rely on:

=================================  ================================================================
``#approvals``                     the run view's approval cards (hidden until the run asks one)
``.approval-card``                 one card: ``data-approval-id``, ``data-state`` = ``open``,
                                   ``approved``, ``denied``, ``expired`` or ``closed`` (the run ended)
``.approval-state``                "Waiting for a decision", "Approved by ada", "Denied by grace: …"
``.approve`` / ``.deny``           the decision buttons (operators only, gone once decided)
``.deny-reason``                   the reason sent with a denial (the model reads it)
``.edit-arguments``                shows ``.arguments-editor`` (the arguments as JSON, editable)
``.approval-error``                why a decision was refused (bad JSON here, or the server's reason)
``.arguments`` / ``.expires``      the arguments shown, and "expires at HH:MM:SS (in …)"
``#waiting-banner``                "Waiting for approval: N open" (role=status; empty otherwise)
``#steer``                         the message box: ``#message-text``, ``#message-mode`` (``queue``
                                   or ``interrupt``), ``#message-send``, ``#message-status``
``.said``                          a person's message in the answer ("ada said: …");
                                   ``.marker.interrupted`` where a message cut the answer
``#thread``                        the conversation: ``.turn[data-run]`` with ``.turn-input`` and
                                   ``.turn-answer``; ``#continue-text``, ``#continue-send``,
                                   ``#continue-error`` (finished runs, operators)
``#watchers``                      "Watching: ada (you), grace"
``#run-status``                    also ``waiting`` now (its own colour, as in the runs list)
=================================  ================================================================
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import ARTIFACTS, start_run
from tests.harness.identity import make_key

pytestmark = pytest.mark.timeout(90)

DEPLOY = {"tokens": 5, "approvals": 1}


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    """API keys of tenant "default": two operators, ada and grace, and a viewer, vera."""

    async def made() -> dict[str, str]:
        return {
            "ada": await make_key(server, "default", "operator", "ada"),
            "grace": await make_key(server, "default", "operator", "grace"),
            "vera": await make_key(server, "default", "viewer", "vera"),
        }

    return asyncio.run(made())


@pytest.fixture
def as_user(server, keys, open_page):
    """A page logged in as one of ``keys`` (its own browser context), on ``path`` of the server."""

    def make(name: str, path: str) -> Page:
        page = open_page("", login=server.url, as_admin=False)
        r = page.context.request.post(server.url + "/api/login", data={"key": keys[name]})
        assert r.ok, r.text()
        page.goto(server.url + path)
        return page

    return make


def admin(server, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, headers=server.auth, timeout=10)


def card(page: Page):
    return page.locator("#approvals .approval-card")


def test_two_people_see_one_approval_and_one_approves_it(server, as_user):
    run = start_run(server, DEPLOY)
    ada = as_user("ada", f"/#/runs/{run}")
    grace = as_user("grace", f"/#/runs/{run}")
    for page in (ada, grace):
        expect(card(page)).to_have_count(1)
        expect(card(page).locator(".name")).to_have_text("deploy")
        expect(card(page).locator(".reason")).to_have_text("deploy always needs approval")
        expect(card(page).locator(".arguments")).to_have_text(json.dumps({"version": "1.1.0"}, indent=2))
        expect(card(page).locator(".expires")).to_contain_text("expires at")
        expect(card(page).locator(".approval-state")).to_have_text("Waiting for a decision")
        expect(page.locator("#run-status")).to_have_text("waiting")
        expect(page.locator("#waiting-banner")).to_have_text("Waiting for approval: 1 open")
        expect(page.locator("#waiting-banner")).to_have_attribute("role", "status")
        # Both are in the watchers list of both pages.
        expect(page.locator("#watchers")).to_contain_text("ada")
        expect(page.locator("#watchers")).to_contain_text("grace")
    expect(ada.locator("#watchers")).to_contain_text("ada (you)")
    expect(grace.locator("#watchers")).to_contain_text("grace (you)")
    ARTIFACTS.mkdir(exist_ok=True)
    card(ada).screenshot(path=str(ARTIFACTS / "approval-card.png"))

    # grace loses the race (her page gets the server's 409 already_decided: a race cannot be timed from
    # here): her card says so and waits for the first decision's event, without offering the buttons again.
    def second(route) -> None:
        route.fulfill(status=409, json={"status_code": 409, "code": "already_decided", "detail": "already decided"})

    grace.route("**/api/runs/*/approvals/*", second)
    card(grace).locator(".deny").click()
    expect(card(grace).locator(".approval-error")).to_have_text("Someone decided first; their decision is on its way.")
    expect(card(grace).locator(".deny")).to_be_disabled()
    card(ada).locator(".approve").click()
    for page in (grace, ada):  # grace's page changes live, from the run's approval.resolved
        expect(card(page)).to_have_attribute("data-state", "approved")
        expect(card(page).locator(".approval-state")).to_have_text("Approved by ada")
        expect(card(page).locator(".approve")).to_be_hidden()
        expect(card(page).locator(".deny")).to_be_hidden()
        expect(page.locator("#run-status")).to_have_text("succeeded", timeout=10_000)
        expect(page.locator("#waiting-banner")).to_have_text("")
        expect(page.locator(".answer")).to_contain_text("deploy answered")
        expect(page.locator('#trace-tree .trace-row[data-kind="tool"]')).to_have_attribute("data-state", "done")
    assert card(grace).count() == 1  # never a second card for the same approval


def test_a_denial_with_a_reason_changes_the_answer(server, as_user):
    run = start_run(server, DEPLOY)
    ada = as_user("ada", f"/#/runs/{run}")
    grace = as_user("grace", f"/#/runs/{run}")
    expect(card(grace)).to_have_count(1)
    card(ada).locator(".deny-reason").fill("not on Fridays")
    card(ada).locator(".deny").click()
    for page in (ada, grace):
        expect(card(page).locator(".approval-state")).to_have_text("Denied by ada: not on Fridays")
        expect(page.locator("#run-status")).to_have_text("succeeded", timeout=10_000)
        expect(page.locator(".answer")).to_contain_text("not on Fridays")
        tool = page.locator('#trace-tree .trace-row[data-kind="tool"]')
        expect(tool).to_have_attribute("data-state", "denied")
        expect(tool.locator(".trace-state")).to_have_text("denied")
        tool.click()  # its details: what the model was told
        expect(page.locator("#detail")).to_contain_text("not on Fridays")


def test_edited_arguments_are_checked_in_the_page_then_by_the_server(server, as_user):
    run = start_run(server, DEPLOY)
    ada = as_user("ada", f"/#/runs/{run}")
    one = card(ada)
    expect(one).to_have_count(1)
    posts: list[str] = []
    ada.on("request", lambda r: posts.append(r.url) if "/approvals/" in r.url else None)
    one.locator(".edit-arguments").click()
    editor = one.locator(".arguments-editor")
    expect(editor).to_be_visible()
    expect(editor).to_have_value(json.dumps({"version": "1.1.0"}, indent=2))
    expect(one.locator(".edit-arguments")).to_have_attribute("aria-expanded", "true")

    editor.fill('{"version": ')
    one.locator(".approve").click()
    expect(one.locator(".approval-error")).to_contain_text("not valid JSON")
    expect(editor).to_have_attribute("aria-invalid", "true")
    assert posts == []  # refused before asking the server

    editor.fill('{"version": 7}')
    one.locator(".approve").click()
    # The server's reason (422 invalid_arguments), word for word.
    expect(one.locator(".approval-error")).to_have_text(
        "Refused: invalid arguments for deploy: Expected `str`, got `int` - at `$.version`"
    )
    expect(editor).to_have_attribute("aria-invalid", "true")
    expect(one).to_have_attribute("data-state", "open")
    assert len(posts) == 1
    expect(one.locator(".approve")).to_be_enabled()  # try again

    editor.fill('{"version": "2.0.0"}')
    one.locator(".approve").click()
    expect(one.locator(".approval-state")).to_have_text("Approved by ada with edited arguments")
    expect(one.locator(".arguments")).to_have_text(json.dumps({"version": "2.0.0"}, indent=2))
    expect(ada.locator("#run-status")).to_have_text("succeeded", timeout=10_000)
    tool = ada.locator('#trace-tree .trace-row[data-kind="tool"]')
    expect(tool).to_have_attribute("data-state", "done")
    tool.click()  # its details: the result
    expect(ada.locator("#detail")).to_contain_text('"deployed": "2.0.0"')
    expect(ada.locator(".answer")).to_contain_text("2.0.0")


def test_a_message_interrupts_the_running_answer(server, as_user):
    run = start_run(server, {"tokens": 100_000, "rate": 50})
    ada = as_user("ada", f"/#/runs/{run}")
    expect(ada.locator(".answer")).to_contain_text("the agent", timeout=10_000)
    expect(ada.locator("#steer")).to_be_visible()
    ada.select_option("#message-mode", "interrupt")
    ada.fill("#message-text", "stop and greet me")
    ada.click("#message-send")
    expect(ada.locator("#message-status")).to_contain_text("Sent")
    expect(ada.locator("#message-text")).to_have_value("")
    said = ada.locator(".answer .said")
    expect(said).to_have_count(1)
    expect(said).to_contain_text("ada said: stop and greet me")
    expect(ada.locator(".answer .marker.interrupted")).to_have_count(1)
    expect(ada.locator(".answer")).to_contain_text('You said: "stop and greet me"', timeout=10_000)
    expect(ada.locator('#trace-tree .trace-row[data-kind="step"][data-state="interrupted"] .trace-state')).to_have_text(
        "interrupted"
    )
    expect(ada.locator("#run-status")).to_have_text("succeeded", timeout=10_000)
    expect(ada.locator("#steer")).to_be_hidden()
    text = ada.locator(".answer").inner_text()
    assert text.index("ada said") < text.index("You said")  # the message sits where it came in


def test_continue_a_finished_run_in_its_thread(server, as_user):
    first = start_run(server, "My favourite colour is teal.")
    ada = as_user("ada", f"/#/runs/{first}")
    expect(ada.locator("#run-status")).to_have_text("succeeded", timeout=15_000)
    expect(ada.locator("#continue-text")).to_be_visible()
    ada.fill("#continue-text", "What did I tell you?")
    ada.click("#continue-send")
    expect(ada).not_to_have_url(re.compile(f"#/runs/{first}$"))  # the page went to the new run
    second = ada.url.rsplit("/", 1)[1]
    expect(ada.locator("#run-status")).to_have_text("succeeded", timeout=15_000)
    expect(ada.locator(".answer")).to_contain_text(
        'Earlier in this conversation you said: "My favourite colour is teal."'
    )
    turns = ada.locator("#thread .turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0)).to_have_attribute("data-run", first)
    expect(turns.nth(0).locator(".turn-input")).to_have_text("My favourite colour is teal.")
    expect(turns.nth(0).locator(".turn-answer")).to_contain_text("You asked: My favourite colour is teal.")
    expect(turns.nth(0).locator(f'a[href="#/runs/{first}"]')).to_be_visible()
    expect(turns.nth(1)).to_have_attribute("aria-current", "page")
    expect(turns.nth(1).locator(".turn-input")).to_have_text("What did I tell you?")
    summary = admin(server, "GET", f"/api/runs/{second}").json()
    assert summary["thread"] == admin(server, "GET", f"/api/runs/{first}").json()["thread"]


def test_a_viewer_sees_the_approvals_but_cannot_decide_or_message(server, as_user):
    run = start_run(server, {"tokens": 3, "approvals": 2, "parallel": True})
    vera = as_user("vera", f"/#/runs/{run}")
    expect(card(vera)).to_have_count(2)
    expect(vera.locator("#waiting-banner")).to_have_text("Waiting for approval: 2 open")
    expect(vera.locator("#run-status")).to_have_text("waiting")
    expect(vera.locator("#approvals .approve, #approvals .deny, #approvals .edit-arguments")).to_have_count(0)
    expect(vera.locator("#steer")).to_be_hidden()
    expect(vera.locator("#cancel-run")).to_be_hidden()
    expect(vera.locator("#watchers")).to_contain_text("vera (you)")
    # The admin decides one, then cancels the run: the other shows as closed, not decidable.
    first = card(vera).first.get_attribute("data-approval-id")
    assert admin(server, "POST", f"/api/runs/{run}/approvals/{first}", {"decision": "approve"}).status_code == 200
    expect(card(vera).first).to_have_attribute("data-state", "approved")
    expect(vera.locator("#waiting-banner")).to_have_text("Waiting for approval: 1 open")
    expect(vera.locator("#run-status")).to_have_text("waiting")
    assert admin(server, "POST", f"/api/runs/{run}/cancel", {}).status_code == 202
    expect(vera.locator("#run-status")).to_have_text("cancelled", timeout=10_000)
    expect(card(vera).nth(1)).to_have_attribute("data-state", "closed")
    expect(card(vera).nth(1).locator(".approval-state")).to_have_text("Closed: the run ended without a decision")
    expect(vera.locator("#waiting-banner")).to_have_text("")
    expect(vera.locator("#continue")).to_be_hidden()


def test_the_runs_list_shows_waiting_live(server, as_user):
    ada = as_user("ada", "/")
    expect(ada.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    run = start_run(server, DEPLOY)
    row = ada.locator(f'tr[data-run="{run}"]')
    expect(row).to_have_attribute("data-status", "waiting", timeout=10_000)
    expect(row.locator(".status")).to_have_text("waiting")
    approval = admin(server, "GET", f"/api/runs/{run}/events?after=0").json()["events"]
    approval_id = next(e["approval_id"] for e in approval if e["type"] == "approval.requested")
    assert admin(server, "POST", f"/api/runs/{run}/approvals/{approval_id}", {"decision": "approve"}).status_code == 200
    expect(row).to_have_attribute("data-status", "succeeded", timeout=10_000)


def test_after_a_reconnect_the_approval_is_still_one_card_and_resolves_live(server, keys, open_page):
    routes = []

    def proxy(ws) -> None:
        routes.append((ws, ws.connect_to_server()))

    page = open_page("", login=server.url, as_admin=False)
    assert page.context.request.post(server.url + "/api/login", data={"key": keys["ada"]}).ok
    page.route_web_socket(re.compile(r".*/ws$"), proxy)
    run = start_run(server, DEPLOY)
    page.goto(f"{server.url}/#/runs/{run}")
    expect(card(page)).to_have_count(1)
    to_page, to_server = routes[-1]
    to_server.close()  # the connection drops while the run waits…
    to_page.close(code=1012, reason="server restart")
    card(page).locator(".approve").click()  # …a decision still goes through (REST)…
    # …and its approval.resolved comes on the new socket.
    expect(card(page).locator(".approval-state")).to_have_text("Approved by ada")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=10_000)
    expect(card(page)).to_have_count(1)
    expect(page.locator("#watchers")).to_have_text("Watching: ada (you)")
    assert len(routes) >= 2, "the page did not reconnect"
