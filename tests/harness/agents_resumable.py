"""Agents the cluster tests load with RUNWATCH_AGENTS: resumable ones (one needs approvals), and one not."""

from runwatch.agents import Agent
from runwatch.agents.offline.demo import deploy

steady = Agent(
    name="steady",
    instructions="Answer at length.",
    description="a resumable agent: another instance continues its runs",
    resumable=True,
)
fragile = Agent(name="fragile", instructions="Answer at length.", description="a run that dies with its instance")
careful = Agent(
    name="careful",
    instructions="Deploy when asked; a person approves each deploy.",
    description="a resumable agent whose deploys need approval",
    tools=[deploy],
    resumable=True,
)
