"""``/ws``: the WebSocket endpoint, its protocol (and the AsyncAPI description and dashboard
constants generated from it), each watcher's connection and cursors, presence, and the direct
writes (``framing``, ``lane``, ``cutoff``) that put frames straight on a socket.

May import: ``runwatch.agents``, ``api.auth``, ``api.observability``. Never ``rest`` or ``sse``."""
