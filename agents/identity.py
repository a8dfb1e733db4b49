"""Who is asking: a principal (a key, a token's subject, a dashboard session), its tenant and its role.

Roles are ordered: ``viewer`` reads and watches its tenant's runs; ``operator`` also starts and
cancels them; ``admin`` does everything, in every tenant, and manages keys. Every run belongs to
the tenant of whoever started it; a principal sees a run only if it is of its tenant (or it is an
admin) — anything else answers exactly as an unknown run would.

``agent`` stands outside that order: an agent that runs elsewhere reports its runs through the
ingest API (``agents/ingest``) and takes their controls back, for the runs it registered in its
tenant, and may do nothing else — it reads, lists, watches, starts, cancels and approves nothing.
Only ``admin`` includes it (an admin may do everything).
"""

from __future__ import annotations

import enum

import msgspec

#: The tenant of runs started with authentication off, and of admins whose credential names none.
DEFAULT_TENANT = "default"
#: Tenant names, of keys and of tokens alike (they appear in URLs, logs and metrics labels). ``\Z``,
#: not ``$``: a ``$`` lets a name end in a newline.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    #: An agent running elsewhere: the ingest API for the runs it registered, nothing else.
    AGENT = "agent"

    @property
    def rank(self) -> int:
        """Its place in the order viewer < operator < admin; ``agent`` has none (0, below them all)."""
        return _RANKS[self]

    def includes(self, other: Role) -> bool:
        """This role may do everything ``other`` may: along the order, and ``agent``'s only itself
        and ``admin`` (no ordered role includes ``agent``, and ``agent`` includes none of them)."""
        if other is Role.AGENT:
            return self is Role.AGENT or self is Role.ADMIN
        return self is not Role.AGENT and self.rank >= other.rank

    @classmethod
    def highest(cls, names: object) -> Role | None:
        """The highest role among ``names`` (a list of strings, or one string); None if none is known."""
        items = [names] if isinstance(names, str) else names if isinstance(names, list | tuple) else []
        known = [cls(n) for n in items if isinstance(n, str) and n in cls._value2member_map_]
        return max(known, key=lambda r: r.rank) if known else None


_RANKS = {Role.AGENT: 0, Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class Actor(msgspec.Struct, kw_only=True, frozen=True):
    """Who did something, as events carry it: the principal's id and display name (no secret)."""

    id: str
    name: str = ""


class Principal(msgspec.Struct, kw_only=True, frozen=True):
    """An authenticated caller. ``id`` is stable and safe to log (``key:<key id>``, ``jwt:<sub>``…);
    nothing here is secret."""

    id: str
    name: str
    tenant: str
    role: Role
    #: How it authenticated: ``key``, ``jwt``, ``session`` (dashboard cookie), ``ticket`` or ``off``.
    source: str
    #: The API key behind it (directly or through a session), so revoking the key ends it.
    key_id: str | None = None
    #: When its credential expires (epoch seconds); a WebSocket is closed 4401 then.
    expires_at: float | None = None

    def can(self, role: Role) -> bool:
        return self.role.includes(role)

    def sees(self, tenant: str) -> bool:
        """May read runs of ``tenant`` (an agent reads none: it reports its own through the ingest API)."""
        return self.role is Role.ADMIN or (tenant == self.tenant and self.role is not Role.AGENT)

    @property
    def scope(self) -> str | None:
        """The tenant lists are limited to, or None for every tenant (an admin)."""
        return None if self.role is Role.ADMIN else self.tenant

    @property
    def actor(self) -> Actor:
        return Actor(id=self.id, name=self.name)

    @property
    def attribution(self) -> Actor | None:
        """Whom events record as having done something: this actor; nobody with authentication off."""
        return None if self.source == "off" else self.actor


#: The principal of every request when authentication is off (``RUNWATCH_AUTH=off``).
NOBODY = Principal(id="anonymous", name="anonymous", tenant=DEFAULT_TENANT, role=Role.ADMIN, source="off")
