// @ts-check
// The runs list: search, filters and sort (in the address bar), live status and counters from the
// runs feed ("*"), a start form, and keyboard navigation (keys.js).

import { canOperate } from "./auth.js";
import { api, debounce, h, refreshTimes, throttle } from "./dom.js";
import { setShortcuts, toggleHelp } from "./keys.js";
import { COLUMNS, applyEvent, makeRow, newSummary } from "./runs-row.js";
import { DEFAULTS, RANGES, SORTS, STATUSES, apiQuery, hashOf, isFiltered, matchesHere, readState } from "./runs-query.js";
import { startForm } from "./start-form.js";

const PAGE = 50;
const RECENT_MAX = 5000;
// The most runs the list holds: new ones push the oldest out (a reload or a search finds them).
const MAX_ROWS = 1000;

function select(id, label, options) {
  return h("select", { id, "aria-label": label }, options.map(([value, text]) => h("option", { value, text })));
}

// `me`: who is logged in (/api/me); a viewer gets no start form.
export function runsView(root, live, params, me = null) {
  const operator = canOperate(me);
  let state = readState(params);
  const runs = new Map(); // id -> summary
  let order = []; // ids, in list order
  const rows = new Map(); // id -> {tr, update}
  let next = null;
  let closed = false; // the view was left: answers arriving later change nothing
  let trimmed = false; // runs were pushed out by new ones: "load more" would miss them
  let loaded = false;
  let selected = null;
  const models = new Set();

  const announcer = h("p", { class: "sr-only", role: "status" });
  const announce = (text) => { announcer.textContent = text; };
  const start = operator ? startForm(params, (text) => { start.error.textContent = text; }) : null;
  const listError = start ? start.error : h("p", { class: "error-text", role: "alert" });

  const search = h("input", {
    type: "search", id: "search", name: "q", autocomplete: "off", "aria-label": "Search runs",
    placeholder: "Search input, answer, error or run id  ( / )",
  });
  const statusSelect = select("filter-status", "Filter by status", [["", "all statuses"], ...STATUSES.map((s) => [s, s])]);
  const agentSelect = select("filter-agent", "Filter by agent", [["", "all agents"]]);
  const modelSelect = select("filter-model", "Filter by model", [["", "all models"]]);
  const rangeSelect = select("filter-range", "Time range", RANGES.map((r) => [r.value, r.label]));
  const sortSelect = select("sort", "Sort by", SORTS.map((s) => [s.value, `sort by ${s.label}`]));
  const orderSelect = select("order", "Order", [["desc", "newest first"], ["asc", "oldest first"]]);
  const clear = h("button", { type: "button", id: "clear-filters", text: "Clear", onclick: () => setState({ ...DEFAULTS }) });
  const help = h("button", { type: "button", class: "link-button", "aria-haspopup": "dialog", text: "Keyboard shortcuts (?)", onclick: toggleHelp });
  const count = h("p", { id: "runs-count", class: "muted" });

  const headers = COLUMNS.map((c) => {
    const th = h("th", { scope: "col", class: c.num ? "num" : null, "data-col": c.key });
    th.append(c.sort ? h("button", { type: "button", class: "sort", text: c.label, onclick: () => sortBy(c.sort) }) : c.label);
    return th;
  });
  const tbody = h("tbody", {});
  const empty = h("div", { class: "empty muted", hidden: true });
  const more = h("button", { type: "button", id: "load-more", hidden: true, text: "Load more", onclick: () => load(false).catch(showError) });
  const trimmedNote = h("p", { class: "muted", hidden: true, text: `Showing the newest ${MAX_ROWS} runs: reload the page, or search, to see older ones.` });

  root.replaceChildren(
    ...(start ? [start.section] : []),
    h("section", { class: "panel runs-panel", "aria-labelledby": "runs-title" },
      h("div", { class: "runs-head" }, h(operator ? "h2" : "h1", { id: "runs-title", text: "Runs" }), count, help),
      h("form", { class: "toolbar", role: "search", onsubmit: (e) => { e.preventDefault(); typed.cancel(); applySearch(); } },
        search, statusSelect, agentSelect, modelSelect, rangeSelect, sortSelect, orderSelect, clear),
      !start && listError,
      h("table", { class: "runs" }, h("caption", { class: "sr-only", text: "Runs (j and k move the selection, Enter opens it)" }),
        h("thead", {}, h("tr", {}, headers)), tbody),
      empty, more, trimmedNote, announcer),
  );

  function syncControls() {
    if (document.activeElement !== search) search.value = state.q;
    for (const [el, key] of [[statusSelect, "status"], [agentSelect, "agent"], [modelSelect, "model"], [rangeSelect, "range"], [sortSelect, "sort"], [orderSelect, "order"]]) {
      if (key === "model" || key === "agent") ensureOption(el, state[key]);
      el.value = state[key];
    }
    const byStart = state.sort === "created";
    orderSelect.options[0].text = byStart ? "newest first" : "highest first";
    orderSelect.options[1].text = byStart ? "oldest first" : "lowest first";
    clear.hidden = !isFiltered(state);
    for (const th of headers) {
      const c = COLUMNS.find((col) => col.key === th.dataset.col);
      if (c.sort === state.sort) th.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }
  function ensureOption(el, value) {
    if (value && ![...el.options].some((o) => o.value === value)) el.append(h("option", { value, text: value }));
  }

  // A new state: in the address bar (a new history entry, except while typing), then the first page.
  function setState(patch, { push = true } = {}) {
    const nextState = { ...state, ...patch };
    if (hashOf(nextState) === hashOf(state) && loaded) return;
    state = nextState;
    history[push ? "pushState" : "replaceState"](null, "", hashOf(state));
    syncControls();
    render(); // what the page can filter itself goes at once; the rest when the answer comes
    load(true, true).catch(showError);
  }
  const applySearch = () => setState({ q: search.value }, { push: false });
  const typed = debounce(applySearch, 250);
  search.addEventListener("input", typed);
  for (const [el, key] of [[statusSelect, "status"], [agentSelect, "agent"], [modelSelect, "model"], [rangeSelect, "range"], [sortSelect, "sort"], [orderSelect, "order"]]) {
    el.addEventListener("change", () => setState({ [key]: el.value }));
  }
  function sortBy(sort) {
    setState(state.sort === sort ? { order: state.order === "desc" ? "asc" : "desc" } : { sort, order: "desc" });
  }

  function shownRuns() {
    return order.map((id) => runs.get(id)).filter((run) => run && matchesHere(run, state));
  }

  function render() {
    const ctx = { now: Date.now() / 1000, announce };
    const shown = shownRuns();
    const trs = shown.map((run) => {
      let row = rows.get(run.id);
      if (!row) rows.set(run.id, (row = makeRow(run)));
      const tr = row.update(run, ctx);
      const isSelected = run.id === selected;
      tr.classList.toggle("selected", isSelected);
      if (isSelected) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
      return tr;
    });
    const current = tbody.children;
    if (current.length !== trs.length || trs.some((tr, i) => current[i] !== tr)) tbody.replaceChildren(...trs);
    for (const id of rows.keys()) if (!runs.has(id)) rows.delete(id);
    refreshTimes(tbody);
    const filtered = isFiltered(state);
    empty.hidden = !loaded || shown.length > 0;
    if (!empty.hidden && empty.dataset.mode !== String(filtered)) {
      empty.dataset.mode = String(filtered);
      empty.replaceChildren(filtered
        ? h("p", {}, "No runs match this search or these filters. ", h("button", { type: "button", class: "link-button", text: "Clear them", onclick: () => setState({ ...DEFAULTS }) }))
        : h("p", { text: operator ? "No runs yet. Start one above." : "No runs yet." }));
    }
    more.hidden = !next;
    trimmedNote.hidden = !trimmed;
    count.textContent = loaded ? `${shown.length}${next ? "+" : ""} run${shown.length === 1 ? "" : "s"}${filtered ? " match" : ""}` : "loading…";
  }

  // The runs feed is followed from the position the first page was read at. A page read later
  // (a filter changed, a refresh) is the truth at its own position `feed`: the events after it
  // that already arrived are applied again on top of it, and those up to it are not applied.
  let stop = () => {};
  let following = false;
  let floor = 0;
  let feedEpoch = null;
  let needResume = false;
  let recent = []; // feed events past `floor`
  let generation = 0;

  // The first page again (`fresh`: for a new search or filter, else as many runs as are shown),
  // or (reset false) the next page.
  async function load(reset = true, fresh = false) {
    const query = apiQuery(state);
    if (!reset && !next) return;
    query.set("limit", String(reset && !fresh ? Math.min(500, Math.max(PAGE, order.length)) : PAGE));
    if (!reset) query.set("cursor", next);
    const gen = reset ? ++generation : generation;
    const page = await api(`/api/runs?${query}`);
    if (gen !== generation || closed) return; // a newer question was asked meanwhile, or the view left
    if (reset) {
      runs.clear();
      order = [];
      trimmed = false;
    }
    for (const run of page.runs) {
      if (!runs.has(run.id)) order.push(run.id);
      runs.set(run.id, { ...run });
      noteRun(run);
    }
    next = page.next;
    if (reset) follow(page);
    loaded = true;
    listError.textContent = "";
    render();
  }

  function follow(page) {
    if (!following) {
      following = true;
      feedEpoch = page.feed_epoch;
      floor = page.feed;
      stop = live.subscribe("*", page.feed, onFeed, () => {}, {
        epoch: page.feed_epoch,
        onReset: () => {
          needResume = true;
          load(true).catch(showError);
        },
      });
    } else if (needResume || page.feed_epoch !== feedEpoch) {
      needResume = false;
      feedEpoch = page.feed_epoch;
      floor = page.feed;
      recent = [];
      live.resume("*", page.feed, page.feed_epoch);
    } else {
      floor = page.feed;
      recent = recent.filter((event) => event.feed > floor);
      for (const event of recent) ingest(event, false);
    }
  }

  const refetch = throttle(() => load(true).catch(showError), 1000);

  function ingest(event, fresh) {
    const known = runs.get(event.run_id);
    if (!known) {
      if (isFiltered(state)) {
        if (fresh && (event.type === "run.queued" || event.type === "run.finished")) refetch();
        return false;
      }
      if (event.type !== "run.queued") return false;
      const run = newSummary(event);
      applyEvent(run, event);
      runs.set(run.id, run);
      order.unshift(run.id);
      if (order.length > MAX_ROWS) {
        // A list left open all day keeps the newest MAX_ROWS: older ones are a search away.
        for (const id of order.splice(MAX_ROWS)) runs.delete(id);
        next = null;
        trimmed = true;
      }
      noteRun(run);
      return true;
    }
    const before = known.status;
    const changed = applyEvent(known, event);
    if (fresh && isFiltered(state) && (known.status !== before || event.type === "run.finished")) refetch();
    return changed;
  }

  function onFeed(event) {
    if (event.feed <= floor) return; // the page already counts it
    recent.push(event);
    if (recent.length > RECENT_MAX) recent.splice(0, recent.length - RECENT_MAX);
    if (ingest(event, true)) scheduleRender();
  }
  const stopPolling = live.onPoll(() => load(true).catch(() => {}));

  let frame = 0;
  function scheduleRender() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
  }
  const ticker = setInterval(render, 1000); // durations of running runs, and "… ago"

  // A run's model, and its agent (agents that run elsewhere are not in /api/agents), as filter choices.
  function noteRun(run) {
    if (run.model) noteModel(run.model);
    if (run.agent) ensureOption(agentSelect, run.agent);
  }

  function noteModel(model) {
    if (models.has(model)) return;
    models.add(model);
    ensureOption(modelSelect, model);
  }

  function showError(error) {
    listError.textContent = `Could not load runs: ${error.message}. Is the server running?`;
  }

  // Keyboard: "/" searches, j/k move the selection, Enter opens the selected run.
  function move(step) {
    const shown = shownRuns();
    if (!shown.length) return;
    const at = shown.findIndex((run) => run.id === selected);
    const index = at < 0 ? (step > 0 ? 0 : shown.length - 1) : Math.min(shown.length - 1, Math.max(0, at + step));
    selected = shown[index].id;
    render();
    rows.get(selected)?.tr.scrollIntoView({ block: "nearest" });
    announce(`Selected run ${selected}: ${shown[index].status}, ${shown[index].input?.slice(0, 80) ?? ""}`);
  }
  const unkeys = setShortcuts({
    "/": () => { search.focus(); search.select(); },
    j: () => move(1),
    k: () => move(-1),
    Enter: () => {
      if (!selected || !runs.has(selected)) return false;
      location.hash = `#/runs/${selected}`;
    },
  });

  syncControls();
  render();
  api("/api/agents").then((agents) => {
    start?.setAgents(agents);
    for (const agent of agents) {
      ensureOption(agentSelect, agent.name);
      if (agent.model) noteModel(agent.model);
    }
    syncControls();
  }).catch(showError);
  load(true).catch(showError);

  const teardown = () => {
    closed = true;
    generation += 1;
    stop();
    stopPolling();
    unkeys();
    typed.cancel();
    refetch.cancel();
    clearInterval(ticker);
    cancelAnimationFrame(frame);
  };
  // The address bar changed to another state of this list (back, forward): show that one.
  teardown.update = (nextParams) => {
    const nextState = readState(nextParams);
    if (hashOf(nextState) === hashOf(state)) return;
    state = nextState;
    syncControls();
    render();
    load(true, true).catch(showError);
  };
  return teardown;
}
