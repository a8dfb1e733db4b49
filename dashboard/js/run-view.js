// @ts-check
// One run, live: a header with its figures and actions, the answer, the trace of its steps and
// tool calls beside the details of the selected one; and the people in its loop: approval cards,
// a message box, its thread, who is watching. Everything comes from the run's events (and a few
// REST calls), so it works the same for a run that is streaming and one that ended long ago.
//
// Events only update the model (run-model.js) and the answer; one requestAnimationFrame renders
// whatever changed, so a model streaming thousands of tokens a second costs one render per frame.
// While the live connection is down the header says so, the clock stops and actions that need the
// server are disabled; once it is back, the subscription resumes after the last event seen.

import { answerPanel } from "./answer.js";
import { approvalsPanel } from "./approvals.js";
import { canOperate } from "./auth.js";
import { detailPanel } from "./detail.js";
import { api, clock, externalMark, h, number, seconds } from "./dom.js";
import { presenceLine } from "./presence.js";
import { runActions } from "./run-actions.js";
import { runFigures, usd } from "./run-figures.js";
import { ACTIVE, controlsOf, createRunModel } from "./run-model.js";
import { messageBox } from "./steer.js";
import { threadPanel } from "./thread.js";
import { traceView } from "./trace.js";

const CONNECTION_TEXT = {
  reconnecting: "Disconnected — reconnecting…",
  closed: "Disconnected",
};

// What an external run's agent takes back, in words (the header says it, so nobody looks for a
// button that is not there).
function sourceText(run) {
  const { cancel, message } = controlsOf(run);
  const takes = cancel && message ? "cancels and messages" : cancel ? "cancels, not messages"
    : message ? "messages, not cancels" : "no cancel and no message";
  return `${run.agent} runs elsewhere and reports this run. It takes ${takes}; approvals it asks for are decided here.`;
}

