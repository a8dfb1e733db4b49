"""The agent loop: agents and their tools, and the runner that streams a model, makes the tool
calls it asks for and feeds the results back (``runner``, ``tool_calls``, ``model_stream``,
``coalesce``, ``prices``).

May import: the vocabulary (``runwatch.agents.events``, ``errors``, ``identity``, ``redact``) and
``runwatch.agents.runs.inbox`` (what people send a running run). Never ``runs``' service or
supervisor, ``cluster``, a backend, or ``runwatch.api``."""
