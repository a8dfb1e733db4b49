"""The dashboard in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Screenshots of the runs list and a run view are saved to ``tests/artifacts/`` on every run.
"""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from tests.browser.pages import ARTIFACTS, answer_text, expected_text, start_run


def test_start_a_run_from_the_form_and_watch_tokens_and_a_tool_call(server, open_page):
    page = open_page(server.url + "/")
    expect(page.locator("#start-agent")).to_have_value("demo")
    page.fill("#start-input", json.dumps({"tokens": 120, "rate": 60, "tool_calls": 1, "tool_seconds": 0.5}))
    page.click("form.start button[type=submit]")
    expect(page).to_have_url(re.compile(r"#/runs/\w+$"))
    call = page.locator('#trace-tree .trace-row[data-kind="tool"]')  # the tool call, in the trace
    expect(call).to_have_count(1)
    expect(call.locator(".trace-label")).to_have_text("wait")
    call.click()  # its details: the arguments
    expect(page.locator("#detail")).to_contain_text('"seconds": 0.5')
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator(".answer")).to_contain_text("the agent streams", timeout=10_000)
    assert len(answer_text(page)) < len(expected_text(120))  # caught mid-stream
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=15_000)
    assert answer_text(page) == expected_text(120)
    expect(call).to_have_attribute("data-state", "done")
    expect(page.locator("#trace-tree .trace-row")).to_have_count(3)  # two LLM steps and the tool call
    expect(page.locator('[data-counter="tool calls"] .v')).to_have_text("1")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-view.png"), full_page=True)


def test_an_empty_input_is_refused_by_the_form_with_a_reason(server, open_page):
    page = open_page(server.url + "/")
    expect(page.locator("#start-agent")).to_have_value("demo")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.fill("#start-input", "   ")
    page.click("form.start button[type=submit]")
    expect(page.locator("p.error-text")).to_have_text("The input is empty: say what the agent should do.")
    expect(page.locator("#start-input")).to_be_focused()
    assert posts == [] and "#/runs/" not in page.url


def test_a_refused_start_shows_the_servers_reason(server, open_page):
    page = open_page(server.url + "/")
    expect(page.locator("#start-agent")).to_have_value("demo")
    page.fill("#start-input", "x" * (256 * 1024 + 1))
    page.click("form.start button[type=submit]")
    expect(page.locator("p.error-text")).to_contain_text(
        "the limit is 262144 bytes (RUNWATCH_MAX_INPUT_BYTES) (HTTP 413)"
    )


def test_an_unknown_run_gets_a_not_found_page_not_a_failed_status(server, open_page):
    page = open_page(f"{server.url}/#/runs/{'0' * 21}")
    expect(page.locator("#not-found h1")).to_have_text("Run not found")
    expect(page.locator("#not-found")).to_contain_text(f"There is no run {'0' * 21}")
    expect(page.locator("#run-status")).to_have_count(0)
    page.click("#not-found a")
    expect(page.locator("#start-agent")).to_have_value("demo")  # back on the runs list


def test_a_second_page_on_the_same_run_shows_the_same_text(server, open_page):
    run = start_run(server, {"tokens": 200, "rate": 100})
    first = open_page(f"{server.url}/#/runs/{run}")
    expect(first.locator(".answer")).to_contain_text("the agent", timeout=10_000)
    second = open_page(f"{server.url}/#/runs/{run}")  # opened mid-run: everything so far, then live
    for page in (first, second):
        expect(page.locator("#run-status")).to_have_text("succeeded", timeout=15_000)
    assert answer_text(first) == answer_text(second) == expected_text(200)


def test_cancel_from_the_ui_shows_cancelling_then_cancelled(server, open_page):
    run = start_run(server, {"tokens": 100_000, "rate": 20})
    page = open_page(f"{server.url}/#/runs/{run}")
    expect(page.locator(".answer")).to_contain_text("the", timeout=10_000)
    page.click("#cancel-run")
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Cancel this run?")
    # The request is held until the UI has shown "cancelling…", so the test sees the in-between state.
    held = []
    page.route(f"**/api/runs/{run}/cancel", lambda route: held.append(route))
    with page.expect_request(f"**/api/runs/{run}/cancel"):
        dialog.locator("button.danger").click()
    expect(page.locator("#run-status")).to_have_text("cancelling…")
    expect(page.locator("#run-status")).to_have_class(re.compile("cancelling"))
    assert held, "the cancel request was not sent"
    held[0].continue_()
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=5_000)
    expect(page.locator("#cancel-run")).to_be_hidden()


def test_keeping_the_run_in_the_dialog_does_not_cancel(server, open_page):
    run = start_run(server, {"tokens": 40, "rate": 20})
    page = open_page(f"{server.url}/#/runs/{run}")
    page.click("#cancel-run")
    page.locator("dialog[open]").locator("text=Keep running").click()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=15_000)


def test_a_dropped_websocket_resumes_without_duplicated_text(server, open_page):
    routes = []

    def proxy(ws):
        routes.append((ws, ws.connect_to_server()))

    page = open_page("", login=server.url)
    page.route_web_socket(re.compile(r".*/ws$"), proxy)
    run = start_run(server, {"tokens": 300, "rate": 100})
    page.goto(f"{server.url}/#/runs/{run}")
    expect(page.locator(".answer")).to_contain_text("the agent streams", timeout=10_000)
    to_page, to_server = routes[-1]
    to_server.close()  # drop the real server connection mid-stream…
    to_page.close(code=1012, reason="server restart")  # …and the page sees the server close it
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=20_000)
    assert len(routes) >= 2, "the page did not reconnect"
    assert answer_text(page) == expected_text(300)


