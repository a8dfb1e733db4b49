"""The OpenAPI document describes the ingest API, the events body included."""

from __future__ import annotations

from runwatch.agents.ingest.wire import AGENT_TYPES


async def test_openapi_describes_the_events_body_with_every_type_an_agent_sends(server):
    async with server.client() as c:
        spec = (await c.get("/schema/openapi.json")).json()
    route = spec["paths"]["/api/ingest/runs/{run_id}/events"]["post"]
    body = route["requestBody"]["content"]["application/json"]["schema"]
    items = body["properties"]["events"]["items"]
    variants = items["anyOf"] if "anyOf" in items else items["oneOf"]
    types = {v["properties"]["type"]["enum"][0] for v in variants}
    assert types == AGENT_TYPES
    assert all("n" in v["required"] for v in variants)
    assert {"409", "413", "422"} <= set(route["responses"])
