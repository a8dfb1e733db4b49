import asyncio, time, cProfile, pstats, sys
from bench import servers
from runwatch.client import AsyncRunwatch
server = servers.runwatch_alone(servers.LOAD_CORE)
async def main():
    rw = AsyncRunwatch(server.http_url, servers.agent_key(server))
    async with rw.run(agent="x", input="go") as run:
        run.token("a")
    for n in (0, 1000):
        c0=time.process_time()
        for i in range(30):
            async with rw.run(agent="x", input="go") as run:
                run.step("m")
                for j in range(n): run.token("w1 ")
                run.step_done({"input_tokens":1,"output_tokens":n})
        await rw.flush()
        print(n, "tokens: CPU ms per run", (time.process_time()-c0)/30*1e3)
    if len(sys.argv) > 1:
        pr = cProfile.Profile(); 
        rw._core.engine.submit(asyncio.sleep(0)).result()
        pr.enable()
        for i in range(30):
            async with rw.run(agent="x", input="go") as run:
                run.token("a")
        pr.disable()
        pstats.Stats(pr).sort_stats("cumtime").print_stats(30)
    await rw.aclose()
try:
    asyncio.run(main())
finally:
    server.stop()
