"""Where SQLite's and PostgreSQL's SQL differ, so that each statement is written once for both.

A statement is written once with a ``Dialect``'s pieces (its placeholders, ``param``; its search,
time buckets and lists); each backend only runs it. A statement and its parameters travel together
as a ``Statement``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: One statement and its parameters, in order.
Statement = tuple[str, list[Any]]


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
    #: The condition that ``column`` is one of the strings ``values``, their parameters added to ``params``.
    among: Callable[[str, list[str], Params], str]


SQLITE = Dialect(
    param=lambda n: f"?{n}",
    match=lambda p: f"num IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH {p})",
    words=lambda ws: " ".join(f'"{w}"*' for w in ws),
    bucket=lambda start, size: f"CAST((created_at - {start}) / {size} AS INTEGER)",
    among=lambda column, values, params: f"{column} IN ({','.join(map(params, values))})",
)
POSTGRES = Dialect(
    param=lambda n: f"${n}",
    match=lambda p: f"num IN (SELECT num FROM run_search WHERE search @@ to_tsquery('simple', {p}))",
    words=lambda ws: " & ".join(f"{w}:*" for w in ws),
    bucket=lambda start, size: f"floor((created_at - {start}) / {size})::bigint",
    among=lambda column, values, params: f"{column} = ANY({params(list(values))}::text[])",
)


class Params:
    """The parameters of a statement being built: ``params(value)`` adds one and gives its placeholder."""

    def __init__(self, dialect: Dialect) -> None:
        self._param = dialect.param
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self._param(len(self.values))
