"""What the cluster asks of the bus about the runs this instance publishes (the Redis bus of
``agents/bus/`` gives it; the composition root passes it in): whether it may still publish a run,
and handing a run's log over to whichever instance publishes it next."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class Ownership(Protocol):
    @property
    def healthy(self) -> bool:
        """False while the broker is unreachable."""
        ...

    @property
    def on_connected(self) -> list[Callable[[], None]]:
        """Called each time the broker's connection is made (at start, and back after a loss)."""
        ...

    @property
    def on_fenced(self) -> list[Callable[[str], None]]:
        """Called with a run's id when the store refuses this instance's position in it (another
        instance owns it now): its publishes are refused from then on (``Fenced``)."""
        ...

    async def sent(self) -> None:
        """Return once everything published so far is durable and in the broker."""
        ...

    async def release(self, run_id: str) -> None:
        """Stop owning ``run_id`` once what it published is durable and in the broker (another
        instance publishes its next events). Raises ``TimeoutError`` if that takes too long."""
        ...

    def disown(self, run_id: str) -> None:
        """Stop owning ``run_id`` now (whoever takes it publishes next)."""
        ...

    def hold(self, run_id: str) -> None:
        """Make publishes of ``run_id`` wait, before they take a position, until ``unhold`` (its
        lease is renewed: it is still ours) or ``fence`` (it is not: they raise ``Fenced``)."""
        ...

    def unhold(self, run_id: str) -> None: ...

    def holding(self, run_id: str) -> bool: ...

    def fence(self, run_id: str) -> None:
        """Refuse further publishes to ``run_id`` from this instance until ``unfence``."""
        ...

    def unfence(self, run_id: str) -> None:
        """This instance holds the run again (took its job, claimed its lease): it may publish to it."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background, kept and closed with the bus; what it raises is logged."""
        ...
