import asyncio, collections
from bench import servers
from runwatch.client import AsyncRunwatch
server = servers.runwatch_alone(servers.LOAD_CORE)
async def main():
    rw = AsyncRunwatch(server.http_url, servers.agent_key(server))
    seen = collections.Counter()
    async def hook(request): seen[(request.method, request.url.path.split("/")[-1] if "controls" not in request.url.path else "controls")] += 1
    async def install():
        rw._core.engine.http.event_hooks["request"].append(hook)
        rw._core.engine.polls.event_hooks["request"].append(hook)
    await asyncio.wrap_future(rw._core.engine.submit(install()))
    for i in range(50):
        async with rw.run(agent="x", input="go") as run:
            run.step("m")
            for j in range(1000): run.token("w ")
            run.step_done(None)
    print(seen)
    await rw.aclose()
try:
    asyncio.run(main())
finally:
    server.stop()
