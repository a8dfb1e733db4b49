"""The front door's cost: uvicorn's httptools protocol with and without it, in one process.

``python -m bench.front_door`` feeds the same browser-like request (12 headers, 0.6 KiB) to each
protocol on an in-memory transport, with a minimal ASGI app, and prints the median microseconds
per request of several rounds: on one kept-alive connection, and on a new connection each time.
No sockets: what differs between the two is the protocol's own work.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from runwatch.api.front_door import DoorLimits, FrontDoor

REQUEST = (
    b"GET /api/runs?limit=50 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: keep-alive\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n"
    b"Accept: application/json\r\nAccept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: http://127.0.0.1:8000/\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Cookie: runwatch_session=" + b"s" * 43 + b"; theme=dark\r\n\r\n"
)
ROUNDS = 11
PER_ROUND = 5_000


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Transport(asyncio.Transport):
    """Takes what is written and forgets it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(protocol: Any) -> None:
    protocol.data_received(REQUEST)
    while not protocol.cycle.response_complete:  # noqa: ASYNC110 (the protocol's own state, polled)
        await asyncio.sleep(0)


async def kept_alive(cls: type, config: Config) -> float:
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport())
    start = time.process_time()
    for _ in range(PER_ROUND):
        await _serve(protocol)
    elapsed = time.process_time() - start
    protocol.connection_lost(None)
    return elapsed / PER_ROUND * 1e6


async def new_connections(cls: type, config: Config) -> float:
    state = ServerState()
    start = time.process_time()
    for _ in range(PER_ROUND):
        protocol = cls(config=config, server_state=state, app_state={})
        protocol.connection_made(Transport())
        await _serve(protocol)
        protocol.connection_lost(None)
    return (time.process_time() - start) / PER_ROUND * 1e6


async def main() -> None:
    config = Config(app, lifespan="off", log_config=None, access_log=False)
    config.load()
    door = FrontDoor(DoorLimits(32 * 1024, 100, 15.0, 10_000)).protocol()
    results: dict[str, dict[str, list[float]]] = {"kept alive": {}, "new connection": {}}
    for _ in range(ROUNDS):  # interleaved, so that a busy machine slows both alike
        for name, cls in (("uvicorn", HttpToolsProtocol), ("front door", door)):
            results["kept alive"].setdefault(name, []).append(await kept_alive(cls, config))
            results["new connection"].setdefault(name, []).append(await new_connections(cls, config))
    for kind, by_name in results.items():
        medians = {name: statistics.median(times) for name, times in by_name.items()}
        extra = medians["front door"] - medians["uvicorn"]
        print(
            f"{kind}: uvicorn {medians['uvicorn']:.2f} µs/request, front door {medians['front door']:.2f}"
            f" ({extra:+.2f} µs, {extra / medians['uvicorn']:+.1%})"
        )


if __name__ == "__main__":
    uvloop.run(main())
