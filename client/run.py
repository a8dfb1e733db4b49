"""A run as the agent's code sees it: report what happens, read what people ask.

Reporting (``step``, ``token``, ``status``, ``tool`` …) only hands events to the client's batcher
and returns at once. ``request_approval`` waits for a person. Leaving the ``with`` block ends the
run: ``failed`` with the exception's text if one escaped it, ``cancelled`` after a cancel (or a
:class:`Cancelled` raised by ``run.raise_if_cancelled()``), ``succeeded`` otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from runwatch.client.link import Cancelled, Link
from runwatch.client.openai_chat import AsyncChatStream, ChatStream
from runwatch.client.wire import Decision, Message


class ToolCall:
    """A tool call in progress: ``progress()`` reports how far it is, ``result()`` what it returned.
    Leaving its block sends ``tool.finished`` (with the error, if an exception escaped)."""

    def __init__(self, run: RunBase, call_id: str, name: str, arguments: Any) -> None:
        self._run, self.call_id, self.name = run, call_id, name
        self._result: Any = None
        self._denied = False
        self._started = time.monotonic()
        run._put({"type": "tool.started", "call_id": call_id, "tool": name, "arguments": arguments})

    def progress(self, message: str, progress: float | None = None) -> None:
        self._run.status(message, progress, call_id=self.call_id)

    def result(self, value: Any) -> None:
        self._result = value

    def deny(self) -> None:
        """A person denied the call: it was never made (its ``tool.finished`` says ``denied``; its
        result, if set, is what the model was told instead)."""
        self._denied = True

    def __enter__(self) -> ToolCall:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.end(None if exc is None else f"{type(exc).__name__}: {exc}")

    def end(self, error: str | None = None) -> None:
        """Send ``tool.finished`` (with ``error``, if the call failed): what leaving the block does,
        for a call whose start and end are reported from different places (a framework's callbacks)."""
        event = {"type": "tool.finished", "call_id": self.call_id, "tool": self.name, "result": self._result}
        event["duration"] = time.monotonic() - self._started
        if self._denied:
            event["denied"] = True
        if error is not None:
            event["error"] = error
        self._run._put(event)


class RunBase:
    """What sync and async runs share: every call that only reports, and the controls people sent."""

    def __init__(self, link: Link, block: float, flush_timeout: float) -> None:
        self._link = link
        self._block = block
        self._flush_timeout = flush_timeout
        self._index = -1
        #: Set when a person cancels the run (from the dashboard or REST).
        self.cancelled = threading.Event()
        self._callbacks: list[Callable[[], object]] = []
        self._message_callbacks: list[Callable[[Message], object]] = []
        link.on_cancelled = self._cancel
        link.on_message = self._message

    @property
    def id(self) -> str | None:
        """The run's id in runwatch (``None`` until the server has answered its registration)."""
        return self._link.run_id

    @property
    def dropped_tokens(self) -> int:
        """Tokens dropped because the client's buffer stayed full (see ``runwatch.client.outbox``)."""
        return self._link.outbox.dropped_tokens

    def _put(self, event: dict[str, Any]) -> None:
        self._link.outbox.put(event, len(str(event)), self._block)

    def step(self, model: str) -> int:
        """A model call begins; its index (0, 1, …)."""
        self._index += 1
        self._put({"type": "step.started", "index": self._index, "model": model})
        return self._index

    def token(self, text: str) -> None:
        """Text the model streamed (coalesced with its neighbours before it is sent)."""
        if text:
            self._link.outbox.token(text, self._block)

    def step_done(
        self,
        usage: dict[str, Any] | None = None,
        finish_reason: str = "stop",
        *,
        index: int | None = None,
        **fields: Any,
    ) -> None:
        """A model call ended: the latest one, or ``index`` (what ``step`` returned: model calls of a
        run may overlap); ``usage``: ``{input_tokens, output_tokens}``; ``fields``: any other field of
        ``step.finished`` (``ttft``, ``duration``, ``cost``, ``tool_calls`` …)."""
        at = max(self._index, 0) if index is None else index
        event = {"type": "step.finished", "index": at, "finish_reason": finish_reason, **fields}
        if usage is not None:
            event["usage"] = usage
        self._put(event)

    def tool(self, call_id: str, name: str, arguments: Any = None) -> ToolCall:
        return ToolCall(self, call_id, name, arguments)

    def status(self, text: str, progress: float | None = None, *, call_id: str | None = None) -> None:
        """What the agent is doing now; ``progress`` 0…1 (or ``None``)."""
        self._put({"type": "status", "message": text, "progress": progress, "call_id": call_id})

    def messages(self) -> list[Message]:
        """The steering messages people sent since the last call, oldest first."""
        queue, got = self._link.messages, []
        while queue:
            got.append(queue.popleft())
        return got

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the run is cancelled (on the client's thread: keep it short)."""
        self._callbacks.append(callback)
        if self.cancelled.is_set():
            callback()

    def on_message(self, callback: Callable[[Message], object]) -> None:
        """Call ``callback(message)`` as each steering message arrives (on the client's thread: keep it
        short). The message stays in :meth:`messages` too: the callback only says one came."""
        self._message_callbacks.append(callback)

    def off_cancel(self, callback: Callable[[], object]) -> None:
        """Stop calling ``callback`` on a cancel."""
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def off_message(self, callback: Callable[[Message], object]) -> None:
        """Stop calling ``callback`` on a message."""
        with contextlib.suppress(ValueError):
            self._message_callbacks.remove(callback)

    def report(self, error: Exception) -> None:
        """An error met reporting this run on the agent's side (a framework adapter's): to the
        client's ``errors`` and ``on_error``, as the client's own go."""
        self._link.engine.report(error)

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled

    def _cancel(self) -> None:
        self.cancelled.set()
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception as e:
                self._link.engine.report(e)

    def _message(self, message: Message) -> None:
        for callback in list(self._message_callbacks):
            try:
                callback(message)
            except Exception as e:
                self._link.engine.report(e)

    def _ask(self, call_id: str, tool: str, arguments: Any, reason: str, schema: Any) -> Any:
        """Send ``approval.requested``; the future its decision resolves."""
        approval_id = f"ap_{secrets.token_hex(8)}"
        future = self._link.approval(approval_id)
        event = {"type": "approval.requested", "approval_id": approval_id, "call_id": call_id, "tool": tool}
        event |= {"arguments": arguments, "reason": reason}
        if schema is not None:
            event["schema"] = schema
        self._put(event)
        return future

    def _end(self, exc: BaseException | None) -> dict[str, Any]:
        """The ``run.finished`` event leaving the block with ``exc`` sends."""
        if isinstance(exc, Cancelled | asyncio.CancelledError) or (exc is None and self.cancelled.is_set()):
            return {"type": "run.finished", "status": "cancelled"}
        if exc is None:
            return {"type": "run.finished", "status": "succeeded"}
        return {"type": "run.finished", "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


class Run(RunBase):
    """A run reported from synchronous code: ``with rw.run(...) as run:``."""

    def request_approval(
        self,
        call_id: str,
        tool: str,
        arguments: Any,
        reason: str = "",
        schema: Any = None,
        timeout: float | None = None,
    ) -> Decision:
        """Ask a person whether to call ``tool``; blocks until they decide or the approval expires
        (a cancel raises :class:`Cancelled`; ``timeout``: ``TimeoutError`` past it)."""
        return self._ask(call_id, tool, arguments, reason, schema).result(timeout)

    def stream_chat(self, client: Any, **create_kwargs: Any) -> ChatStream:
        """Stream ``client.chat.completions.create(**create_kwargs)`` (an ``openai.OpenAI``) and report
        it as a step: iterate the result for the SDK's chunks, unchanged (``openai_chat.py``). A
        cancel closes the stream at once and raises :class:`Cancelled`."""
        return ChatStream(self, client, create_kwargs)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event reported so far is stored."""
        self._link.engine.submit(self._link.flush()).result(timeout)

    def begin(self) -> Run:
        """Start the run as entering its block does, without waiting for the server to answer its
        registration (its events go once it has): for code that must never wait on the network, a
        framework's callbacks; end it with :meth:`end`."""
        self._link.engine.submit(self._link.start())
        return self

    def end(self, exc: BaseException | None = None) -> None:
        """End a run started with :meth:`begin` as leaving its block with ``exc`` does, without
        waiting: the client stores its events (``rw.flush()`` waits for them), then lets it go."""
        self._put(self._end(exc))
        self._link.engine.submit(self._link.finish())

    def __enter__(self) -> Run:
        self._link.engine.submit(self._link.start()).result()
        done, _ = concurrent.futures.wait((self._link.registered,), self._flush_timeout)
        if done:
            self._link.registered.result()  # a refused registration raises here; an unanswered one goes on
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        self._put(self._end(exc))
        engine = self._link.engine
        try:
            engine.submit(self._link.flush()).result(self._flush_timeout)
        except TimeoutError as e:
            engine.report(e)
        engine.submit(self._link.stop()).result()
        return isinstance(exc, Cancelled)


class AsyncRun(RunBase):
    """A run reported from asyncio code: ``async with rw.run(...) as run:``. Reporting never blocks
    the loop (a token that finds the buffer full is dropped at once and counted)."""

    async def request_approval(
        self, call_id: str, tool: str, arguments: Any, reason: str = "", schema: Any = None
    ) -> Decision:
        """Ask a person whether to call ``tool``; awaits their decision or the approval's expiry (a
        cancel raises :class:`Cancelled`)."""
        return await asyncio.wrap_future(self._ask(call_id, tool, arguments, reason, schema))

    def stream_chat(self, client: Any, **create_kwargs: Any) -> AsyncChatStream:
        """:meth:`Run.stream_chat` for an ``openai.AsyncOpenAI`` client: ``async for`` the result."""
        return AsyncChatStream(self, client, create_kwargs)

    async def flush(self) -> None:
        await asyncio.wrap_future(self._link.engine.submit(self._link.flush()))

    async def __aenter__(self) -> AsyncRun:
        await asyncio.wrap_future(self._link.engine.submit(self._link.start()))
        registered = asyncio.wrap_future(self._link.registered)
        done, _ = await asyncio.wait((registered,), timeout=self._flush_timeout)
        if done:
            registered.result()  # a refused registration raises here; an unanswered one goes on
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._put(self._end(exc))
        engine = self._link.engine
        try:
            await asyncio.wait_for(asyncio.wrap_future(engine.submit(self._link.flush())), self._flush_timeout)
        except TimeoutError as e:
            engine.report(e)
        await asyncio.wrap_future(engine.submit(self._link.stop()))
        return isinstance(exc, Cancelled)
