"""A lean WebSocket client for the load generator: websockets' sans-I/O protocol under an asyncio.Protocol.

A thousand watchers on the ``websockets`` asyncio client cost the load generator ~20 µs of CPU per
frame (a task wake-up per message), as much as the servers under test spend, so the load generator
became the bottleneck and its own queueing showed up as latency. Here a frame is handled inside
``data_received``, timestamped on arrival, with no task and no queue.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

#: Called with each text or binary message and its arrival time (``time.time()``).
OnMessage = Callable[[bytes, float], None]


#: Headers every handshake sends (the server's key: see ``use_token``).
AUTH: dict[str, str] = {}


def use_token(token: str | None) -> None:
    """Authenticate every connection and HTTP call of this process with ``token`` (none: auth off)."""
    AUTH.clear()
    if token:
        AUTH["Authorization"] = f"Bearer {token}"


class Client(asyncio.Protocol):
    def __init__(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        self._ws = ClientProtocol(parse_uri(url), max_size=None)
        self._transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        #: Messages are queued for ``recv`` until ``on_message`` is set.
        self.on_message: OnMessage | None = None
        self._inbox: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self._abort_armed = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        request = self._ws.connect()
        for name, value in AUTH.items():
            request.headers[name] = value
        self._ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Response):
                if self._ws.handshake_exc is not None:
                    self.opened.set_exception(self._ws.handshake_exc)
                else:
                    self.opened.set_result(None)
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                if self.on_message is not None:
                    self.on_message(event.data, now)
                else:
                    self._inbox.append(event.data)
                    self._arrived.set()
        self._flush()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_code = self._ws.close_rcvd.code if self._ws.close_rcvd is not None else 1006
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection lost during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._arrived.set()

    # -- the load generator's side -------------------------------------------------------------

    def send(self, text: str) -> None:
        self._ws.send_text(text.encode())
        self._flush()

    async def recv(self) -> bytes:
        while not self._inbox:
            if self.closed.done():
                raise ConnectionError(f"closed with {self.close_code}")
            self._arrived.clear()
            await self._arrived.wait()
        return self._inbox.popleft()

    def pause_reading(self) -> None:
        assert self._transport is not None
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        assert self._transport is not None
        self._transport.resume_reading()

    async def close(self, timeout: float = 5.0) -> None:
        if self._transport is None or self.closed.done():
            return
        try:
            self._ws.send_close(1000)
            self._flush()
        except Exception:
            pass  # already closing
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self._transport.abort()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
        if self._ws.close_expected() and not self._abort_armed:
            self._abort_armed = True  # the server should now close the TCP connection; don't wait forever
            asyncio.get_running_loop().call_later(5.0, transport.abort)


async def connect(url: str, *, rcvbuf: int | None = None, timeout: float = 60) -> Client:
    """Open a WebSocket; ``rcvbuf`` pins the socket's receive buffer (a stalled watcher's window)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), timeout)
    _, client = await loop.create_connection(lambda: Client(url), sock=sock)
    await asyncio.wait_for(client.opened, timeout)
    return client
