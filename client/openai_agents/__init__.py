"""runwatch for the OpenAI Agents SDK (``pip install "runwatch[openai-agents]"``, ``import agents``).

Importing this package does not import the SDK; its names do, on first use::

    from agents import add_trace_processor
    from runwatch.client.openai_agents import RunwatchProcessor, run_streamed

``RunwatchProcessor`` (``processor.py``) reports every run of the process from its traces;
``run_streamed`` (``streamed.py``) runs one agent as ``Runner.run_streamed`` does, with its tokens
and the dashboard's controls (cancel, approvals, messages). See docs/frameworks/openai-agents.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runwatch.client.optional import lazy

if TYPE_CHECKING:
    from runwatch.client.openai_agents.processor import RunwatchProcessor
    from runwatch.client.openai_agents.streamed import StreamedRun, run_streamed

__all__ = ["RunwatchProcessor", "StreamedRun", "run_streamed"]

#: Each public name, and the submodule that defines it (imported, with the SDK, on first access).
_WHERE = {"RunwatchProcessor": "processor", "run_streamed": "streamed", "StreamedRun": "streamed"}


__getattr__ = lazy(__name__, _WHERE)
