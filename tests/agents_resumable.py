"""Agents the cluster tests load with RUNWATCH_AGENTS: one resumable, one not."""

from runwatch.agents import Agent

steady = Agent(
    name="steady",
    instructions="Answer at length.",
    description="a resumable agent: another instance continues its runs",
    resumable=True,
)
fragile = Agent(name="fragile", instructions="Answer at length.", description="a run that dies with its instance")
