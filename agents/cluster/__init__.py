"""Runs on many instances, over Redis: the shared run queue and leases, the supervisor that
takes queued runs, keeping and taking over leases, and the deployment's control channel (what
instances tell each other) with the inbox of runs another instance executes.

May import: the vocabulary, ``loop``, ``runs``, the ``bus`` and ``store`` contracts, and redis-py.
Never ``runwatch.api``."""
