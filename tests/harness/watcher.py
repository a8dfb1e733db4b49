"""A WebSocket watcher for tests: reads every frame in the background and lets a test await messages."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

CONTROL = {"hello", "ack", "error", "resync", "heartbeat", "pong"}
_ids = itertools.count(1)


@dataclass
class Closed:
    code: int | None
    reason: str | None


class Watcher:
    def __init__(self, ws: ClientConnection, read: bool = True) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.frames = 0
        #: Each received frame's payload size in bytes, in order.
        self.frame_sizes: list[int] = []
        self.closed: Closed | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read()) if read else None

    @classmethod
    async def connect(cls, url: str, *, read: bool = True, rcvbuf: int | None = None, **kwargs: Any) -> Watcher:
        """``rcvbuf`` pins the socket's receive buffer, so a watcher that stops reading stalls the server."""
        if rcvbuf is not None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
            kwargs["sock"] = sock
        return cls(await websockets.connect(url, **kwargs), read=read)

    def start_reading(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                data = json.loads(frame)
                self.frames += 1
                self.frame_sizes.append(len(frame.encode() if isinstance(frame, str) else frame))
                async with self._changed:
                    self.messages.extend(data if isinstance(data, list) else [data])
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        async with self._changed:
            self.closed = Closed(self.ws.close_code, self.ws.close_reason)
            self._changed.notify_all()

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first message (ever received) matching ``predicate``; waits for it up to ``timeout``."""

        async def find() -> dict[str, Any]:
            async with self._changed:
                while True:
                    for m in self.messages:
                        if predicate(m):
                            return m
                    if self.closed is not None:
                        raise AssertionError(f"connection closed ({self.closed}) before the message came")
                    await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def wait_closed(self, timeout: float = 10.0) -> Closed:
        async def closed() -> Closed:
            async with self._changed:
                await self._changed.wait_for(lambda: self.closed is not None)
                return self.closed

        return await asyncio.wait_for(closed(), timeout)

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send ``message`` with a fresh id and return the ``ack``, ``error`` or ``resync`` that echoes it."""
        mid = next(_ids)
        await self.send({**message, "id": mid})
        return await self.wait_for(
            lambda m: m.get("type") in ("ack", "error", "resync") and m.get("id") == mid, timeout
        )

    async def subscribe(self, run: str, after: int = 0) -> dict[str, Any]:
        reply = await self.request({"type": "subscribe", "run": run, "after": after})
        assert reply["type"] == "ack", reply
        return reply

    def events(self, run: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("run_id") == run and m.get("type") not in CONTROL]

    async def until_finished(self, run: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        await self.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "run.finished", timeout)
        return self.events(run)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), 5)


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "token")


def assert_contiguous(events: list[dict[str, Any]], start: int = 1) -> None:
    seqs = [e["seq"] for e in events]
    bad = next((i for i, s in enumerate(seqs) if s != start + i), None)
    assert bad is None, f"gap or duplicate at index {bad}: {seqs[max(0, (bad or 0) - 3) : (bad or 0) + 4]}"