def test_model_output_and_tool_results_cannot_inject_html(make_server, tmp_path, open_page):
    files = tmp_path / "files"
    files.mkdir()
    (files / "evil.md").write_text(
        "# Evil notes\n\n<img src=x onerror=\"window.__xss='file'\">\n\n<script>window.__xss='script'</script>\n"
        "\n[click](javascript:alert(1)) and [safe](https://example.com)\n"
    )
    srv = make_server({"RUNWATCH_FILES_DIR": str(files)})
    attack = "<img src=x onerror=\"window.__xss='prompt'\"><script>window.__xss='inline'</script> read the evil file"
    run = start_run(srv, attack)
    page = open_page(f"{srv.url}/#/runs/{run}")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=20_000)
    answer = page.locator(".answer")
    expect(answer).to_contain_text("<img src=x onerror=")
    expect(answer).to_contain_text("<script>window.__xss='script'</script>")
    expect(answer.locator("h3")).to_have_text("Evil notes")  # Markdown still renders
    assert answer.locator("img, script").count() == 0
    assert answer.locator("a").evaluate_all("links => links.map(a => a.href)") == ["https://example.com/"]
    page.locator('#trace-tree .trace-row[data-kind="tool"]', has_text="read_file").click()
    expect(page.locator("#detail")).to_contain_text("<script>window.__xss='script'</script>")
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_the_runs_list_updates_live(make_server, open_page):
    srv = make_server()
    page = open_page(srv.url + "/")
    expect(page.locator("text=No runs yet")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    run = start_run(srv, {"tokens": 200, "rate": 100})
    row = page.locator(f'tr[data-run="{run}"]')
    expect(row).to_have_attribute("data-status", re.compile("queued|running"))
    expect(row.locator(".status")).to_have_text("running")
    expect(row).to_have_attribute("data-status", "succeeded", timeout=15_000)
    expect(row.locator('td[data-col="tools"]')).to_have_text("0")
    page.select_option("#filter-status", "failed")
    expect(row).to_have_count(0)
    page.select_option("#filter-status", "succeeded")
    expect(row).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.select_option("#filter-status", "")
    page.screenshot(path=str(ARTIFACTS / "runs-list.png"), full_page=True)


def test_a_run_started_while_the_list_loads_appears_in_it(make_server, open_page):
    srv = make_server()
    page = open_page("", login=srv.url)
    # A slow path to the WebSocket (a proxy, a busy network): the socket opens 1.5 s after the page.
    page.add_init_script("""
        const RealWebSocket = window.WebSocket;
        window.WebSocket = class extends EventTarget {
            constructor(url) {
                super();
                this.readyState = 0;
                setTimeout(() => {
                    const ws = new RealWebSocket(url);
                    for (const name of ["open", "message", "close", "error"]) {
                        ws.addEventListener(name, (e) => {
                            this.readyState = ws.readyState;
                            this["on" + name]?.(e);
                        });
                    }
                    this.ws = ws;
                }, 1500);
            }
            send(data) { this.ws.send(data); }
            close(code, reason) {
                this.ws ? this.ws.close(code, reason) : setTimeout(() => this.close(code, reason), 100);
            }
        };
        window.WebSocket.OPEN = 1;
    """)
    started: list[str] = []

    def list_then_start(route) -> None:
        response = route.fetch()  # the list as it is now, without the run started next
        if not started:
            started.append(start_run(srv, {"tokens": 20, "rate": 100}))
        route.fulfill(response=response)

    page.route(re.compile(r".*/api/runs\?.*"), list_then_start)
    page.goto(srv.url + "/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    row = page.locator(f'tr[data-run="{started[0]}"]')
    expect(row).to_have_attribute("data-status", "succeeded", timeout=15_000)


def test_without_websockets_the_view_falls_back_to_sse(server, open_page):
    page = open_page("", login=server.url)
    # A proxy that refuses the upgrade: every WebSocket closes before it opens.
    page.add_init_script("""
        window.WebSocket = class {
            constructor() { this.readyState = 3; setTimeout(() => this.onclose?.({code: 1006}), 5); }
            send() {}
            close() {}
        };
        window.WebSocket.OPEN = 1;
    """)
    run = start_run(server, {"tokens": 150, "rate": 100, "tool_calls": 1, "tool_seconds": 0.2})
    page.goto(f"{server.url}/#/runs/{run}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "sse", timeout=15_000)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=20_000)
    assert answer_text(page) == expected_text(150)
    expect(page.locator('#trace-tree .trace-row[data-kind="tool"]')).to_have_count(1)


def test_a_100k_token_run_does_not_freeze_the_page(server, open_page):
    page = open_page("", login=server.url)
    run = start_run(server, {"tokens": 100_000, "rate": 0})
    page.goto(f"{server.url}/#/runs/{run}")
    page.evaluate("""() => {
        window.__gaps = []; let last = performance.now();
        const tick = (t) => {
            window.__gaps.push(t - last); last = t;
            if (!window.__stop) requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
    }""")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=90_000)
    page.evaluate("window.__stop = true")
    worst = page.evaluate("Math.max(...window.__gaps)")
    assert worst < 1000, f"the page froze for {worst:.0f} ms"
    assert len(answer_text(page)) == len(expected_text(100_000))


def test_keyboard_only_start_and_dark_theme(server, open_page):
    page = open_page(server.url + "/", color_scheme="dark")
    expect(page.locator("#start-agent")).to_have_value("demo")
    page.locator("#start-input").focus()
    page.keyboard.type(json.dumps({"tokens": 5}))
    page.keyboard.press("Tab")
    expect(page.locator("form.start button[type=submit]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/runs/\w+$"))
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=10_000)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 20, 23)"
