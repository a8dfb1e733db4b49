"""Listing runs: search words, filters, sort and keyset cursors, as SQL for SQLite and PostgreSQL.

A listing is one ``RunQuery``; ``list_sql`` turns it into one ``SELECT`` whose rows end with the
sort key and ``num``, and ``to_page`` turns those rows into a ``RunPage`` whose ``next`` cursor
continues exactly after the page's last row (keyset pagination: a run that starts meanwhile shifts
no page, and a deep page costs what the first does).

Search (``q``): every word of ``q`` must appear, as a prefix, in the run's input, answer or error —
SQLite's FTS5 index ``runs_fts`` or PostgreSQL's ``run_search`` tsvectors (GIN index), both
lowercasing and splitting on anything but letters and digits — or ``q`` (six or more hex digits) is
a part of the run's id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from runwatch.agents.errors import BadRequest
from runwatch.agents.store.base import Order, RunPage, RunQuery, RunSummary, Sort
from runwatch.agents.store.dialect import Dialect, Params, Statement

#: Most words of ``q`` used (the rest are ignored), and the fewest and most characters of one (a
#: one-letter prefix matches nearly everything: it is left out).
MAX_WORDS = 8
MIN_WORD = 2
MAX_WORD = 64

#: The sort keys. Unknown values (a running run's duration, an unpriced run's cost) sort as -1:
#: last newest-first, first oldest-first. Every key is a number, so a cursor is two numbers.
SORT_KEYS: dict[str, str] = {
    "created": "num",
    "duration": "COALESCE(finished_at - started_at, -1)",
    "tokens": "(input_tokens + output_tokens)",
    "cost": "COALESCE(cost, -1)",
}

#: Run numbers are signed 64-bit integers in both databases.
MAX_NUM = 2**63 - 1

_WORD = re.compile(r"[^\W_]+")
#: Run ids are hexadecimal: six or more hex digits are looked up as a part of an id too.
_ID_PREFIX = re.compile(r"^[0-9a-f]{6,32}$")


def search_words(q: str) -> list[str]:
    """The words of a search, lowercased: letters and digits only, so none can be query syntax."""
    return [w[:MAX_WORD] for w in _WORD.findall(q.lower()) if len(w) >= MIN_WORD][:MAX_WORDS]


def list_sql(
    query: RunQuery, dialect: Dialect, columns: str, *, newest: int | None = None, materialize: bool = False
) -> Statement:
    """One ``SELECT`` of ``columns``, then the sort key, then ``num``, for ``query`` (one row more
    than the limit: its presence says there is a next page). A cursor carries its listing's sort
    and order, which win over ``query``'s.

    ``newest``: look among that many newest runs (after the cursor) only. ``materialize``: find the
    search's matches first, by the search index (PostgreSQL's planner, unable to tell how many runs
    a prefix search matches, may otherwise walk every run newest first looking for a rare word)."""
    where: list[str] = []
    arg = Params(dialect)
    for column in ("status", "agent", "model", "tenant"):
        if (value := getattr(query, column)) is not None:
            where.append(f"{column} = {arg(value)}")
    if query.since is not None:
        where.append(f"created_at >= {arg(query.since)}")
    if query.until is not None:
        where.append(f"created_at < {arg(query.until)}")
    with_clause = ""
    if query.q is not None and query.q.strip():
        found = []
        if words := search_words(query.q):
            match = dialect.match(arg(dialect.words(words)))
            if materialize:
                with_clause = f"WITH matching AS MATERIALIZED (SELECT num FROM runs WHERE {match}) "
                match = "num IN (SELECT num FROM matching)"
            found.append(match)
        if _ID_PREFIX.match(prefix := query.q.strip()):
            found.append(id_part(prefix, arg))
        where.append("(" + " OR ".join(found) + ")" if found else "false")
    sort, order, value, num = parse_cursor(query.cursor) if query.cursor is not None else (*listing(query), 0.0, 0)
    key = SORT_KEYS[sort]
    less = "<" if order == "desc" else ">"
    source = "runs"
    if query.cursor is not None:
        if sort == "created":
            after = f"num {less} {arg(num)}"
            where.append(after)
        else:  # (a row comparison: both databases walk the sort's index from the cursor on)
            where.append(f"({key}, num) {less} ({arg(value)}, {arg(num)})")
    if newest is not None:
        inner = f" WHERE {after}" if query.cursor is not None and sort == "created" else ""
        source = f"(SELECT * FROM runs{inner} ORDER BY num DESC LIMIT {arg(newest)}) AS runs"
    sql = f"{with_clause}SELECT {columns}, {key}, num FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    direction = order.upper()
    ordering = f"num {direction}" if sort == "created" else f"{key} {direction}, num {direction}"
    sql += f" ORDER BY {ordering} LIMIT {arg(query.limit + 1)}"
    return sql, arg.values


def id_part(part: str, arg: Callable[[Any], str]) -> str:
    """Ids holding the hex ``part`` anywhere: the list shows an id's start and end, and either may
    be what someone copies. (A scan of the ids, not of the index: hex has no LIKE wildcard.)"""
    return f"id LIKE '%' || {arg(part)} || '%'"


#: A cursor: ``NUM`` (newest first, the default listing) or ``SORT.ORDER:KEY:NUM``.
CURSOR = r"^(\d{1,19}|(created|duration|tokens|cost)\.(asc|desc):-?\d{1,20}(\.\d{1,20})?(e[-+]?\d{1,3})?:\d{1,19})$"
_CURSOR = re.compile(CURSOR)


def parse_cursor(cursor: str) -> tuple[Sort, Order, float, int]:
    if not _CURSOR.match(cursor):
        raise BadRequest(
            f"cursor {cursor[:40]!r} is not one a listing gave: pass the 'next' of the previous page,"
            " or leave cursor out to start again"
        )
    if ":" not in cursor:
        return "created", "desc", 0.0, min(int(cursor), MAX_NUM)
    how, value, num = cursor.split(":")
    sort, order = how.split(".")
    key = float(value)
    if not abs(key) < 2**53:  # (keys are counts, seconds and dollars; a bigint parameter must hold it)
        raise BadRequest(f"cursor {cursor[:40]!r} is not one a listing gave: leave cursor out to start again")
    return sort, order, key, min(int(num), MAX_NUM)  # type: ignore[return-value]


def listing(query: RunQuery) -> tuple[Sort, Order]:
    """The sort and order a query lists by: its cursor's, or its own."""
    return parse_cursor(query.cursor)[:2] if query.cursor is not None else (query.sort, query.order)


def to_page(rows: list[tuple], query: RunQuery, summary: Callable[[tuple], RunSummary]) -> RunPage:
    """A page from ``list_sql``'s rows (each ending with the sort key and ``num``)."""
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    following = None
    if more and rows:
        key, num = rows[-1][-2], rows[-1][-1]
        sort, order = listing(query)
        following = str(num) if (sort, order) == ("created", "desc") else f"{sort}.{order}:{float(key)!r}:{num}"
    return RunPage(runs=[summary(r) for r in rows], next=following)
