"""The Redis broker: a run's positions assigned by the one instance that owns it, its history in a
Redis Stream (then the store), and fan-out to every instance through one subscriber connection each.

Holds ``broker.RedisBroker`` (the ``base.Broker`` and ``base.Ownership`` the composition root builds,
and ``RedisBus``, which composes it with a ``Hub``) and its parts, each an object it holds: ``link``
(the connections and whether Redis is reachable), ``history`` (reads: the Stream, then the store),
``outbox`` (durable events sent on, in order), ``feed`` (the runs feed), ``follow`` (runs other
instances own) and ``owner`` (runs this one owns); ``scripts`` is the Lua they publish with.

May import: the vocabulary (``runwatch.agents.events``), the rest of ``runwatch.agents.bus`` (its
contracts, the hub, the sequencer, the node) and redis-py. Nothing outside the bus.
"""

from runwatch.agents.bus.redis.broker import RedisBroker, RedisBus, StoreMismatch

__all__ = ["RedisBroker", "RedisBus", "StoreMismatch"]
