"""The ingest part (``python -m bench --only ingest``, issue 27): runs that agents elsewhere execute,
reported with ``runwatch.client`` from processes of their own — what they cost the server, how late
their tokens reach a watcher, what the client costs the agent, and an outage of the server.

``part.py`` runs the scenarios and reports them; ``agent.py`` is the agent process, ``watch.py`` the
watchers' process, ``outage.py`` the kill-and-restart scenario, ``child.py`` how the bench talks to
a process line by line. Method and targets: bench/README.md, "Ingest".
"""
