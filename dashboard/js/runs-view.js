// The runs list: newest first, live status from the runs feed ("*"), filters, and a start form.

import { canOperate } from "./auth.js";
import { api, clock, h, number, seconds } from "./dom.js";

const STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];
const RANK = { queued: 0, running: 1, waiting: 1, succeeded: 2, failed: 2, cancelled: 2 };

// The status a runs-feed event gives its run: an approval asked makes it wait; the last one
// resolved (`waiting: false`) makes it run again.
function statusOf(event) {
  switch (event.type) {
    case "run.finished": return event.status;
    case "run.started": return "running";
    case "approval.requested": return "waiting";
    case "approval.resolved": return event.waiting ? "waiting" : "running";
    default: return "queued";
  }
}

function summaryFromEvent(event, row) {
  const run = row ?? { id: event.run_id, input_tokens: 0, output_tokens: 0, tool_calls: 0 };
  if (event.type === "run.queued") {
    Object.assign(run, { agent: event.agent, input: event.input, model: event.model, status: "queued", created_at: event.ts });
  } else if (event.type === "run.started") {
    Object.assign(run, { status: "running", started_at: event.ts });
  } else if (event.type === "approval.requested" || event.type === "approval.resolved") {
    run.status = statusOf(event);
  } else if (event.type === "run.finished") {
    const t = event.totals;
    Object.assign(run, {
      status: event.status, error: event.error, finished_at: event.ts,
      input_tokens: t.input_tokens, output_tokens: t.output_tokens, tool_calls: t.tool_calls,
    });
  }
  return run;
}

