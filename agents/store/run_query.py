"""Listing runs: search words, filters, sort and keyset cursors, as SQL for SQLite and PostgreSQL.

A listing is one ``RunQuery``; ``list_sql`` turns it into one ``SELECT`` whose rows end with the
sort key and ``num``, and ``to_page`` turns those rows into a ``RunPage`` whose ``next`` cursor
continues exactly after the page's last row (keyset pagination: a run that starts meanwhile shifts
no page, and a deep page costs what the first does).

Search (``q``): every word of ``q`` must appear, as a prefix, in the run's input, answer or error —
SQLite's FTS5 index ``runs_fts`` or PostgreSQL's ``search`` tsvector (GIN index), both lowercasing
and splitting on anything but letters and digits — or ``q`` is a prefix of the run's id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runwatch.agents.errors import BadRequest
from runwatch.agents.store.base import Order, RunPage, RunQuery, RunSummary, Sort

#: Most words of ``q`` used (the rest are ignored), and most characters of one word.
MAX_WORDS = 16
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
_ID_PREFIX = re.compile(r"^[0-9A-Za-z_-]{4,64}$")


@dataclass(frozen=True)
class Dialect:
    #: The text of the ``n``-th (1-based) parameter.
    param: Callable[[int], str]
    #: The search condition, given the parameter holding ``words``' query.
    match: Callable[[str], str]
    #: The search words as this database's query language.
    words: Callable[[list[str]], str]
    #: The index of ``created_at``'s bucket, given the parameters of the start and the bucket size.
    bucket: Callable[[str, str], str]


SQLITE = Dialect(
    param=lambda n: f"?{n}",
    match=lambda p: f"num IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH {p})",
    words=lambda ws: " ".join(f'"{w}"*' for w in ws),
    bucket=lambda start, size: f"CAST((created_at - {start}) / {size} AS INTEGER)",
)
POSTGRES = Dialect(
    param=lambda n: f"${n}",
    match=lambda p: f"search @@ to_tsquery('simple', {p})",
    words=lambda ws: " & ".join(f"{w}:*" for w in ws),
    bucket=lambda start, size: f"floor((created_at - {start}) / {size})::bigint",
)


def search_words(q: str) -> list[str]:
    """The words of a search, lowercased: letters and digits only, so none can be query syntax."""
    return [w[:MAX_WORD] for w in _WORD.findall(q.lower())][:MAX_WORDS]


def list_sql(query: RunQuery, dialect: Dialect, columns: str) -> tuple[str, list[Any]]:
    """One ``SELECT`` of ``columns``, then the sort key, then ``num``, for ``query`` (one row more
    than the limit: its presence says there is a next page). A cursor carries its listing's sort
    and order, which win over ``query``'s."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return dialect.param(len(args))

    for column in ("status", "agent", "model", "tenant"):
        if (value := getattr(query, column)) is not None:
            where.append(f"{column} = {arg(value)}")
    if query.since is not None:
        where.append(f"created_at >= {arg(query.since)}")
    if query.until is not None:
        where.append(f"created_at < {arg(query.until)}")
    if query.q is not None and query.q.strip():
        found = []
        if words := search_words(query.q):
            found.append(dialect.match(arg(dialect.words(words))))
        if _ID_PREFIX.match(prefix := query.q.strip()):
            found.append(f"(id >= {arg(prefix)} AND id < {arg(prefix + '~')})")
        where.append("(" + " OR ".join(found) + ")" if found else "false")
    sort, order = query.sort, query.order
    if query.cursor is not None:
        sort, order, value, num = parse_cursor(query.cursor)
    key = SORT_KEYS[sort]
    less = "<" if order == "desc" else ">"
    if query.cursor is not None:
        if sort == "created":
            where.append(f"num {less} {arg(num)}")
        else:
            where.append(f"({key} {less} {arg(value)} OR ({key} = {arg(value)} AND num {less} {arg(num)}))")
    sql = f"SELECT {columns}, {key}, num FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    direction = order.upper()
    ordering = f"num {direction}" if sort == "created" else f"{key} {direction}, num {direction}"
    sql += f" ORDER BY {ordering} LIMIT {arg(query.limit + 1)}"
    return sql, args


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
    listing, value, num = cursor.split(":")
    sort, order = listing.split(".")
    return sort, order, float(value), min(int(num), MAX_NUM)  # type: ignore[return-value]


def to_page(rows: list[tuple], query: RunQuery, summary: Callable[[tuple], RunSummary]) -> RunPage:
    """A page from ``list_sql``'s rows (each ending with the sort key and ``num``)."""
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    following = None
    if more and rows:
        key, num = rows[-1][-2], rows[-1][-1]
        sort, order = (query.sort, query.order) if query.cursor is None else parse_cursor(query.cursor)[:2]
        following = str(num) if (sort, order) == ("created", "desc") else f"{sort}.{order}:{float(key)!r}:{num}"
    return RunPage(runs=[summary(r) for r in rows], next=following)
