import asyncio, time, sys, statistics
from bench import servers
from bench.frameworks import scripted, agent as child
from runwatch.client import AsyncRunwatch
from runwatch.client.run import RunBase
server = servers.runwatch_alone(servers.LOAD_CORE)
async def main():
    key = servers.agent_key(server)
    R, N = 10, 5000
    res = {}
    for mode in ["bare", "adapter", "adapter-notoken", "bare", "adapter", "adapter-notoken"]:
        spec = {"sdk_agent": scripted.openai_agents_agent(N, R+1)}
        rw = None if mode == "bare" else AsyncRunwatch(server.http_url, key)
        if mode == "adapter-notoken":
            RunBase.token = lambda self, text: None
        await child.openai_agents(spec, rw)
        c0 = time.process_time()
        for _ in range(R):
            await child.openai_agents(spec, rw)
        if rw: await rw.flush()
        res.setdefault(mode, []).append((time.process_time()-c0)/(R*N)*1e6)
        if rw: await rw.aclose()
    for m, v in res.items(): print(m, [round(x,2) for x in v])
try:
    asyncio.run(main())
finally:
    server.stop()
