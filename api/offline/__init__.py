"""The offline model served over HTTP: ``POST /v1/chat/completions``, the budget of text its answers
in flight may hold, and the pacer that writes their streams.

May import: ``runwatch.agents.offline``, ``api.auth``, ``api.http_errors``."""
