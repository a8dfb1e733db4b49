"""runwatch for LangChain and LangGraph (``pip install "runwatch[langchain]"``).

Importing this package does not import LangChain; its names do, on first use::

    from runwatch.client.langchain import RunwatchCallbackHandler, watch_graph

See docs/frameworks.md.
"""

from __future__ import annotations