// `me`: who is logged in (/api/me); a viewer gets no cancel, rerun, decision buttons or message box.
// An external run (an agent elsewhere reports it) offers only the controls its agent takes.
export function runView(root, live, runId, me = null) {
  const operator = canOperate(me);
  const model = createRunModel();
  const { run } = model;
  let cancelling = false;
  let notice = ""; // why an action failed
  let connected = live.connected;
  let frozenAt = null; // the server time the clock stopped at while disconnected
  let selected = null;
  let dirty = new Set(["all"]);
  let frame = 0;

  const now = () => frozenAt ?? Date.now() / 1000 + (live.clockOffset ?? 0);

  const title = h("h1", { text: `Run ${runId}` });
  const statusEl = h("span", { id: "run-status", class: "status queued", role: "status", "aria-live": "polite", text: "loading" });
  const meta = h("span", { class: "muted run-meta" });
  const who = h("p", { id: "run-by", class: "muted run-by", hidden: true });
  const source = h("p", { id: "run-source", class: "muted run-source", hidden: true });
  const traceSource = h("p", { id: "trace-source", class: "muted trace-source", hidden: true });
  let metaKey = "";
  const connText = h("span", { id: "run-conn", role: "status", "aria-live": "polite" });
  const retry = h("button", { id: "retry-now", type: "button", text: "Retry now", onclick: () => live.retryNow() });
  const connBanner = h("div", { class: "conn-banner", id: "conn-banner", hidden: true }, connText, retry);
  const counters = h("div", { class: "counters" });
  const modelWait = h("p", { id: "model-wait", class: "model-wait", role: "status" });
  const inputEl = h("p", { class: "input-text" });
  const errorEl = h("p", { class: "error-text", id: "run-error", role: "alert" });
  const answer = answerPanel();
  const approvals = approvalsPanel({ runId, operator, now });
  const steer = messageBox({ runId });
  const thread = threadPanel({ runId, operator });
  const watchers = presenceLine(me);
  const detail = detailPanel({
    onFollow: () => {
      trace.follow();
      mark("trace");
    },
  });
  const trace = traceView({
    onSelect: (item) => {
      selected = item;
      mark("detail");
    },
    onLayout: () => mark("trace"),
  });
  const actions = runActions({
    runId, operator,
    run: () => run,
    connected: () => connected,
    onCancel: () => dialog.showModal(),
    onError: (message) => {
      notice = message;
      mark("header");
    },
  });
  const dialog = h("dialog", { "aria-labelledby": "cancel-title" },
    h("h2", { id: "cancel-title", text: "Cancel this run?" }),
    h("p", { text: "The model stream is closed and running tools are stopped. This cannot be undone." }),
    h("div", { class: "actions" },
      h("button", { type: "button", value: "keep", text: "Keep running", onclick: () => dialog.close("keep") }),
      h("button", { type: "button", class: "danger", value: "cancel", text: "Cancel run", onclick: () => dialog.close("cancel") })));

  root.replaceChildren(
    h("p", {}, h("a", { href: "#/", text: "← all runs" })),
    h("section", { class: "panel run-header", "aria-label": "Run" },
      h("div", { class: "run-head" }, title, statusEl, meta, h("span", { class: "spacer" }), watchers.element),
      connBanner, actions.element, who, source, approvals.banner, counters, modelWait, inputEl, errorEl),
    approvals.section,
    answer.section,
    steer.section,
    h("div", { class: "trace-layout" },
      h("section", { class: "panel trace-panel", "aria-label": "Trace" }, h("h2", { text: "Trace" }), traceSource, trace.element),
      detail.section),
    thread.section,
    dialog,
  );

  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "cancel") return;
    cancelling = true;
    notice = "";
    mark("header");
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
    } catch (error) {
      cancelling = false;
      notice = `Could not cancel: ${error.detail ?? error.message}`;
      mark("header");
    }
  });

  function mark(...parts) {
    for (const part of parts) dirty.add(part);
    if (!frame) frame = requestAnimationFrame(render);
  }

  function apply(event) {
    if (event.type === "run.cancel_requested" && run.finishedAt === null) cancelling = true;
    if (event.type === "run.finished") cancelling = false;
    if (event.type.startsWith("approval.")) approvals.apply(event);
    if (event.type === "run.finished") approvals.finish();
    answer.apply(event);
    mark(...model.apply(event));
  }

  function renderHeader() {
    const status = cancelling && run.finishedAt === null ? "cancelling" : run.status;
    statusEl.className = `status ${status}`;
    statusEl.textContent = status === "cancelling" ? "cancelling…" : status;
    renderMeta();
    const byLines = [run.startedBy && `Started by ${run.startedBy}`,
      run.cancelRequest && (run.cancelRequest.by ? `Cancel requested by ${run.cancelRequest.by}` : "Cancel requested")];
    who.textContent = byLines.filter(Boolean).join(" · ");
    who.hidden = !who.textContent;
    // (The first connection of the page is no news: the banner is for losing one.)
    connBanner.hidden = connected || live.mode === "connecting";
    // Closed for good (the server's close was final): say why, and offer no retry that cannot help.
    const closed = live.mode === "closed";
    connText.textContent = connBanner.hidden ? "" : closed && live.detail ? `Disconnected: ${live.detail}`
      : CONNECTION_TEXT[live.mode] ?? "Disconnected — reconnecting…";
    retry.hidden = closed;
    // Who watches is not known while disconnected (the server tells again on resubscribing).
    if (!connected) watchers.element.hidden = true;
    actions.update({ active: ACTIVE.includes(run.status), cancelling, canCancel: controlsOf(run).cancel, external: run.external });
    inputEl.textContent = run.input;
    const failure = run.error && (run.status === "failed" ? `The run failed: ${run.error}` : run.error);
    errorEl.textContent = [failure, notice].filter(Boolean).join(" ");
    const f = runFigures(run, now());
    const cost = f.cost === undefined ? "–" : usd(f.cost);
    const values = [
      ["elapsed", seconds(f.elapsed)], ["tokens in", (f.inPartial ? "≥" : "") + number(f.tokensIn)],
      ["tokens out", (f.estimated ? "≈" : "") + number(f.tokensOut)],
      ["tokens/s", f.rate === null ? "–" : f.rate.toFixed(1)], ["tool calls", number(f.toolCalls)],
      ["cost", cost], ["started", clock(run.startedAt ?? run.queuedAt)],
    ];
    if (!counters.firstChild) {
      counters.append(...values.map(([k]) => h("div", { class: "counter", "data-counter": k },
        h("span", { class: "v" }), h("span", { class: "k", text: k }))));
    }
    values.forEach(([, v], i) => {
      const el = counters.children[i].firstChild;
      if (el.textContent !== v) el.textContent = v;
    });
    const waiting = f.waiting && connected ? "waiting for the model…" : "";
    if (modelWait.textContent !== waiting) modelWait.textContent = waiting;
  }

  // The agent (marked when it runs elsewhere), the model, the offline model: rebuilt when they change.
  function renderMeta() {
    const key = [run.agent, run.external, run.model, run.offline].join("\u0000");
    if (key === metaKey) return;
    metaKey = key;
    const parts = [run.model, run.offline ? "offline model" : null].filter(Boolean).join(" · ");
    meta.replaceChildren(run.agent, run.external ? " " : "", run.external ? externalMark() : "", run.agent && parts ? " · " : "", parts);
    source.hidden = traceSource.hidden = !run.external;
    source.textContent = run.external ? sourceText(run) : "";
    traceSource.textContent = run.external ? `Steps and tool calls as ${run.agent} (external) reported them.` : "";
  }

  function renderLoop() {
    steer.show(operator && controlsOf(run).message && ["running", "waiting"].includes(run.status));
    steer.setEnabled(connected);
    approvals.setEnabled(connected);
    thread.setEnabled(connected);
    thread.update({ thread: run.thread, agent: run.agent, done: run.finishedAt !== null, external: run.external });
  }

  function render() {
    frame = 0;
    const parts = dirty;
    dirty = new Set();
    const all = parts.has("all");
    if (all || parts.has("answer")) answer.render();
    if (all || parts.has("header")) renderHeader();
    if (all || parts.has("trace")) trace.update(run, now());
    if (all || parts.has("trace") || parts.has("detail")) detail.show(selected, run, now(), trace.following);
    if (all || parts.has("loop")) renderLoop();
    if (all || parts.has("answer")) answer.stick();
  }

  const ticker = setInterval(() => {
    if (ACTIVE.includes(run.status) && connected) {
      mark("header", "trace");
      approvals.tick();
    }
  }, 250);

  const unwatch = live.watchState(() => {
    const up = live.connected;
    if (!up && frozenAt === null) frozenAt = now();
    if (up) frozenAt = null;
    connected = up;
    mark("header", "trace", "loop");
  });

  // A run that does not exist (or is not this person's to see) gets a page of its own, not a status.
  function notFound() {
    teardown();
    root.replaceChildren(
      h("p", {}, h("a", { href: "#/", text: "← all runs" })),
      h("section", { id: "not-found", class: "panel", role: "alert" },
        h("h1", { text: "Run not found" }),
        h("p", { text: `There is no run ${runId} that you may see: check the link, or look for it in the runs list. ` +
          "Finished runs are deleted after the server's retention period." }),
        h("p", {}, h("a", { href: "#/", text: "Back to the runs list" }))));
  }

  const stop = live.subscribe(runId, 0, apply, (error) => {
    if (error.code === "unknown_run") {
      notFound();
      return;
    }
    if (!error.code) return; // the connection dropped: the banner says so, and it resubscribes
    notice = error.message;
    mark("header");
  }, {
    onReset: () => location.reload(), // the run's log was rebuilt (epoch_changed): start over
    onPresence: (message) => watchers.update(message),
  });
  api(`/api/runs/${encodeURIComponent(runId)}`).then((summary) => {
    if (!run.thread && summary.thread) {
      run.thread = summary.thread;
      mark("loop");
    }
  }).catch((error) => {
    if (error.code === "unknown_run") notFound();
  });
  mark("all");

  function teardown() {
    stop();
    unwatch();
    clearInterval(ticker);
    cancelAnimationFrame(frame);
  }
  return teardown;
}
