"""runwatch for LangChain and LangGraph (``pip install "runwatch[langchain]"``).

Importing this package does not import LangChain; its names do, on first use::

    from runwatch.client.langchain import RunwatchCallbackHandler, watch_graph

- :class:`RunwatchCallbackHandler` (``callbacks.py``): pass it in a config's callbacks to report a
  chain, agent or graph into a runwatch run you opened.
- :func:`watch_graph` (``graph.py``): run a compiled graph as one runwatch run, with cancel,
  approvals (interrupts, ``HumanInTheLoopMiddleware``) and steering messages.
- :class:`RunwatchMessages`, :func:`steering_messages` (``messages.py``): hand people's messages to
  the graph at its next model call.

See docs/frameworks/langchain.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runwatch.client.optional import lazy

if TYPE_CHECKING:
    from runwatch.client.langchain.callbacks import RunwatchCallbackHandler
    from runwatch.client.langchain.graph import WatchedGraph, watch_graph
    from runwatch.client.langchain.messages import RunwatchMessages, steering_messages

#: Each public name, and the submodule that defines it.
_WHERE = {
    "RunwatchCallbackHandler": "callbacks",
    "watch_graph": "graph",
    "WatchedGraph": "graph",
    "RunwatchMessages": "messages",
    "steering_messages": "messages",
}

__all__ = ["RunwatchCallbackHandler", "RunwatchMessages", "WatchedGraph", "steering_messages", "watch_graph"]


__getattr__ = lazy(__name__, _WHERE)
