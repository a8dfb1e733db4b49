"""runwatch for the OpenAI Agents SDK (``pip install "runwatch[openai-agents]"``, ``import agents``).

Importing this package does not import the SDK; its names do, on first use::

    from agents import add_trace_processor
    from runwatch.client.openai_agents import RunwatchProcessor, run_streamed

See docs/frameworks.md.
"""

from __future__ import annotations
