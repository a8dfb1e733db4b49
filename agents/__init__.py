"""runwatch's agent runtime: events, the bus, the store, agents, tools, the loop and its supervisor.

Import what you need to define agents from here::

    from runwatch.agents import Agent, ToolContext

    async def lookup(city: str, ctx: ToolContext) -> str:
        \"\"\"Find the weather in a city.\"\"\"
        await ctx.status(f"looking up {city}")
        return "sunny"

    weather = Agent(name="weather", instructions="Answer weather questions.", tools=[lookup])
"""

from runwatch.agents.loop.agent import Agent, AgentRegistry, UnknownAgent, load_agents
from runwatch.agents.loop.tools import Tool, ToolContext, ToolError, tool

__all__ = ["Agent", "AgentRegistry", "Tool", "ToolContext", "ToolError", "UnknownAgent", "load_agents", "tool"]
