"""External runs: agents that run elsewhere report their runs here and take controls back.

An agent in any process registers a run once per ``(tenant, external_id)`` (``IngestService.register``),
posts its events in numbered batches that are stored exactly once, in order (``post``: the client's
counter ``n``), renews its lease by posting (silent past it, the run ends ``agent_lost``), and reads
the run's controls — cancel, approval decisions, people's messages — by cursor ``c`` (``controls``).
The run service hands people's input to external runs through this room (``IngestService`` is its
``Reported`` part); the transports (``runwatch.api.ingest``) only decode requests and answer.

Modules: ``limits`` (every bound, stated once), ``wire`` (what agents send and get), ``batch`` (a
batch decoded and checked, nothing applied), ``controls`` (a run's pending controls and its long
polls), ``approvals`` (a run's open approvals, decided first-wins against the agent's schema),
``state`` (one external run, and its rebuilding from the stored events), ``runs`` (the runs live
here, and who reports each), ``registration``, ``people`` (cancels, decisions, messages),
``leases`` (``agent_lost``, approvals' expiry) and ``service`` (``IngestService``: the door).

May import: the vocabulary (``events``, ``errors``, ``identity``), the ``bus`` and ``store``
contracts, ``runs.inbox`` (``Decision``, ``Steer``) and the loop's bounds on events (``loop.coalesce``,
``loop.tool_calls``: the same limits as runwatch's own events). Never ``runs``' service or
supervisor (it is handed the run service's admission as a part), ``cluster``, a backend, or
``runwatch.api``.
"""

from runwatch.agents.ingest.service import IngestService

__all__ = ["IngestService"]
