"""``run.stream_chat(client, **create_kwargs)``: an OpenAI SDK chat completion streamed and reported
as one step of the run, in one line.

It calls ``client.chat.completions.create(stream=True, stream_options={"include_usage": True},
**create_kwargs)`` and hands the caller the SDK's own chunks, unchanged, as the tracing wrappers of
Langfuse (``langfuse.openai``) and Phoenix (``openinference-instrumentation-openai``) do: the
caller keeps their loop, and the helper reports as the chunks go by — ``step.started`` (the model),
each content delta as a ``token``, and at the end ``step.finished`` with the usage of the final
usage chunk (``estimated: false``; none came: the text deltas counted, ``estimated: true``), the
finish reason, the tool calls asked for, ``ttft`` and ``duration``. Tool-call deltas are assembled
per index (as openai-agents does) into :class:`ModelToolCall` s: like runwatch's own loop, the
model's request is counted in ``step.finished.tool_calls``; ``tool.started`` is the call the agent
then makes (``run.tool(...)``).

**A cancel** (the run's control long poll sets ``run.cancelled``) shuts the response's socket down
from the client's thread, so a read blocked on it returns at once (over HTTP/1.1, the SDK's
default; otherwise the stream stops at its next chunk); the helper closes the stream, ends the step
``cancelled`` and raises :class:`Cancelled`, which ends the run ``cancelled`` when it leaves the
``with rw.run(...)`` block. A caller that stops reading early (``break`` inside ``with
run.stream_chat(...)``) ends the step ``interrupted``; an error of the stream ends it ``error``.

**Memory.** It keeps the answer's text and tool calls (``chat.text``, ``chat.tool_calls``,
``chat.assistant_message()``), as the SDK's own ``chat.completions.stream`` helper does: as long as
the model's answer, which the request's ``max_tokens`` (or the model's own limit) bounds. Tokens go
through the client's bounded buffer (``outbox.py``).

Duck-typed: nothing here imports openai (``runwatch.client`` must not).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from runwatch.client.link import Cancelled

if TYPE_CHECKING:
    from runwatch.client.run import RunBase


class ModelToolCall(msgspec.Struct, kw_only=True):
    """A tool call the model asked for, assembled from its deltas: ``arguments`` as the model sent
    them (a JSON text: what goes back in the conversation); ``parsed()`` decodes them."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def parsed(self) -> Any:
        """The arguments decoded, or the text itself if it is not JSON."""
        try:
            return msgspec.json.decode(self.arguments)
        except msgspec.DecodeError:
            return self.arguments


