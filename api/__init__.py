"""runwatch's web side: the Litestar app, its REST/WebSocket/SSE endpoints and the CLI."""

__version__ = "0.1.0"
