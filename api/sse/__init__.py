"""``GET /api/runs/{id}/stream``: the Server-Sent Events fallback and each open stream.

May import: ``runwatch.agents``, ``api.auth``, ``api.http_errors``. Never ``ws`` or ``rest``."""