// `me`: who is logged in (/api/me); a viewer gets no start form.
export function runsView(root, live, params, me = null) {
  const operator = canOperate(me);
  const filters = { status: params.get("status") || "", agent: params.get("agent") || "" };
  const runs = new Map(); // id -> summary, kept in list order separately
  let order = [];
  let next = null;
  let agents = [];

  const tbody = h("tbody", {});
  const empty = h("p", { class: "muted", hidden: true, text: operator ? "No runs yet. Start one above." : "No runs yet." });
  const more = h("button", { type: "button", hidden: true, text: "Load more", onclick: () => load(false) });
  const statusSelect = h("select", { id: "filter-status", "aria-label": "Filter by status" },
    h("option", { value: "", text: "all statuses" }), STATUSES.map((s) => h("option", { value: s, text: s })));
  const agentSelect = h("select", { id: "filter-agent", "aria-label": "Filter by agent" }, h("option", { value: "", text: "all agents" }));
  const agentPick = h("select", { id: "start-agent", name: "agent", "aria-label": "Agent", required: true });
  const input = h("textarea", { id: "start-input", name: "input", rows: 2, "aria-label": "Input", placeholder: "What should the agent do? (e.g. what is (2+3)*4 and what time is it?)" });
  const formError = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { class: "start", "aria-label": "Start a run" }, agentPick, input,
    h("button", { class: "primary", type: "submit", text: "Start run" }));
  statusSelect.value = filters.status;

  root.replaceChildren(
    ...(operator ? [h("section", { class: "panel" }, h("h1", { text: "Start a run" }), form, formError)] : []),
    h("section", { class: "panel" },
      h(operator ? "h2" : "h1", { text: "Runs" }),
      h("div", { class: "filters" }, statusSelect, agentSelect),
      !operator && formError, // load errors still need a place
      h("table", { class: "runs" },
        h("thead", {}, h("tr", {}, ["Status", "Agent", "Input", "Started", "Duration", "Tokens", "Tools"].map((t) =>
          h("th", { scope: "col", class: ["Tokens", "Tools", "Duration"].includes(t) ? "num" : null, text: t })))),
        tbody),
      empty, more),
  );

  const matches = (run) => (!filters.status || run.status === filters.status) && (!filters.agent || run.agent === filters.agent);

  function row(run) {
    const end = run.finished_at ?? (run.started_at ? Date.now() / 1000 : null);
    const duration = run.started_at ? end - run.started_at : null;
    return h("tr", { "data-run": run.id, "data-status": run.status },
      h("td", {}, h("span", { class: `status ${run.status}`, text: run.status })),
      h("td", { text: run.agent ?? "" }),
      h("td", {}, h("a", { class: "preview", href: `#/runs/${run.id}`, title: run.input, text: run.input || "(no input)" })),
      h("td", { text: clock(run.created_at) }),
      h("td", { class: "num", text: seconds(duration) }),
      h("td", { class: "num", text: number((run.input_tokens || 0) + (run.output_tokens || 0)) }),
      h("td", { class: "num", text: number(run.tool_calls) }),
    );
  }

  function render() {
    const shown = order.map((id) => runs.get(id)).filter(matches);
    tbody.replaceChildren(...shown.map(row));
    empty.hidden = shown.length > 0;
    more.hidden = !next;
  }

  async function load(reset = true) {
    const query = new URLSearchParams({ limit: "50" });
    if (filters.status) query.set("status", filters.status);
    if (filters.agent) query.set("agent", filters.agent);
    if (!reset && next) query.set("cursor", next);
    const page = await api(`/api/runs?${query}`);
    if (reset) follow(page);
    if (reset) order = order.filter((id) => !page.runs.some((r) => r.id === id) && runs.get(id)?.created_at > (page.runs[0]?.created_at ?? 0));
    for (const run of page.runs) {
      const known = runs.get(run.id);
      // The feed is followed before the page loads, so it may know a later state than the page.
      const feedIsAhead = known && RANK[known.status] > RANK[run.status];
      runs.set(run.id, feedIsAhead ? { ...run, ...known } : { ...known, ...run });
      if (!order.includes(run.id)) order.push(run.id);
    }
    next = page.next;
    render();
  }

  // The runs feed, followed from the position the first page was read at: a run started while the
  // page loads is in the page or comes through the feed, never in neither.
  let stop = () => {};
  let following = false;
  function onFeed(event) {
    const known = runs.get(event.run_id);
    if (!known && event.type !== "run.queued") return;
    if (known && RANK[known.status] > RANK[statusOf(event)]) return;
    runs.set(event.run_id, summaryFromEvent(event, known));
    if (!known) order.unshift(event.run_id);
    scheduleRender();
  }
  function follow(page) {
    if (!following) {
      following = true;
      stop = live.subscribe("*", page.feed, onFeed, () => {}, {
        epoch: page.feed_epoch,
        onReset: () => load(true).catch(showError),
      });
    } else {
      live.resume("*", page.feed, page.feed_epoch);
    }
  }
  const stopPolling = live.onPoll(() => load(true).catch(() => {}));

  let frame = 0;
  function scheduleRender() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
  }
  const ticker = setInterval(() => {
    if (order.some((id) => ["running", "waiting"].includes(runs.get(id)?.status))) scheduleRender();
  }, 1000);

  function setFilter() {
    filters.status = statusSelect.value;
    filters.agent = agentSelect.value;
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/${query.size ? "?" + query : ""}`);
    runs.clear();
    order = [];
    load(true).catch(showError);
  }
  statusSelect.addEventListener("change", setFilter);
  agentSelect.addEventListener("change", setFilter);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError.textContent = "";
    if (!input.value.trim()) {
      // The server refuses it too (400 empty_input); say so before asking.
      formError.textContent = "The input is empty: say what the agent should do.";
      input.focus();
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const run = await api("/api/runs", { method: "POST", body: JSON.stringify({ agent: agentPick.value, input: input.value }) });
      location.hash = `#/runs/${run.id}`;
    } catch (error) {
      formError.textContent = `Could not start the run: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  function showError(error) {
    formError.textContent = `Could not load runs: ${error.message}. Is the server running?`;
  }

  api("/api/agents").then((list) => {
    agents = list;
    agentPick.replaceChildren(...agents.map((a) => h("option", { value: a.name, title: a.description, text: a.name })));
    agentSelect.append(...agents.map((a) => h("option", { value: a.name, text: a.name })));
    agentSelect.value = filters.agent;
  }).catch(showError);
  load(true).catch(showError);

  return () => {
    stop();
    stopPolling();
    clearInterval(ticker);
    cancelAnimationFrame(frame);
  };
}
