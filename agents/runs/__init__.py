"""Runs on this instance: the run service (the one door the transports use), the supervisor that
admits runs (and the ``Supervising`` contract it shares with the cluster's), the executor that runs
them on their slots, each run's handle and inbox, people's input, take-over, threads, limits.

May import: the vocabulary, ``loop``, and the ``bus`` and ``store`` contracts (``base``). The
concrete backends are named only by the composition root (``runwatch.api.runtime``); never
``runwatch.api``."""
