"""The ``runwatch`` command: ``serve``, ``migrate``, ``keys`` (straight in the database), and the
client commands ``run`` and ``agents`` with the SSE reader they follow a run by.

May import: anything in ``runwatch.api`` and ``runwatch.agents`` — lazily, so ``--help`` and the
client commands start fast."""

from runwatch.api.cli.commands import main

__all__ = ["main"]
