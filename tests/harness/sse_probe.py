"""SSE from the client's side, for tests: a stream's raw body, its events, a reader that never
reads, whether the server dropped such a reader; and one sample of ``/metrics``."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def metric(server: Any, name: str, **labels: str) -> float:
    """The value of one sample of the server's ``/metrics`` (``name`` with exactly ``labels``)."""
    async with server.client() as c:
        text = (await c.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"/metrics has no {name}{labels}")


def blocks(body: bytes) -> list[list[str]]:
    """An event stream's body as its blocks (each the lines up to a blank line), as a client splits it."""
    text = body.decode().replace("\r\n", "\n").replace("\r", "\n")
    return [block.split("\n") for block in text.split("\n\n") if block]


def events_of(body: bytes) -> list[dict[str, Any]]:
    """The run events of a stream's body (the ``data`` of every block that has some)."""
    return [json.loads(line[5:]) for block in blocks(body) for line in block if line.startswith("data:")]


async def read_stream(client: httpx.AsyncClient, run: str, headers: dict[str, str] | None = None) -> bytes:
    """The whole body of a run's SSE stream, as the server sent it, to its end."""
    async with client.stream("GET", f"/api/runs/{run}/stream", headers=headers or {}) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        return b"".join([chunk async for chunk in r.aiter_bytes()])


def stalled_reader(server: Any, run: str, rcvbuf: int = 4096) -> socket.socket:
    """A client that asks for ``run``'s SSE stream and never reads a byte of it. Its receive buffer is
    pinned small, so the server's sends to it really block once a few hundred KB are on the way."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        f"GET /api/runs/{run}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.token}\r\n\r\n".encode()
    )
    return sock


def dropped_by_server(sock: socket.socket, timeout: float) -> bool:
    """Read what is left on ``sock``: True once the server has closed or reset the connection,
    False if it is still open after ``timeout`` seconds of silence. Blocking: run it in a thread."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True
