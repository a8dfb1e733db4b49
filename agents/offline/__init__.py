"""The offline model (a scripted stand-in for an LLM, spoken to over the OpenAI streaming
protocol), its streams, and the built-in ``demo`` agent with its offline tools and sample files.

May import: the vocabulary and ``loop`` (to define the demo agent). Never ``runs``, ``cluster``
or ``runwatch.api``."""
