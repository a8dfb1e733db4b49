import asyncio, time, httpx
from bench import servers
server = servers.runwatch_alone(servers.LOAD_CORE)
async def main():
    key = servers.agent_key(server)
    async with httpx.AsyncClient(base_url=server.http_url, headers={"Authorization": f"Bearer {key}"}) as c:
        await c.get("/api/health")
        c0=time.process_time(); t0=time.monotonic()
        for i in range(200):
            r = await c.get("/api/health")
        print("httpx GET CPU ms", (time.process_time()-c0)/200*1e3, "wall ms", (time.monotonic()-t0)/200*1e3)
try:
    asyncio.run(main())
finally:
    server.stop()
