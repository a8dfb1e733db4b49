"""The room protocol of node_rooms.js on Python's ``websockets`` library, fanning out with ``broadcast()``."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

WORDS = "the agent streams every token as it is written while watchers follow along".split()
rooms: dict[str, set[ServerConnection]] = {}
streams: set[asyncio.Task[None]] = set()


async def stream(room: str, chunks: int) -> None:
    for seq in range(1, chunks + 1):
        text = WORDS[seq % len(WORDS)] + " "
        message = {"type": "token", "text": text, "run_id": room, "seq": seq, "ts": time.time()}
        broadcast(rooms.get(room, ()), json.dumps(message))
        await asyncio.sleep(0)  # a model stream yields between chunks
    done = {"type": "run.finished", "status": "succeeded", "run_id": room, "seq": chunks + 1, "ts": time.time()}
    broadcast(rooms.get(room, ()), json.dumps(done))


async def handler(ws: ServerConnection) -> None:
    joined: set[str] = set()
    try:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "join":
                rooms.setdefault(msg["room"], set()).add(ws)
                joined.add(msg["room"])
                await ws.send(json.dumps({"type": "ack", "room": msg["room"]}))
            elif msg["type"] == "start":
                task = asyncio.create_task(stream(msg["room"], msg["chunks"]))
                streams.add(task)
                task.add_done_callback(streams.discard)
    finally:
        for room in joined:
            rooms.get(room, set()).discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=16):
        print(f"py rooms listening on {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8901))
