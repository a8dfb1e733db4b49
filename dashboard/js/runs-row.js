// @ts-check
// One run of the runs list: its summary (GET /api/runs), kept live from the runs feed's events,
// and its table row (a card on a phone), updated cell by cell so focus and open details survive.

import { agentName, clock, copyButton, costText, fullTime, h, number, seconds, timeAgo } from "./dom.js";

export const RANK = { queued: 0, running: 1, waiting: 1, succeeded: 2, failed: 2, cancelled: 2 };
const ACTIVE = new Set(["queued", "running", "waiting"]);

export const COLUMNS = [
  { key: "status", label: "Status" },
  { key: "id", label: "Run" },
  { key: "agent", label: "Agent" },
  { key: "model", label: "Model" },
  { key: "input", label: "Input" },
  { key: "error", label: "Error" },
  { key: "started", label: "Started", sort: "created" },
  { key: "duration", label: "Duration", num: true, sort: "duration" },
  { key: "tokens", label: "Tokens", num: true, sort: "tokens" },
  { key: "tools", label: "Tools", num: true },
  { key: "cost", label: "Cost", num: true, sort: "cost" },
];

export function isActive(run) {
  return ACTIVE.has(run.status);
}

// The status an event gives its run (null: it does not change the status).
function statusOf(event) {
  switch (event.type) {
    case "run.queued": return "queued";
    case "run.started": return "running";
    case "run.finished": return event.status;
    case "approval.requested": return "waiting";
    case "approval.resolved": return event.waiting ? "waiting" : "running";
    default: return null;
  }
}

export function newSummary(event) {
  return { id: event.run_id, status: "queued", input_tokens: 0, output_tokens: 0, tool_calls: 0, steps: 0, cost: null, error: null };
}

// Apply a runs-feed event to a run's summary; false when it changes nothing (an older state).
export function applyEvent(run, event) {
  // A page's summaries already count what was stored when it was read: an event at or before its
  // last_seq (the feed replays from a position read before the page) must not count twice.
  if (event.seq && run.last_seq && event.seq <= run.last_seq) return false;
  if (event.seq) run.last_seq = event.seq;
  const status = statusOf(event);
  const finished = RANK[run.status] === 2;
  if (status !== null && RANK[run.status] > RANK[status]) return false;
  switch (event.type) {
    case "run.queued":
      Object.assign(run, { agent: event.agent, input: event.input, model: event.model, thread: event.thread, created_at: event.ts, external: Boolean(event.external) });
      break;
    case "run.started":
      Object.assign(run, { started_at: event.ts, agent: event.agent ?? run.agent });
      break;
    case "step.finished": {
      if (finished) return false;
      const usage = event.usage || {};
      run.input_tokens = (run.input_tokens || 0) + (usage.input_tokens || 0);
      run.output_tokens = (run.output_tokens || 0) + (usage.output_tokens || 0);
      run.steps = (run.steps || 0) + 1;
      run.tool_calls = (run.tool_calls || 0) + (event.tool_calls || 0); // (the calls it asked for run next)
      if (event.cost !== null && event.cost !== undefined) run.cost = (run.cost ?? 0) + event.cost;
      if (run.ttft == null && event.ttft != null && event.index === 0) run.ttft = event.ttft;
      return true;
    }
    case "run.finished": {
      const t = event.totals || {};
      Object.assign(run, {
        error: event.error ?? null, finished_at: event.ts,
        input_tokens: t.input_tokens ?? run.input_tokens, output_tokens: t.output_tokens ?? run.output_tokens,
        tool_calls: t.tool_calls ?? run.tool_calls, steps: t.steps ?? run.steps,
        cost: t.cost === undefined ? run.cost : t.cost,
      });
      break;
    }
    default:
      if (status === null) return false;
  }
  run.status = status;
  return true;
}

function durationOf(run, now) {
  if (!run.started_at) return null;
  return (run.finished_at ?? now) - run.started_at;
}

