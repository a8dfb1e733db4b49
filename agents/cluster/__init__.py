"""Runs on many instances, over Redis: the shared run queue and leases, the supervisor that
takes queued runs (its taker), keeping and taking over leases, what it asks of the bus about the
runs it owns (``Ownership``), and the deployment's control channel (what instances tell each
other) with the inbox of runs another instance executes.

May import: the vocabulary, ``loop``, ``runs``, the ``bus`` and ``store`` contracts, and redis-py.
Never ``runwatch.api``."""
