"""The browser room's fixtures: one headless Chromium per test module (Debian's ``chromium``,
driven by Playwright), and ``open_page`` for its pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import Server

CHROMIUM = os.environ.get("RUNWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator:
    """Open pages; any uncaught script error on one of them fails the test."""
    pages: list[tuple[Page, list[str]]] = []

    def make(url: str, *, color_scheme: str = "light", login: str | None = None, as_admin: bool = True) -> Page:
        """A page on ``url``; logged in first (as the server's local admin) unless ``as_admin`` is off.
        ``login`` names the server when ``url`` is empty (the test navigates later)."""
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=color_scheme)
        origin = "/".join((login or url).split("/", 3)[:3])
        token = Server.tokens.get(origin)
        if as_admin and token:
            r = context.request.post(origin + "/api/login", data={"key": token})
            assert r.ok, r.text()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        pages.append((page, errors))
        if url:
            page.goto(url)
        return page

    make.pages = pages  # type: ignore[attr-defined]  # for a failed test's report (conftest.py)
    yield make
    for page, errors in pages:
        page.context.close()
        assert not errors, f"script errors on {page.url}: {errors}"
