"""Listing runs: search over input, answer, error and id; filters; sort with keyset pages — on
SQLite (FTS5) and PostgreSQL (full-text search), and over REST."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from runwatch.agents.errors import BadRequest
from runwatch.agents.events import (
    Published,
    RunFinished,
    RunQueued,
    RunStarted,
    StepFinished,
    StepStarted,
    Token,
    Totals,
    Usage,
    encode,
)
from runwatch.agents.store import PostgresStore, RunQuery, SQLiteStore
from tests.harness.services import postgres_database


async def add_run(
    store,
    run_id: str,
    *,
    input: str = "hello",
    answer: str | None = None,
    error: str | None = None,
    model: str = "m",
    ts: float = 1000.0,
    tokens: int = 1,
    cost: float | None = None,
    duration: float | None = 1.0,
) -> None:
    """A run's lifecycle, appended to the store as the bus would (with times of our choosing); its
    ``answer`` streamed as tokens and kept as the run's supervisor keeps it."""
    events: list = [
        RunQueued(run_id=run_id, agent="demo", input=input, model=model, ts=ts),
        RunStarted(run_id=run_id, agent="demo", ts=ts),
        StepStarted(run_id=run_id, index=0, model=model, ts=ts),
        # The answer streams in two tokens, as models do.
        *(Token(run_id=run_id, text=part, ts=ts) for part in ([answer[:5], answer[5:]] if answer else [])),
        StepFinished(
            run_id=run_id,
            index=0,
            finish_reason="stop",
            usage=Usage(output_tokens=tokens),
            cost=cost,
            ttft=0.25,
            duration=1.25,
            ts=ts,
        ),
    ]
    if duration is not None:
        status = "failed" if error else "succeeded"
        if answer is not None and status == "succeeded":
            store.keep_answer(run_id, answer)
        events.append(RunFinished(run_id=run_id, status=status, error=error, totals=Totals(), ts=ts + duration))
    for seq, event in enumerate(events, 1):
        event.seq = seq
        store.append(Published(run_id, seq, type(event).__struct_config__.tag, encode(event), event))
    await store.flush()


async def ids(store, **query) -> list[str]:
    return [r.id for r in (await store.list_runs(RunQuery(**query))).runs]


async def test_search_finds_a_word_of_the_answer_the_input_or_the_error(store):
    await add_run(store, "a1", answer="The Deployment finished without incident")
    await add_run(store, "a2", input="summarise the quarterly report")
    await add_run(store, "a3", error="TimeoutError: the tool took too long", duration=2.0)
    await store.flush()
    assert await ids(store, q="deployment") == ["a1"]
    assert await ids(store, q="QUARTERLY") == ["a2"]
    assert await ids(store, q="timeouterror") == ["a3"]
    assert await ids(store, q="nothing-like-this") == []


async def test_every_word_must_match_each_as_a_prefix(store):
    await add_run(store, "b1", answer="deploying version 2.4.1 to production")
    await add_run(store, "b2", answer="deploying to staging")
    await store.flush()
    assert await ids(store, q="deploy") == ["b2", "b1"]
    assert await ids(store, q="deploy prod") == ["b1"]
    assert await ids(store, q="staging prod") == []


async def test_query_syntax_in_the_search_is_taken_as_words(store):
    await add_run(store, "c1", answer='he said "NEAR(alpha beta)" & OR -x * :')
    await store.flush()
    assert await ids(store, q='"near(alpha') == ["c1"]
    assert await ids(store, q='& | ! : * ( ) "') == []  # no word: nothing matches, nothing breaks


@pytest.mark.parametrize("matches", [1, 4])
async def test_a_search_pages_alike_whether_the_newest_runs_hold_its_matches_or_not(store, matches):
    """(PostgreSQL looks among the newest runs first, then asks its index: 3 here, not 5,000.)"""
    store.search_newest = 3
    for i in range(6):
        await add_run(store, f"n{i}", answer="needle" if i < matches else "hay")
    seen, cursor = [], None
    while True:
        page = await store.list_runs(RunQuery(q="needle", limit=2, cursor=cursor))
        seen += [r.id for r in page.runs]
        if not (cursor := page.next):
            break
    assert seen == [f"n{i}" for i in reversed(range(matches))]


async def test_the_start_or_the_end_of_a_run_id_finds_the_run(store):
    await add_run(store, "0192abcdef01")
    await add_run(store, "0193aaaaaaaa")
    assert await ids(store, q="0192ab") == ["0192abcdef01"]
    assert await ids(store, q="cdef01") == ["0192abcdef01"]  # (the list shows an id's start and end)


async def test_words_inside_file_names_addresses_and_versions_are_found(store):
    await add_run(store, "w1", answer="edit config.yaml, mail bob@example.com, ship v1.2.3 from /usr/local/bin")
    for word in ("yaml", "example", "config.yaml", "local", "v1"):
        assert await ids(store, q=word) == ["w1"], word


