"""uvicorn's ``Server`` as ``runwatch serve`` runs it.

Four changes to uvicorn's own:

* **A front door.** Every connection, TCP and Unix, is read by ``api/front_door.py``'s protocol:
  request heads are bounded in size and header count, a request must arrive whole within the
  request timeout, and the connections held at once are bounded (the open-file limit is raised
  to fit them, or the bound lowered to fit it).

* **Drain first.** On SIGTERM/SIGINT the runtime is told at once (``begin_shutdown``), and watchers
  get the runs' final events and a 1001 before uvicorn closes their sockets (with 1012).
* **The startup heap is frozen.** Once the app has started, everything alive (the app, its routes,
  the SDKs' modules: some 165,000 objects) moves to the collector's permanent generation. Before,
  a full collection walked all of it: a 59 ms pause of the event loop, every watcher's frames and
  every stream's chunks waiting behind it (once in the 10 s of 100 offline-model streams).
  Objects made later are collected as before; startup objects that die later are freed by their
  reference counts (a cycle among them, or through a request in flight at that moment, would be
  kept: once, bounded). The listening socket is open by then, so a request that comes in at once
  may wait for that first collection.
* **One tick a second.** uvicorn wakes every 100 ms to see whether it should exit and, every tenth
  time, to renew its ``Date`` header. Here it wakes once a second for the header, and at once on a
  signal: an idle server wakes 2 times a second instead of 11 (2.8 to 0.7 ms of CPU a second).

And one addition: with the offline model, the app also listens on the runtime's ``model_socket``
(a Unix socket, ``api/model_client.py``), which its own runs read the model through. It is bound
before the TCP port opens (a socket another process holds stops the start, exit status 3) and
removed at shutdown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING

import structlog
import uvicorn

from runwatch.api.front_door import DoorLimits, FrontDoor, connection_budget
from runwatch.api.runtime import Runtime

if TYPE_CHECKING:
    from litestar import Litestar

    from runwatch.api.settings.config import Settings

log = structlog.get_logger()

#: uvicorn's ``on_tick`` renews the ``Date`` header on ticks that are multiples of this.
_TICKS_PER_SECOND = 10
#: uvicorn's exit status when it cannot start (``uvicorn.server.STARTUP_FAILURE``).
_STARTUP_FAILURE = 3


def uvicorn_config(
    app: Litestar, settings: Settings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """uvicorn's options as ``runwatch serve`` runs the app (the tests' in-process servers too)."""
    from runwatch.api.ws.framing import expose_server_send

    return uvicorn.Config(
        expose_server_send(app),
        host=settings.server.host if host is None else host,
        port=settings.server.port if port is None else port,
        log_config=None,
        access_log=False,
        ws_max_size=settings.ws.max_message_bytes,
        ws_ping_interval=settings.ws.heartbeat,
        ws_ping_timeout=settings.ws.heartbeat,
        # The protocol the fan-out writes frames to directly (api/ws/framing.py); no deflate, see docs.
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        limits = DoorLimits.of(runtime.settings)
        limits = dataclasses.replace(limits, max_connections=connection_budget(limits.max_connections))
        self.front_door = FrontDoor(limits)
        config.http = self.front_door.protocol()
        super().__init__(config)
        self._runtime = runtime
        self._exit = asyncio.Event()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = self.config.loaded and not self.should_exit
        super().handle_exit(sig, frame)
        try:  # a signal handler: the main thread, at any bytecode, hence call_soon_threadsafe
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before the loop started, or after it stopped
            return
        if first:
            loop.call_soon_threadsafe(self._runtime.begin_shutdown)
        loop.call_soon_threadsafe(self._exit.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        model_socket = self._runtime.model_socket
        unix: socket.socket | None = None
        if model_socket is not None:  # bound before the TCP port opens: a failure stops the start
            try:
                unix = model_socket.bind(self.config.backlog)
            except OSError as exc:
                log.error(
                    "server.model_socket_failed",
                    path=str(model_socket.path),
                    error=str(exc),
                    hint="set RUNWATCH_MODEL_SOCKET to another path, or to off to read the offline model over TCP",
                )
                sys.exit(_STARTUP_FAILURE)
        await super().startup(sockets)
        if unix is not None:
            await self._serve_unix(unix)
        gc.collect()
        gc.freeze()
        log.debug("server.heap_frozen", objects=gc.get_freeze_count())

    async def _serve_unix(self, sock: socket.socket) -> None:
        """Serve the app on the Unix socket ``sock`` too, as uvicorn serves its TCP port."""
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
            )

        loop = asyncio.get_running_loop()
        # ``backlog`` again: create_unix_server calls listen() itself, with 100 unless told
        self.servers.append(await loop.create_unix_server(create_protocol, sock=sock, backlog=config.backlog))
        log.info("server.model_socket", path=sock.getsockname())

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + _TICKS_PER_SECOND) % 864000
            try:
                async with asyncio.timeout(1.0):
                    await self._exit.wait()
            except TimeoutError:
                pass

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._runtime.drain()
        await super().shutdown(sockets)
        # Here, not only in ``serve``'s finally: after a signal, uvicorn raises it again on its way
        # out, and its default action ends the process before any finally runs.
        if self._runtime.model_socket is not None:
            self._runtime.model_socket.remove()
