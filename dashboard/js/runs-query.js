// @ts-check
// What the runs list shows, as it is written in the address bar (#/?q=deploy&status=failed&sort=cost)
// and as it is asked of GET /api/runs (docs/protocol.md): search, filters, time range and sort.

/** @typedef {import("./protocol.js").RunStatus} RunStatus */

/**
 * The runs list's state: what is in the address bar. Each value is a string; "" means "any".
 * @typedef {object} RunsQuery
 * @property {string} q the search (matched by the server)
 * @property {RunStatus | ""} status
 * @property {string} agent
 * @property {string} model
 * @property {string} range a preset of RANGES ("" any time)
 * @property {string} sort a value of SORTS
 * @property {"asc" | "desc"} order
 */

/** What the page knows of a run in the list (GET /api/runs, the runs feed). @typedef {{status: string, agent: string, model: string, created_at?: number | null}} ListedRun */

/** @type {RunStatus[]} */
export const STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];

// Time range presets: the URL keeps the preset, the request its `since` (now minus the span).
/** @type {{value: string, label: string, seconds: number | null}[]} */
export const RANGES = [
  { value: "", label: "any time", seconds: null },
  { value: "1h", label: "last hour", seconds: 3600 },
  { value: "24h", label: "last 24 h", seconds: 86400 },
  { value: "7d", label: "last 7 days", seconds: 7 * 86400 },
];

/** @type {{value: string, label: string}[]} */
export const SORTS = [
  { value: "created", label: "start" },
  { value: "duration", label: "duration" },
  { value: "tokens", label: "tokens" },
  { value: "cost", label: "cost" },
];

/** @type {Readonly<RunsQuery>} */
export const DEFAULTS = Object.freeze({ q: "", status: "", agent: "", model: "", range: "", sort: "created", order: "desc" });
const KEYS = /** @type {(keyof RunsQuery)[]} */ (Object.keys(DEFAULTS));

/**
 * The list's state from the hash query; values it does not know fall back to the defaults.
 * @param {URLSearchParams} params
 * @returns {RunsQuery}
 */
export function readState(params) {
  /** @type {Record<keyof RunsQuery, string>} */
  const state = { ...DEFAULTS };
  for (const key of KEYS) state[key] = (params.get(key) ?? DEFAULTS[key]).slice(0, 200);
  state.q = state.q.trim() ? state.q : "";
  if (state.status && !STATUSES.some((s) => s === state.status)) state.status = "";
  if (!RANGES.some((r) => r.value === state.range)) state.range = "";
  if (!SORTS.some((s) => s.value === state.sort)) state.sort = "created";
  if (state.order !== "asc") state.order = "desc";
  return /** @type {RunsQuery} */ (state);
}

/**
 * "#/?…" with only what differs from the defaults ("#/" when nothing does).
 * @param {RunsQuery} state
 */
export function hashOf(state) {
  const query = new URLSearchParams();
  for (const key of KEYS) if (state[key] && state[key] !== DEFAULTS[key]) query.set(key, state[key]);
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

/**
 * The start of the state's time range (epoch s), or null for any time.
 * @param {RunsQuery} state
 * @param {number} [now] epoch s
 * @returns {number | null}
 */
export function sinceOf(state, now = Date.now() / 1000) {
  const range = RANGES.find((r) => r.value === state.range);
  return range?.seconds ? Math.floor(now - range.seconds) : null;
}

/**
 * The GET /api/runs query for the state (without limit and cursor).
 * @param {RunsQuery} state
 * @param {number} [now] epoch s
 */
export function apiQuery(state, now = Date.now() / 1000) {
  const query = new URLSearchParams();
  if (state.q.trim()) query.set("q", state.q.trim());
  for (const key of /** @type {const} */ (["status", "agent", "model"])) if (state[key]) query.set(key, state[key]);
  const since = sinceOf(state, now);
  if (since !== null) query.set("since", String(since));
  if (state.sort !== "created") query.set("sort", state.sort);
  if (state.order !== "desc") query.set("order", state.order);
  return query;
}

// Does the list show something other than "every run, newest first"? Then live events cannot
// simply be put on top: the page is asked again instead.
/** @param {RunsQuery} state */
export function isFiltered(state) {
  return KEYS.some((key) => key !== "q" && state[key] !== DEFAULTS[key]) || Boolean(state.q.trim());
}

/**
 * What the page can check itself (the search it cannot: the server matches word prefixes).
 * @param {ListedRun} run
 * @param {RunsQuery} state
 * @param {number} [now] epoch s
 */
export function matchesHere(run, state, now = Date.now() / 1000) {
  if (state.status && run.status !== state.status) return false;
  if (state.agent && run.agent !== state.agent) return false;
  if (state.model && run.model !== state.model) return false;
  const since = sinceOf(state, now);
  return since === null || (run.created_at ?? 0) >= since;
}