// Ids made at about the same time share their start (it is a clock): show the start and the end.
function shortId(id) {
  return id.length > 12 ? `${id.slice(0, 4)}…${id.slice(-6)}` : id;
}

const ERROR_CUT = 60;

// Each cell: a key of what it shows, and how to build it. A cell is rebuilt only when its key changes.
const CELLS = {
  status: (run) => [run.status, () => h("span", { class: `status ${run.status}`, text: run.status })],
  id: (run, ctx) => [run.id, () => [
    h("code", { class: "run-id", title: run.id, text: shortId(run.id) }),
    copyButton(run.id, `Copy run id ${run.id}`, ctx.announce),
  ]],
  agent: (run) => [`${run.agent ?? ""}:${Boolean(run.external)}`, () => agentName(run.agent ?? "", run.external)],
  model: (run) => [run.model ?? "", () => h("span", { class: "model", title: run.model || null, text: run.model || "–" })],
  input: (run) => [`${run.input}\u0000${run.answer_preview ?? ""}`, () => [
    h("a", { class: "preview", href: `#/runs/${run.id}`, title: run.input, text: run.input || "(no input)" }),
    run.answer_preview ? h("span", { class: "answer-preview muted", title: run.answer_preview, text: run.answer_preview }) : null,
  ]],
  error: (run) => [run.error ?? "", () => {
    if (!run.error) return "";
    if (run.error.length <= ERROR_CUT) return h("span", { class: "error-msg", text: run.error });
    return h("details", { class: "error-full" },
      h("summary", { class: "error-msg", title: run.error }, h("span", { class: "snippet", text: `${run.error.slice(0, ERROR_CUT)}…` })),
      h("div", { class: "error-body", text: run.error }));
  }],
  started: (run) => [String(run.created_at ?? ""), () => run.created_at
    ? [timeAgo(run.created_at), h("span", { class: "abs muted", title: fullTime(run.created_at), text: clock(run.created_at) })]
    : "–"],
  duration: (run, ctx) => {
    const text = seconds(durationOf(run, ctx.now));
    return [text, () => text];
  },
  tokens: (run) => {
    const total = (run.input_tokens || 0) + (run.output_tokens || 0);
    // A model call always reads some input: none after a step means the model never said (no usage).
    const input = run.steps > 0 && !run.input_tokens ? "–" : number(run.input_tokens || 0);
    const title = `${input} in, ${number(run.output_tokens || 0)} out`;
    return [`${total}:${title}`, () => h("span", { title, text: number(total) })];
  },
  tools: (run) => [String(run.tool_calls ?? 0), () => number(run.tool_calls ?? 0)],
  cost: (run) => {
    // A run that has not finished a priced step yet is not "unpriced": its cost is not known yet.
    const pending = run.cost == null && isActive(run);
    return [`${run.cost}:${pending}`, () => pending
      ? h("span", { class: "muted", title: "no model call has finished yet" }, h("span", { "aria-hidden": "true", text: "–" }), h("span", { class: "sr-only", text: "not known yet" }))
      : costText(run.cost)];
  },
};

// A row for `run`: `update(run, ctx)` brings it up to date; ctx = {now, announce}.
export function makeRow(run) {
  const cells = {};
  const tr = h("tr", { "data-run": run.id },
    COLUMNS.map((c) => (cells[c.key] = h("td", { "data-col": c.key, "data-label": c.label, class: c.num ? "num" : null }))));
  const keys = {};
  function update(current, ctx) {
    if (tr.dataset.status !== current.status) tr.dataset.status = current.status;
    for (const c of COLUMNS) {
      const [key, build] = CELLS[c.key](current, ctx);
      if (keys[c.key] === key) continue;
      keys[c.key] = key;
      const content = build();
      cells[c.key].replaceChildren(...[content].flat().filter((x) => x !== null && x !== undefined && x !== ""));
    }
    return tr;
  }
  return { tr, update };
}
