import asyncio, time, cProfile, pstats
from bench import servers
from runwatch.client import AsyncRunwatch
server = servers.runwatch_alone(servers.LOAD_CORE)
async def main():
    rw = AsyncRunwatch(server.http_url, servers.agent_key(server))
    async with rw.run(agent="x", input="go") as run:
        run.token("a")
    pr = cProfile.Profile()
    async def on(): pr.enable()
    async def off(): pr.disable()
    await asyncio.wrap_future(rw._core.engine.submit(on()))
    for i in range(50):
        async with rw.run(agent="x", input="go") as run:
            run.token("a")
    await asyncio.wrap_future(rw._core.engine.submit(off()))
    pstats.Stats(pr).sort_stats("tottime").print_stats(30)
    await rw.aclose()
try:
    asyncio.run(main())
finally:
    server.stop()
