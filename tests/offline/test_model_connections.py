"""The runner's connections to its own offline model, under load: none is reused as the server closes
it, and a connect the socket's full queue refuses is tried again, not failed in milliseconds as
"Request timed out". A stopped server (SIGSTOP) stands for a busy one: its timers and reads wait."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from runwatch.agents.offline.model import scenario_text
from runwatch.api.model_client import ModelSocket, model_client
from runwatch.api.settings.config import load_settings
from tests.conftest import Server

MESSAGES = [{"role": "user", "content": json.dumps({"tokens": 5})}]
#: Connections pooled by the first requests, and requests made again on them.
CONNECTIONS = 20


@contextlib.contextmanager
def stopped(srv: Server) -> Iterator[None]:
    """The server's process stopped (no timer fires, nothing is read or accepted) until the block ends."""
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)


def _client(srv: Server, transport: str):
    """The client the runner reads the model with, on ``srv``'s socket, with the admin key."""
    path = srv.env["RUNWATCH_MODEL_SOCKET"]
    settings = load_settings(
        environ={"RUNWATCH_PORT": str(srv.port), "RUNWATCH_MODEL_SOCKET": path, "RUNWATCH_MODEL_TRANSPORT": transport}
    )
    return model_client(settings, ModelSocket(path, None), srv.token)


async def _ask(client) -> str:
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    return completion.choices[0].message.content


async def _at(moment: float) -> None:
    """Until ``moment`` (monotonic): the scenario needs connections of a given idle time."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_model_connection_idle_near_the_servers_keep_alive_is_not_reused(make_server, tmp_path, transport):
    """uvicorn closes a connection 5 s after its last response. A request written just before, on a
    busy server, waits behind the timer that closes its connection: "Connection reset by peer"."""
    srv = make_server({"RUNWATCH_MODEL_SOCKET": str(tmp_path / "model.sock")})
    client = _client(srv, transport).with_options(max_retries=0)  # no second try to hide a reset
    answers = await asyncio.gather(*(_ask(client) for _ in range(CONNECTIONS)))  # CONNECTIONS pooled
    idle_since = time.monotonic()
    await _at(idle_since + 4.0)
    with stopped(srv):
        await _at(idle_since + 4.6)
        again = asyncio.gather(*(_ask(client) for _ in range(CONNECTIONS)))
        await _at(idle_since + 5.4)  # the keep-alive timers are due when the server goes on
    assert await asyncio.wait_for(again, 30) == answers
    await client.close()


def _fill_queue(path: str) -> list[socket.socket]:
    """Connections to the socket at ``path`` until its accept queue is full (connect: EAGAIN)."""
    held: list[socket.socket] = []
    while True:
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        code = sock.connect_ex(path)
        if code == errno.EAGAIN:
            sock.close()
            return held
        assert code == 0, os.strerror(code)
        held.append(sock)


class _Retries(logging.Handler):
    """Sets ``retried`` when the openai SDK logs that it will retry a request."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retried = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Retrying request"):
            self.retried.set()


@pytest.fixture
def sdk_retries() -> Iterator[_Retries]:
    logger = logging.getLogger("openai._base_client")
    handler, level = _Retries(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_a_model_connect_refused_by_the_sockets_full_queue_is_tried_again(make_server, tmp_path, sdk_retries):
    """A Unix socket whose accept queue is full (2048: uvicorn's backlog) refuses a connect at once
    with EAGAIN, where a TCP handshake would be retried by the kernel."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4096:
        pytest.skip("needs 4096 open files (the socket's queue of 2048, here and in the server)")
    srv = make_server({"RUNWATCH_MODEL_SOCKET": str(tmp_path / "model.sock")})
    client = _client(srv, "aiohttp")
    with stopped(srv):
        held = _fill_queue(srv.env["RUNWATCH_MODEL_SOCKET"])
        asking = asyncio.ensure_future(_ask(client))
        retried = asyncio.ensure_future(sdk_retries.retried.wait())  # refused once, going to try again
        await asyncio.wait({asking, retried}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        retried.cancel()
    for sock in held:
        sock.close()
    assert await asyncio.wait_for(asking, 30) == "".join(scenario_text(5))
    await client.close()
