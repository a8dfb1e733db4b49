"""Agents: a name, instructions, a model, tools and limits — defined in a few lines of Python.

User agents live in any importable module; ``load_agents("pkg.module")`` collects every
``Agent`` defined at its top level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runwatch.agents.errors import UnknownAgent
from runwatch.agents.loop.tools import Tool, as_tool


@dataclass
class Agent:
    name: str
    instructions: str
    tools: Sequence[Tool | Callable[..., Any]] = ()
    #: ``None``: the server's default model (``RUNWATCH_MODEL``).
    model: str | None = None
    description: str = ""
    max_steps: int = 10
    #: Seconds a run may take, queue time excluded; ``None``: the server's default.
    timeout: float | None = None
    #: When its instance stops mid-run (dies, or drains at shutdown), another instance — or this one,
    #: restarted — continues the run from its last finished step instead of failing it
    #: ``interrupted``. Its tools must then tolerate an unfinished call being made again.
    resumable: bool = False
    #: Every tool call of this agent waits for a person's approval (tools may also ask on their own).
    approval: bool = False
    _tools: dict[str, Tool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "_").isidentifier():
            raise ValueError(f"agent name {self.name!r} must be a word of letters, digits, '-' or '_'")
        self._tools = {}
        for obj in self.tools:
            tool = as_tool(obj)
            if tool.name in self._tools:
                raise ValueError(f"agent {self.name!r} has two tools named {tool.name!r}")
            self._tools[tool.name] = tool

    def tool(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def approval_reason(self, tool: Tool, arguments: dict[str, Any]) -> str | None:
        """Why a call of ``tool`` with ``arguments`` needs approval, or None if it does not."""
        reason = tool.approval_reason(arguments)
        if reason is None and self.approval:
            reason = f"agent {self.name} asks approval for every tool call"
        return reason

    def tool_specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self._tools.values()]

    @property
    def tool_names(self) -> list[str]:
        return list(self._tools)


class AgentRegistry:
    def __init__(self, agents: Iterable[Agent] = ()) -> None:
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            self.add(agent)

    def add(self, agent: Agent) -> None:
        self._agents[agent.name] = agent

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(sorted(self._agents)) or "none"
            raise UnknownAgent(f"unknown agent {name!r}; known agents: {known}") from None

    def find(self, name: str) -> Agent | None:
        """The agent of that name, or None (another instance may have agents this one lacks)."""
        return self._agents.get(name)

    def __iter__(self):
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)


def load_agents(module_path: str) -> list[Agent]:
    """Import ``module_path`` and return the ``Agent`` objects defined at its top level."""
    module = importlib.import_module(module_path)
    found = [obj for obj in vars(module).values() if isinstance(obj, Agent)]
    if not found:
        raise ValueError(f"module {module_path!r} defines no Agent at its top level")
    return found
