"""The client's network side: one asyncio loop on a thread of its own, and two connection pools.

Every request of every run goes through it, so the agent's code — synchronous or on its own event
loop — only ever hands events over and never waits on the network unless it asks to (a flush, an
approval). Errors go to ``errors`` (the last 100) and the ``on_error`` callback, never to the agent.

``http`` carries the client's batches of every run's events (``sender.py``) and registrations: a
few kept-alive connections. ``polls`` carries the runs' long polls of controls, which each hold a
connection for up to 25 s: in a pool of their own they are never scanned, nor make connections
close, on a batch's way (httpcore looks at every connection of its pool on each request).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

#: The longest a long poll of controls waits (the server's bound is 25 s).
POLL_WAIT = 25.0
#: Connections for batches and registrations, and how many of them are kept alive: as many as
#: batches in flight (``sender.MAX_REQUESTS``), since httpcore looks at each on every request.
HTTP_CONNECTIONS, HTTP_KEPT = 8, 2
#: Connections for long polls (the server holds 200 at most per key), and how many are kept alive
#: (more would make each request's scan quadratic in httpcore: it counts connections per idle one).
POLL_CONNECTIONS, POLL_KEPT = 200, 8


class Engine:
    """The loop thread and its HTTP client; ``submit`` runs a coroutine there from any thread."""

    def __init__(self, url: str, api_key: str, on_error: Callable[[Exception], None] | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.on_error = on_error
        self.errors: collections.deque[Exception] = collections.deque(maxlen=100)
        self.loop = asyncio.new_event_loop()
        self.http: httpx.AsyncClient | None = None
        self.polls: httpx.AsyncClient | None = None
        self._thread = threading.Thread(target=self._main, name="runwatch-client", daemon=True)
        self._thread.start()
        self.submit(self._open()).result()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _open(self) -> None:
        self.http = self._client(HTTP_CONNECTIONS, HTTP_KEPT)
        self.polls = self._client(POLL_CONNECTIONS, POLL_KEPT)

    def _client(self, connections: int, kept: int) -> httpx.AsyncClient:
        # (httpcore 1.0.9 closes idle connections while it holds more than ``kept``, busy ones counted)
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(30.0, read=POLL_WAIT + 15),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=kept),
        )

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop thread; its result as a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the loop thread, soon (safe from any thread)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def report(self, error: Exception) -> None:
        """A network error or a refusal the agent did not see: passed to ``on_error``, and kept
        without its traceback (whose frames would keep what the request held alive)."""
        self.errors.append(error)
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception as e:  # the agent's callback must not stop the client
                self.errors.append(e)
        cause: BaseException | None = error
        for _ in range(8):  # (the chain of causes, bounded)
            if cause is None:
                break
            cause.__traceback__ = None
            cause = cause.__cause__ or cause.__context__

    @property
    def on_loop(self) -> bool:
        """Whether the calling thread is the engine's own."""
        return threading.current_thread() is self._thread

    def close(self, timeout: float) -> None:
        """Close the connections and stop the thread (idempotent)."""
        if self.loop.is_closed() or not self._thread.is_alive():
            return
        try:
            self.submit(self._close()).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    async def _close(self) -> None:
        for client in (self.http, self.polls):
            if client is not None:
                await client.aclose()
