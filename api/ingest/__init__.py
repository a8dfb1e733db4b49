"""The ingest API over HTTP: agents running elsewhere register runs, post their events and read
their controls (``POST /api/ingest/runs``, ``POST /api/ingest/runs/{id}/events``,
``GET /api/ingest/runs/{id}/controls``; docs/ingest.md).

The handlers decode requests and answer; every rule is the ingest service's
(``runwatch.agents.ingest``), which they get by dependency injection like every handler.

May import: ``runwatch.agents`` (the ingest service and the vocabulary), ``api.auth`` guards and
``api.http_errors``. Never ``rest``, ``ws`` or ``sse``."""