def error_type(exc: BaseException) -> str:
    """A failed model call's kind, as ``step.finished.error_type`` names it (from the openai SDK's
    exception classes, by name: none is imported)."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"APITimeoutError", "TimeoutError", "TimeoutException"}:
        return "timeout"
    if "APIConnectionError" in names:
        return "connection"
    if "RateLimitError" in names:
        return "rate_limited"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return "client_error" if status < 500 else "server_error"
    return "other"


def _shut_down(stream: Any) -> None:
    """Wake a read blocked on ``stream``'s HTTP/1.1 response: shut its socket down (the reader sees
    the stream end). Shutting down, not closing: the reader's descriptor stays valid. An HTTP/2
    connection carries other requests too, and is left alone."""
    response = getattr(stream, "response", None)
    if response is None or getattr(response, "is_closed", True) or getattr(response, "http_version", "") != "HTTP/1.1":
        return
    network = getattr(response, "extensions", {}).get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    try:
        if isinstance(sock, socket.socket):  # (a TLS socket too: its TLS layer is left to the reader)
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        elif sock is not None:  # asyncio's TransportSocket
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class ChatBase:
    """One streamed chat completion as a step of ``run``: what it said, and how it is reported."""

    def __init__(self, run: RunBase, client: Any, create_kwargs: dict[str, Any]) -> None:
        self._run = run
        self._client = client
        options = {**(create_kwargs.pop("stream_options", None) or {}), "include_usage": True}
        self._kwargs = {**create_kwargs, "stream": True, "stream_options": options}
        self.model = str(create_kwargs.get("model", ""))
        #: The SDK's stream (``openai.Stream`` / ``AsyncStream``), once the model has answered.
        self.stream: Any = None
        self._parts: list[str] = []
        self._calls: dict[int, ModelToolCall] = {}
        self._deltas = 0
        self._usage: dict[str, Any] | None = None
        #: The model's finish reason (``stop``, ``tool_calls``, ``length`` …), once it came.
        self.finish_reason: str | None = None
        self._started = 0.0
        self._first: float | None = None
        self._iterated = False
        #: A step was reported started and is not finished yet.
        self._stepping = False
        #: How the reading ended, if not at the stream's end: the exception, or ``GeneratorExit``.
        self._outcome: BaseException | None = None
        # The cancel callback (on the client's thread) and the reader take it: once the model has
        # finished, or the stream is being closed, the socket is no longer cut (it may be reused).
        self._lock = threading.Lock()
        self._cuttable = True

    # -- what it said

    @property
    def text(self) -> str:
        """The text the model streamed so far."""
        return "".join(self._parts)

    @property
    def tool_calls(self) -> list[ModelToolCall]:
        """The tool calls the model asked for, in its order, each with an id."""
        calls = [self._calls[i] for i in sorted(self._calls)]
        for n, call in enumerate(calls):
            call.id = call.id or f"call_{n}"
        return calls

    @property
    def usage(self) -> dict[str, Any]:
        """``{input_tokens, output_tokens, estimated}``: the model's report, or (none came) the text
        deltas counted, as runwatch's own runs do."""
        return self._usage or {"input_tokens": 0, "output_tokens": self._deltas, "estimated": True}

    def assistant_message(self) -> dict[str, Any]:
        """The answer as the conversation's next message (to send the model with the tools' results)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self._calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message

    # -- reporting

    def _begin(self) -> None:
        if self._iterated:
            raise RuntimeError("a chat stream is read once")
        self._iterated = True
        self._run.raise_if_cancelled()
        self._run.step(self.model)
        self._started, self._stepping = time.monotonic(), True

    def _opened(self, stream: Any) -> None:
        self.stream = stream
        self._run.on_cancel(self._cut)

    def _add(self, chunk: Any) -> None:
        """One chunk: its text reported as a token, its tool-call deltas assembled, its usage kept."""
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = {
                "input_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                "output_tokens": getattr(usage, "completion_tokens", 0) or 0,
                "estimated": False,
            }
        for choice in getattr(chunk, "choices", None) or ():
            if getattr(choice, "index", 0) != 0:
                continue  # (n > 1: the first choice is the run's answer)
            delta = getattr(choice, "delta", None)
            if content := getattr(delta, "content", None):
                self._first = self._first or time.monotonic()
                self._parts.append(content)
                self._deltas += 1
                self._run.token(content)
            for tc in getattr(delta, "tool_calls", None) or ():
                self._add_call(tc)
            if reason := getattr(choice, "finish_reason", None):
                with self._lock:
                    self.finish_reason, self._cuttable = reason, False

    def _add_call(self, tc: Any) -> None:
        self._first = self._first or time.monotonic()
        call = self._calls.setdefault(getattr(tc, "index", 0) or 0, ModelToolCall())
        call.id = getattr(tc, "id", None) or call.id
        function = getattr(tc, "function", None)
        call.name += getattr(function, "name", None) or ""
        call.arguments += getattr(function, "arguments", None) or ""

    def _cut(self) -> None:
        """On a cancel (the client's thread): wake the reader now."""
        with self._lock:
            if self._cuttable:
                _shut_down(self.stream)

    def _closing(self) -> None:
        with self._lock:
            self._cuttable = False
        self._run.off_cancel(self._cut)

    def _end(self) -> None:
        """Report ``step.finished`` once: the model's finish reason if it came, else how the stream
        ended — ``cancelled``, ``interrupted`` (the caller stopped reading), ``error``."""
        if not self._stepping:
            return
        self._stepping = False
        outcome = self._outcome
        failed = outcome if isinstance(outcome, Exception) and not isinstance(outcome, Cancelled) else None
        if self.finish_reason is not None:
            reason = self.finish_reason
        elif isinstance(outcome, Cancelled) or self._run.cancelled.is_set():
            reason = "cancelled"
        elif isinstance(outcome, GeneratorExit):
            reason = "interrupted"
        else:
            reason = "stop" if failed is None else "error"
        self._run.step_done(
            self.usage,
            reason,
            ttft=None if self._first is None else self._first - self._started,
            duration=time.monotonic() - self._started,
            streamed_text=self._deltas > 0,
            tool_calls=len(self._calls) if self.finish_reason is not None else 0,
            error_type=None if failed is None else error_type(failed),
        )

    def _failed(self, exc: BaseException) -> Exception | None:
        """The reading ended with ``exc``: noted for ``step.finished``; what to raise instead (a
        stream cut by a cancel raises :class:`Cancelled`), or ``None``: ``exc`` itself."""
        self._outcome = exc
        return Cancelled() if isinstance(exc, Exception) and self._run.cancelled.is_set() else None


class ChatStream(ChatBase):
    """``run.stream_chat(...)`` on a synchronous run: iterate it for the SDK's chunks; use it as a
    context manager to close it (and end its step) however the loop is left."""

    def __iter__(self) -> Iterator[Any]:
        return self._chunks()

    def _chunks(self) -> Iterator[Any]:
        self._begin()
        try:
            self._opened(self._client.chat.completions.create(**self._kwargs))
            for chunk in self.stream:
                if self._run.cancelled.is_set():
                    break
                self._add(chunk)
                yield chunk
        except (GeneratorExit, Exception) as exc:  # (GeneratorExit: the caller stopped reading)
            if (instead := self._failed(exc)) is None:
                raise
            raise instead from exc
        finally:
            self._close_stream()
            self._end()
        self._run.raise_if_cancelled()

    def _close_stream(self) -> None:
        self._closing()
        if self.stream is not None:
            self.stream.close()

    def close(self) -> None:
        """Close the model's stream (idempotent); a step still streaming ends ``interrupted``."""
        self._close_stream()
        self._outcome = self._outcome or GeneratorExit()
        self._end()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncChatStream(ChatBase):
    """``run.stream_chat(...)`` on an asyncio run (an ``AsyncOpenAI`` client): ``async for`` it for
    the SDK's chunks; ``async with`` it to close it however the loop is left."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Any]:
        self._begin()
        try:
            self._opened(await self._client.chat.completions.create(**self._kwargs))
            async for chunk in self.stream:
                if self._run.cancelled.is_set():
                    break
                self._add(chunk)
                yield chunk
        except (GeneratorExit, Exception) as exc:  # (GeneratorExit: the caller stopped reading)
            if (instead := self._failed(exc)) is None:
                raise
            raise instead from exc
        finally:
            await self._close_stream()
            self._end()
        self._run.raise_if_cancelled()

    async def _close_stream(self) -> None:
        self._closing()
        if self.stream is not None:
            await self.stream.close()

    async def aclose(self) -> None:
        """Close the model's stream (idempotent); a step still streaming ends ``interrupted``."""
        await self._close_stream()
        self._outcome = self._outcome or GeneratorExit()
        self._end()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
