// What the runs list shows, as it is written in the address bar (#/?q=deploy&status=failed&sort=cost)
// and as it is asked of GET /api/runs (docs/protocol.md): search, filters, time range and sort.

export const STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];

// Time range presets: the URL keeps the preset, the request its `since` (now minus the span).
export const RANGES = [
  { value: "", label: "any time", seconds: null },
  { value: "1h", label: "last hour", seconds: 3600 },
  { value: "24h", label: "last 24 h", seconds: 86400 },
  { value: "7d", label: "last 7 days", seconds: 7 * 86400 },
];

export const SORTS = [
  { value: "created", label: "start" },
  { value: "duration", label: "duration" },
  { value: "tokens", label: "tokens" },
  { value: "cost", label: "cost" },
];

export const DEFAULTS = { q: "", status: "", agent: "", model: "", range: "", sort: "created", order: "desc" };
const KEYS = Object.keys(DEFAULTS);

// The list's state from the hash query; values it does not know fall back to the defaults.
export function readState(params) {
  const state = { ...DEFAULTS };
  for (const key of KEYS) state[key] = (params.get(key) ?? DEFAULTS[key]).slice(0, 200);
  state.q = state.q.trim() ? state.q : "";
  if (state.status && !STATUSES.includes(state.status)) state.status = "";
  if (!RANGES.some((r) => r.value === state.range)) state.range = "";
  if (!SORTS.some((s) => s.value === state.sort)) state.sort = "created";
  if (!["asc", "desc"].includes(state.order)) state.order = "desc";
  return state;
}

// "#/?…" with only what differs from the defaults ("#/" when nothing does).
export function hashOf(state) {
  const query = new URLSearchParams();
  for (const key of KEYS) if (state[key] && state[key] !== DEFAULTS[key]) query.set(key, state[key]);
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

export function sinceOf(state, now = Date.now() / 1000) {
  const range = RANGES.find((r) => r.value === state.range);
  return range?.seconds ? Math.floor(now - range.seconds) : null;
}

// The GET /api/runs query for the state (without limit and cursor).
export function apiQuery(state) {
  const query = new URLSearchParams();
  if (state.q.trim()) query.set("q", state.q.trim());
  for (const key of ["status", "agent", "model"]) if (state[key]) query.set(key, state[key]);
  const since = sinceOf(state);
  if (since !== null) query.set("since", String(since));
  if (state.sort !== "created") query.set("sort", state.sort);
  if (state.order !== "desc") query.set("order", state.order);
  return query;
}

// Does the list show something other than "every run, newest first"? Then live events cannot
// simply be put on top: the page is asked again instead.
export function isFiltered(state) {
  return KEYS.some((key) => key !== "q" && state[key] !== DEFAULTS[key]) || Boolean(state.q.trim());
}

// What the page can check itself (the search it cannot: the server matches word prefixes).
export function matchesHere(run, state) {
  if (state.status && run.status !== state.status) return false;
  if (state.agent && run.agent !== state.agent) return false;
  if (state.model && run.model !== state.model) return false;
  const since = sinceOf(state);
  return since === null || (run.created_at ?? 0) >= since;
}