async def test_a_run_id_part_is_found_where_the_collation_is_not_c():
    """Most PostgreSQL databases sort text by a language's rules (here ICU's en-US), not bytes."""
    async with postgres_database("LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8' TEMPLATE template0") as url:
        store = PostgresStore(url)
        await store.open()
        try:
            await add_run(store, "0192abcdef01")
            await add_run(store, "0192ac000000")
            await add_run(store, "ffff00000000")
            assert await ids(store, q="0192ab") == ["0192abcdef01"]
            assert await ids(store, q="ffff") == []  # (four hex digits: a word, not an id)
            assert await ids(store, q="ffff00") == ["ffff00000000"]
        finally:
            await store.close()


async def test_the_answer_kept_for_a_run_is_written_with_its_end(store):
    store.keep_answer("l1", "final zebra\u0000 answer " + "x" * 20_000)  # (a model may stream U+0000)
    await add_run(store, "l1")
    summary = await store.get_run("l1")
    assert summary.answer_preview.startswith("final zebra") and len(summary.answer_preview) == 280
    assert await ids(store, q="zebra") == ["l1"]
    assert not store._answers  # forgotten once written


async def test_the_answer_preview_and_ttft_are_in_the_summary(store):
    await add_run(store, "p1", answer="x" * 1000)
    await store.flush()
    summary = await store.get_run("p1")
    assert summary.answer_preview == "x" * 280
    assert summary.ttft == 0.25


async def test_filters_by_model_and_time(store):
    await add_run(store, "m1", model="gpt-4o", ts=100.0)
    await add_run(store, "m2", model="gpt-4o-mini", ts=200.0)
    await add_run(store, "m3", model="gpt-4o", ts=300.0)
    await store.flush()
    assert await ids(store, model="gpt-4o") == ["m3", "m1"]
    assert await ids(store, since=150.0) == ["m3", "m2"]
    assert await ids(store, since=150.0, until=300.0) == ["m2"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("cost", ["s3", "s1", "s2", "s4"]),  # unpriced (null) last
        ("tokens", ["s4", "s2", "s3", "s1"]),
        ("duration", ["s2", "s4", "s1", "s3"]),  # unfinished last
    ],
)
async def test_sort_pages_through_every_run_once_in_order(store, sort, expected):
    await add_run(store, "s1", cost=0.5, tokens=10, duration=3.0)
    await add_run(store, "s2", cost=0.1, tokens=30, duration=9.0)
    await add_run(store, "s3", cost=2.0, tokens=20, duration=None)
    await add_run(store, "s4", cost=None, tokens=40, duration=5.0)
    await store.flush()
    seen, cursor = [], None
    while True:
        page = await store.list_runs(RunQuery(sort=sort, limit=1, cursor=cursor))
        seen += [r.id for r in page.runs]
        if not (cursor := page.next):
            break
    assert seen == expected
    assert await ids(store, sort=sort, order="asc") == expected[::-1]


async def test_a_cursor_carries_its_sort_and_a_made_up_one_is_refused(store):
    for i in range(3):
        await add_run(store, f"k{i}", cost=float(i))
    first = await store.list_runs(RunQuery(sort="cost", limit=1))
    assert first.next.startswith("cost.desc:")
    rest = await store.list_runs(RunQuery(cursor=first.next))  # (no sort given: the cursor's)
    assert [r.id for r in rest.runs] == ["k1", "k0"]
    with pytest.raises(BadRequest, match="pass the 'next' of the previous page"):
        await store.list_runs(RunQuery(cursor="cost:1"))
    with pytest.raises(BadRequest, match="not one a listing gave"):  # (no bigint holds it)
        await store.list_runs(RunQuery(cursor="tokens.desc:1e999:5"))


async def test_a_database_from_before_search_is_indexed_when_opened(tmp_path):
    path = tmp_path / "old.sqlite3"
    store = SQLiteStore(path)
    await store.open()
    await add_run(store, "old1", answer="a venerable answer")
    await store.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE runs_fts; DROP TRIGGER runs_fts_insert; DROP TRIGGER runs_fts_update;")
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await ids(store, q="venerable") == ["old1"]
    finally:
        await store.close()


async def test_the_rest_api_searches_a_word_only_in_the_answer(make_server):
    server = make_server()
    await server.run_to_end("tell me about lighthouses")  # the offline model answers in its own words
    async with server.client() as client:
        found = (await client.get("/api/runs", params={"limit": 5})).json()["runs"][0]
        answer, asked = found["answer_preview"], found["input"].lower()
        word = next(w for w in answer.replace(".", " ").split() if w.isalpha() and w.lower() not in asked)
        r = await client.get("/api/runs", params={"q": word})
    assert r.status_code == 200
    assert [run["id"] for run in r.json()["runs"]] == [found["id"]]


def test_a_bad_cursor_is_a_400_saying_what_to_do(server):
    r = httpx.get(server.url + "/api/runs", params={"sort": "cost", "cursor": "x"}, headers=server.auth)
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request" and "cursor" in r.json()["detail"]
