"""The client: ``Runwatch`` for synchronous agents, ``AsyncRunwatch`` for asyncio ones.

Both are one core — an engine thread with its loop and connection pools (``engine.py``), one
sender that batches every run's events (``sender.py``), and one byte budget for every run's
buffered events (``outbox.py``) — behind a sync or an async face.
"""

from __future__ import annotations

import asyncio
import atexit
import secrets
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from runwatch.client.engine import Engine
from runwatch.client.link import Link
from runwatch.client.outbox import Budget
from runwatch.client.run import AsyncRun, Run
from runwatch.client.sender import Sender

#: The capabilities a run declares unless told: the SDK handles cancels and approvals itself;
#: messages only reach an agent that reads ``run.messages()``, so it says so.
DEFAULT_CAPABILITIES = ("cancel", "approve")


class _Core:
    """What both faces share: settings, the engine, the budget, the sender, the open runs."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        buffer_bytes: int,
        block_timeout: float,
        flush_timeout: float,
        linger: float,
        on_error: Callable[[Exception], None] | None,
    ) -> None:
        self.engine = Engine(url, api_key, on_error)
        self.budget = Budget(buffer_bytes)
        self.sender = Sender(self.engine, self.budget, linger)
        self.engine.submit(self.sender.start()).result()
        self.block_timeout = block_timeout
        self.flush_timeout = flush_timeout
        self.links: weakref.WeakSet[Link] = weakref.WeakSet()
        self.closed = False

    def link(
        self,
        agent: str,
        input: str,
        thread: str | None,
        capabilities: Iterable[str] | Mapping[str, bool] | None,
        fields: dict[str, Any],
    ) -> Link:
        caps = DEFAULT_CAPABILITIES if capabilities is None else capabilities
        declared = dict(caps) if isinstance(caps, Mapping) else {name: True for name in caps}
        registration = {
            "external_id": fields.pop("external_id", None) or f"rw-{secrets.token_hex(12)}",
            "agent": agent,
            "input": input,
            "capabilities": declared,
            **({"thread": thread} if thread else {}),
            **{k: v for k, v in fields.items() if v is not None},
        }
        link = Link(self.engine, self.sender, self.budget, registration)
        self.links.add(link)
        return link

    async def flush(self) -> None:
        for link in list(self.links):
            await link.flush()

    def close(self) -> None:
        """Flush (up to ``flush_timeout``), then stop the engine (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.engine.submit(self.flush()).result(self.flush_timeout)
        except (TimeoutError, RuntimeError) as e:
            self.engine.report(e)
        for link in list(self.links):
            self.engine.submit(link.stop()).result(self.flush_timeout)
        self.engine.submit(self.sender.stop()).result(self.flush_timeout)
        self.engine.close(self.flush_timeout)


class Runwatch:
    """Report runs to a runwatch server from synchronous code.

    ``buffer_bytes`` bounds what the client holds; a token that finds it full waits up to
    ``block_timeout`` s, then is dropped and counted (``outbox.py``). Network errors never reach the
    agent: they are in ``errors`` and go to ``on_error``. Closing (or interpreter exit) flushes.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        buffer_bytes: int = 8 << 20,
        block_timeout: float = 1.0,
        flush_timeout: float = 30.0,
        linger: float = 0.05,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._core = _Core(
            url,
            api_key,
            buffer_bytes=buffer_bytes,
            block_timeout=block_timeout,
            flush_timeout=flush_timeout,
            linger=linger,
            on_error=on_error,
        )
        atexit.register(self._core.close)

    def run(
        self,
        agent: str,
        input: str,
        thread: str | None = None,
        capabilities: Iterable[str] | Mapping[str, bool] | None = None,
        **fields: Any,
    ) -> Run:
        """A run to report: ``with rw.run(...) as run:``. ``capabilities``: the controls it takes
        (``cancel``, ``approve``, ``message``); ``fields``: ``external_id``, ``model``, ``lease_seconds``."""
        link = self._core.link(agent, input, thread, capabilities, fields)
        return Run(link, self._core.block_timeout, self._core.flush_timeout)

    @property
    def errors(self) -> list[Exception]:
        """The last 100 errors the client met (and retried, or gave up on)."""
        return list(self._core.engine.errors)

    @property
    def dropped_tokens(self) -> int:
        return self._core.budget.dropped_tokens

    def report(self, error: Exception) -> None:
        """Add an error met on the agent's side of reporting (a framework adapter's) to ``errors``
        and pass it to ``on_error``, as the client does with its own."""
        self._core.engine.report(error)

    @property
    def buffered_bytes(self) -> int:
        """The bytes of ``buffer_bytes`` the client holds now: every run's events handed over and not
        yet stored (waiting, in flight, or retried), as the budget counts them (``outbox.py``)."""
        return self._core.budget.used

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event of every run is stored."""
        self._core.engine.submit(self._core.flush()).result(timeout)

    def close(self) -> None:
        atexit.unregister(self._core.close)
        self._core.close()

    def __enter__(self) -> Runwatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncRunwatch:
    """Report runs to a runwatch server from asyncio code: the same client as :class:`Runwatch`,
    whose calls never block the caller's loop (a token that finds the buffer full is dropped at once)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        buffer_bytes: int = 8 << 20,
        flush_timeout: float = 30.0,
        linger: float = 0.05,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._core = _Core(
            url,
            api_key,
            buffer_bytes=buffer_bytes,
            block_timeout=0.0,
            flush_timeout=flush_timeout,
            linger=linger,
            on_error=on_error,
        )
        atexit.register(self._core.close)

    def run(
        self,
        agent: str,
        input: str,
        thread: str | None = None,
        capabilities: Iterable[str] | Mapping[str, bool] | None = None,
        **fields: Any,
    ) -> AsyncRun:
        """A run to report: ``async with rw.run(...) as run:`` (arguments as :meth:`Runwatch.run`)."""
        link = self._core.link(agent, input, thread, capabilities, fields)
        return AsyncRun(link, 0.0, self._core.flush_timeout)

    @property
    def errors(self) -> list[Exception]:
        return list(self._core.engine.errors)

    @property
    def dropped_tokens(self) -> int:
        return self._core.budget.dropped_tokens

    def report(self, error: Exception) -> None:
        """Add an error met on the agent's side of reporting (a framework adapter's) to ``errors``
        and pass it to ``on_error``, as the client does with its own."""
        self._core.engine.report(error)

    @property
    def buffered_bytes(self) -> int:
        """As :attr:`Runwatch.buffered_bytes`."""
        return self._core.budget.used

    async def flush(self) -> None:
        await asyncio.wrap_future(self._core.engine.submit(self._core.flush()))

    async def aclose(self) -> None:
        atexit.unregister(self._core.close)
        await asyncio.to_thread(self._core.close)

    async def __aenter__(self) -> AsyncRunwatch:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
