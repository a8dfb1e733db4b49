"""Waiting for something to happen: poll a condition until it holds.

The deadline only guards against a hang (a test that waits for ever says nothing): it is generous,
and how long the wait took is never the assertion. A test that awaits one message or one future
awaits it (``Watcher.wait_for``, ``asyncio.wait_for``); these are for what can only be asked again —
a server counter, a file, a process coming up.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: A condition: a plain or an async callable, true once what the test waits for has happened.
Check = Callable[[], Any | Awaitable[Any]]


async def eventually(
    check: Check, timeout: float = 10.0, what: str = "the condition", *, interval: float = 0.05
) -> None:
    """Await ``check()`` becoming true, asking every ``interval`` seconds; an ``AssertionError``
    naming ``what`` if it is still false after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def eventually_blocking(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "the condition", *, interval: float = 0.05
) -> None:
    """``eventually`` for code outside an event loop (fixtures that start processes, browser tests)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
