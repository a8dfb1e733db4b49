"""REST: runs (start, list, inspect, replay, cancel), the people on a run (approvals, messages,
threads, who is watching) and the overview page's figures.

May import: ``runwatch.agents`` (the run service and the vocabulary), ``api.auth`` guards and
``api.http_errors``. Never ``ws`` or ``sse``."""
