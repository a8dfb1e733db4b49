// The runs list's query state (dashboard/js/runs-query.js): the address bar, the API query, and
// what the page can check itself.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULTS, apiQuery, hashOf, isFiltered, matchesHere, readState, sinceOf } from "../../../dashboard/js/runs-query.js";

const NOW = 1_800_000_000;
const state = (fields = {}) => ({ ...DEFAULTS, ...fields });
const read = (query) => readState(new URLSearchParams(query));

test("an empty query is the default state", () => {
  assert.deepEqual(read(""), DEFAULTS);
});

test("the query's known values are read", () => {
  assert.deepEqual(
    read("q=deploy&status=failed&agent=demo&model=m1&range=24h&sort=cost&order=asc"),
    { q: "deploy", status: "failed", agent: "demo", model: "m1", range: "24h", sort: "cost", order: "asc" },
  );
});

test("values the list does not know fall back to the defaults", () => {
  assert.deepEqual(read("status=exploded&range=2y&sort=colour&order=sideways"), DEFAULTS);
});

test("a search of spaces only is no search", () => {
  assert.equal(read("q=%20%20").q, "");
});

test("a value is cut at 200 characters", () => {
  assert.equal(read(`agent=${"a".repeat(500)}`).agent.length, 200);
});

test("the address is #/ when nothing differs from the defaults", () => {
  assert.equal(hashOf(state()), "#/");
});

test("the address carries only what differs from the defaults", () => {
  assert.equal(hashOf(state({ status: "failed", sort: "cost" })), "#/?status=failed&sort=cost");
});

test("a state read back from its address is the same state", () => {
  const original = state({ q: "a b&c", agent: "demo", range: "7d", order: "asc" });
  const hash = hashOf(original);
  assert.deepEqual(read(hash.slice(hash.indexOf("?") + 1)), original);
});

test("a time range starts its span before now, whole seconds", () => {
  assert.equal(sinceOf(state({ range: "1h" }), NOW + 0.7), NOW - 3600);
  assert.equal(sinceOf(state(), NOW), null);
});

test("the API query holds the trimmed search, the filters and the range's since", () => {
  const query = apiQuery(state({ q: "  deploy ", status: "failed", model: "m1", range: "24h" }), NOW);
  assert.deepEqual(Object.fromEntries(query), { q: "deploy", status: "failed", model: "m1", since: String(NOW - 86400) });
});

test("the API query leaves out the default sort and order, and names the others", () => {
  assert.equal(apiQuery(state(), NOW).toString(), "");
  assert.equal(apiQuery(state({ sort: "tokens", order: "asc" }), NOW).toString(), "sort=tokens&order=asc");
});

test("the list is filtered by any filter, sort, order or search", () => {
  assert.equal(isFiltered(state()), false);
  assert.equal(isFiltered(state({ q: " " })), false);
  for (const changed of [{ q: "x" }, { status: "running" }, { agent: "a" }, { range: "1h" }, { sort: "cost" }, { order: "asc" }]) {
    assert.equal(isFiltered(state(changed)), true, JSON.stringify(changed));
  }
});

test("a run matches here when its status, agent and model are the filters'", () => {
  const run = { status: "failed", agent: "demo", model: "m1", created_at: NOW };
  assert.equal(matchesHere(run, state({ status: "failed", agent: "demo", model: "m1" }), NOW), true);
  assert.equal(matchesHere(run, state({ status: "running" }), NOW), false);
  assert.equal(matchesHere(run, state({ agent: "other" }), NOW), false);
  assert.equal(matchesHere(run, state({ model: "m2" }), NOW), false);
});

test("a run created before the time range does not match here", () => {
  const range = state({ range: "1h" });
  assert.equal(matchesHere({ status: "running", agent: "a", model: "m", created_at: NOW - 3599 }, range, NOW), true);
  assert.equal(matchesHere({ status: "running", agent: "a", model: "m", created_at: NOW - 3601 }, range, NOW), false);
});
