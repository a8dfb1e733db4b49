// One run, live: header and counters, the answer as Markdown, the timeline, tool cards, messages;
// and the people in its loop: approval cards, a message box, its thread, who is watching.
//
// Events only update `state`; one requestAnimationFrame renders whatever changed, so a model
// streaming thousands of tokens a second costs one render per frame. The answer is rendered
// incrementally: finished blocks become Markdown once, the open tail is a text node we append to.

import { approvalsPanel } from "./approvals.js";
import { canOperate } from "./auth.js";
import { api, clock, h, number, pretty, seconds, truncatedPre } from "./dom.js";
import { lastBlockBoundary, renderMarkdown } from "./markdown.js";
import { presenceLine } from "./presence.js";
import { messageBox } from "./steer.js";
import { threadPanel } from "./thread.js";
import { renderTimeline } from "./timeline.js";

// Who did something, from an event's `by` ({id, name} or null).
const actor = (by) => by?.name || by?.id || "";

const ACTIVE = ["queued", "running", "waiting"];

// `me`: who is logged in (/api/me); a viewer gets no cancel button, decision buttons or message box.
export function runView(root, live, runId, me = null) {
  const operator = canOperate(me);
  const state = {
    summary: null, status: "loading", agent: "", model: "", input: "", offline: false, error: null,
    queuedAt: null, startedAt: null, finishedAt: null,
    tokensIn: 0, tokensOut: 0, streamedDeltas: 0, steps: new Map(), tools: new Map(), messages: [],
    cancelling: false, clockOffset: 0, lastSeq: 0, startedBy: "", cancelRequest: null, thread: "",
  };
  let pendingText = "";
  let tail = "";
  let dirty = new Set(["all"]);
  let frame = 0;

  const title = h("h1", { text: `Run ${runId}` });
  const statusEl = h("span", { id: "run-status", class: "status queued", role: "status", "aria-live": "polite", text: "loading" });
  const meta = h("span", { class: "muted" });
  const who = h("p", { id: "run-by", class: "muted run-by", hidden: true });
  const cancelButton = h("button", { id: "cancel-run", class: "danger", type: "button", text: "Cancel run", hidden: true });
  const counters = h("div", { class: "counters" });
  const inputEl = h("p", { class: "input-text" });
  const errorEl = h("p", { class: "error-text", role: "alert" });
  const answer = h("div", { class: "answer", "aria-live": "off" });
  const blocks = h("div", { class: "blocks" });
  const tailNode = document.createTextNode("");
  const tailEl = h("div", { class: "tail" }, tailNode);
  const timeline = h("div", { class: "timeline" });
  const tools = h("div", { class: "tools" });
  const messages = h("ul", { class: "messages", "aria-live": "polite" });
  const approvals = approvalsPanel({ runId, operator, now: () => now() });
  const steer = messageBox({ runId });
  const thread = threadPanel({ runId, operator });
  const watchers = presenceLine(me);
  const dialog = h("dialog", { "aria-labelledby": "cancel-title" },
    h("h2", { id: "cancel-title", text: "Cancel this run?" }),
    h("p", { text: "The model stream is closed and running tools are stopped. This cannot be undone." }),
    h("div", { class: "actions" },
      h("button", { type: "button", value: "keep", text: "Keep running", onclick: () => dialog.close("keep") }),
      h("button", { type: "button", class: "danger", value: "cancel", text: "Cancel run", onclick: () => dialog.close("cancel") })));
  answer.append(blocks, tailEl);

  root.replaceChildren(
    h("p", {}, h("a", { href: "#/", text: "← all runs" })),
    h("section", { class: "panel" },
      h("div", { class: "run-head" }, title, statusEl, meta, h("span", { class: "spacer" }), watchers.element, cancelButton),
      who, approvals.banner, counters, inputEl, errorEl),
    approvals.section,
    h("section", { class: "panel", "aria-label": "Answer" }, h("h2", { text: "Answer" }), answer),
    steer.section,
    thread.section,
    h("section", { class: "panel", "aria-label": "Timeline" }, h("h2", { text: "Timeline" }), timeline),
    h("section", { class: "panel", "aria-label": "Tool calls" }, h("h2", { text: "Tool calls" }), tools),
    h("section", { class: "panel", "aria-label": "Messages" }, h("h2", { text: "Messages" }), messages),
    dialog,
  );

  cancelButton.addEventListener("click", () => dialog.showModal());
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "cancel") return;
    state.cancelling = true;
    mark("header");
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
    } catch (error) {
      state.cancelling = false;
      state.error = `Could not cancel: ${error.message}`;
      mark("header");
    }
  });

  function mark(part) {
    dirty.add(part);
    if (!frame) frame = requestAnimationFrame(render);
  }

  function apply(event) {
    state.lastSeq = event.seq;
    state.clockOffset = event.ts - Date.now() / 1000;
    switch (event.type) {
      case "run.queued":
        Object.assign(state, { agent: event.agent, model: event.model, input: event.input, offline: event.offline, queuedAt: event.ts, status: "queued" });
        state.startedBy = actor(event.by);
        state.thread = event.thread || state.thread;
        mark("header");
        mark("loop");
        break;
      case "run.cancel_requested": {
        // Someone (maybe on another page) asked the run to stop; its run.finished follows.
        const name = actor(event.by);
        state.cancelRequest = { by: name };
        if (state.finishedAt === null) state.cancelling = true;
        state.messages.push({ ts: event.ts, message: name ? `Cancel requested by ${name}` : "Cancel requested" });
        mark("messages");
        mark("header");
        break;
      }
      case "run.started":
        Object.assign(state, { startedAt: event.ts, status: "running" });
        mark("header");
        mark("loop");
        break;
      case "approval.requested":
      case "approval.resolved":
        approvals.apply(event);
        if (state.finishedAt === null) {
          if (event.type === "approval.requested") state.status = "waiting";
          else if (!event.waiting && state.status === "waiting") state.status = "running";
        }
        mark("header");
        mark("timeline");
        mark("loop");
        break;
      case "message.received":
        // A person's message reached the conversation: it sits between what the model said before
        // and after it.
        insertInAnswer(h("div", { class: "said", "data-mode": event.mode },
          h("span", { class: "said-who", text: `${actor(event.by) || "someone"} said:` }), " ",
          h("span", { class: "said-text", text: event.text }),
          h("span", { class: "said-mode", text: event.mode === "interrupt" ? "interrupt" : "after the step" })));
        break;
      case "run.resumed":
        // The instance executing the run stopped; another goes on. An unfinished step runs again.
        for (const step of state.steps.values()) if (step.end === null) Object.assign(step, { end: event.ts, finish: "interrupted", error: "interrupted" });
        state.messages.push({ ...event, message: `resumed on ${event.instance} from step ${event.step}: text after this point repeats the interrupted step` });
        pendingText += "\n\n";
        mark("messages");
        mark("timeline");
        break;
      case "step.started":
        state.steps.set(event.index, { start: event.ts, end: null, model: event.model });
        mark("timeline");
        break;
      case "token":
        pendingText += event.text;
        state.streamedDeltas += event.deltas ?? 1;
        mark("text");
        mark("header");
        break;
      case "step.finished": {
        const step = state.steps.get(event.index) ?? { start: event.ts };
        Object.assign(step, { end: event.ts, finish: event.finish_reason, error: event.finish_reason === "error" ? "error" : null });
        if (event.finish_reason === "interrupted") {
          step.note = "interrupted";
          insertInAnswer(h("div", { class: "marker interrupted", text: "interrupted" }));
        }
        state.tokensIn += event.usage.input_tokens;
        state.tokensOut += event.usage.output_tokens;
        state.streamedDeltas = 0;
        mark("timeline");
        mark("header");
        break;
      }
      case "tool.started":
        state.tools.set(event.call_id, { tool: event.tool, args: event.arguments, start: event.ts, end: null, statuses: [], card: null });
        mark("tools");
        mark("timeline");
        break;
      case "tool.finished": {
        const call = state.tools.get(event.call_id);
        if (call) Object.assign(call, { end: event.ts, result: event.result, error: event.error, duration: event.duration, denied: Boolean(event.denied), done: true });
        mark("tools");
        mark("timeline");
        mark("header");
        break;
      }
      case "status": {
        const call = event.call_id && state.tools.get(event.call_id);
        if (call) call.statuses.push(event);
        else state.messages.push(event);
        mark(call ? "tools" : "messages");
        break;
      }
      case "run.finished":
        Object.assign(state, { status: event.status, error: event.error, finishedAt: event.ts, cancelling: false });
        state.tokensIn = event.totals.input_tokens;
        state.tokensOut = event.totals.output_tokens;
        approvals.finish();
        mark("header");
        mark("text");
        mark("timeline");
        mark("loop");
        break;
    }
  }

  // Close the answer so far (all of it rendered) and put `node` after it, before what comes next.
  function insertInAnswer(node) {
    renderText();
    if (tail) {
      blocks.insertAdjacentHTML("beforeend", renderMarkdown(tail));
      tail = "";
      tailNode.data = "";
    }
    blocks.append(node);
  }

  const now = () => Date.now() / 1000 + state.clockOffset;

  function renderHeader() {
    const shown = state.cancelling ? "cancelling" : state.status;
    statusEl.className = `status ${shown}`;
    statusEl.textContent = state.cancelling ? "cancelling…" : state.status;
    meta.textContent = [state.agent, state.model, state.offline ? "offline model" : null].filter(Boolean).join(" · ");
    cancelButton.hidden = !operator || !ACTIVE.includes(state.status);
    const byLines = [state.startedBy && `Started by ${state.startedBy}`,
      state.cancelRequest && (state.cancelRequest.by ? `Cancel requested by ${state.cancelRequest.by}` : "Cancel requested")];
    who.textContent = byLines.filter(Boolean).join(" · ");
    who.hidden = !who.textContent;
    cancelButton.disabled = state.cancelling;
    inputEl.textContent = state.input;
    errorEl.textContent = state.error ?? "";
    const end = state.finishedAt ?? (state.startedAt ? now() : null);
    const elapsed = state.startedAt ? end - state.startedAt : null;
    const outLive = state.tokensOut + state.streamedDeltas;
    const genTime = [...state.steps.values()].reduce((t, s) => t + ((s.end ?? (state.finishedAt ? s.start : now())) - s.start), 0);
    const rate = genTime > 0.05 ? outLive / genTime : null;
    const toolCount = [...state.tools.values()].length;
    counters.replaceChildren(...[
      ["elapsed", seconds(elapsed)], ["tokens in", number(state.tokensIn)],
      ["tokens out", (state.streamedDeltas && !state.finishedAt ? "≈" : "") + number(outLive)],
      ["tokens/s", rate === null ? "–" : rate.toFixed(1)], ["tool calls", number(toolCount)],
      ["started", clock(state.startedAt ?? state.queuedAt)],
    ].map(([k, v]) => h("div", { class: "counter", "data-counter": k }, h("span", { class: "v", text: v }), h("span", { class: "k", text: k }))));
  }

  function renderText() {
    if (pendingText) {
      tail += pendingText;
      tailNode.appendData(pendingText);
      pendingText = "";
    }
    const finished = state.finishedAt !== null;
    const cut = finished ? tail.length : lastBlockBoundary(tail, false);
    if (cut > 0) {
      blocks.insertAdjacentHTML("beforeend", renderMarkdown(tail.slice(0, cut)));
      tail = tail.slice(cut);
      tailNode.data = tail;
    }
  }

  function renderTools() {
    if (!state.tools.size) {
      tools.replaceChildren(h("p", { class: "muted", text: "No tool calls yet." }));
      return;
    }
    if (tools.firstChild?.tagName === "P") tools.replaceChildren();
    for (const [callId, call] of state.tools) {
      if (!call.card) {
        call.card = h("details", { class: "tool", open: true, "data-call": callId });
        tools.append(call.card);
      }
      const outcome = !call.done ? h("span", { class: "status running", text: "running" })
        : call.denied ? h("span", { class: "status denied", text: "denied" })
        : call.error ? h("span", { class: "status failed", text: call.error === "cancelled" ? "cancelled" : "error" })
        : h("span", { class: "status succeeded", text: "done" });
      const parts = [
        h("summary", {}, h("span", { class: "name", text: call.tool }), outcome,
          h("span", { class: "muted", text: call.done ? seconds(call.duration) : "" })),
        h("div", { class: "label", text: "arguments" }), truncatedPre(pretty(call.args)),
      ];
      if (call.statuses.length) {
        parts.push(h("ul", { class: "progress-list" },
          call.statuses.slice(-5).map((s) => h("li", { text: s.progress !== null ? `${s.message} (${Math.round(s.progress * 100)}%)` : s.message }))));
      }
      if (call.done) {
        parts.push(h("div", { class: "label", text: call.denied ? "not called: the model was told" : call.error ? "error" : "result" }));
        parts.push(call.error ? h("p", { class: "error-text", text: call.error }) : truncatedPre(pretty(call.result)));
      }
      const open = call.card.open;
      call.card.replaceChildren(...parts);
      call.card.open = open;
    }
  }

  function renderTimelineNow() {
    const spans = [];
    for (const [index, step] of state.steps) {
      spans.push({ id: `step-${index}`, kind: "step", label: `step ${index + 1} (LLM)`, start: step.start, end: step.end ?? (state.finishedAt ?? null), error: step.error, note: step.note });
    }
    for (const [callId, call] of state.tools) {
      spans.push({ id: `tool-${callId}`, kind: "tool", label: call.tool, start: call.start, end: call.end ?? (state.finishedAt ?? null), error: call.error });
    }
    spans.push(...approvals.spans(state.finishedAt));
    spans.sort((a, b) => a.start - b.start);
    renderTimeline(timeline, spans, state.startedAt ?? state.queuedAt, state.finishedAt ?? now());
  }

  function renderMessages() {
    messages.replaceChildren(...(state.messages.length
      ? state.messages.map((m) => h("li", { text: `${clock(m.ts)} — ${m.message}` }))
      : [h("li", { class: "muted", text: "No messages." })]));
  }

  function renderLoop() {
    steer.show(operator && ["running", "waiting"].includes(state.status));
    thread.update({ thread: state.thread, agent: state.agent, done: state.finishedAt !== null });
  }

  function render() {
    frame = 0;
    const parts = dirty;
    dirty = new Set();
    const all = parts.has("all");
    if (all || parts.has("text")) renderText();
    if (all || parts.has("header")) renderHeader();
    if (all || parts.has("tools")) renderTools();
    if (all || parts.has("timeline")) renderTimelineNow();
    if (all || parts.has("messages")) renderMessages();
    if (all || parts.has("loop")) renderLoop();
  }

  const ticker = setInterval(() => {
    if (ACTIVE.includes(state.status)) {
      mark("header");
      mark("timeline");
      approvals.tick();
    }
  }, 250);

  // A run that does not exist (or is not this person's to see) gets a page of its own, not a status.
  function notFound() {
    stop();
    clearInterval(ticker);
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
    state.error = error.message;
    mark("header");
  }, {
    onReset: () => location.reload(), // the run's log was rebuilt (epoch_changed): start over
    onPresence: (message) => watchers.update(message),
  });
  api(`/api/runs/${encodeURIComponent(runId)}`).then((summary) => {
    title.textContent = `Run ${runId}`;
    state.summary = summary;
    if (!state.thread && summary.thread) {
      state.thread = summary.thread;
      mark("loop");
    }
  }).catch((error) => {
    if (error.code === "unknown_run") notFound();
  });
  mark("all");

  return () => {
    stop();
    clearInterval(ticker);
    cancelAnimationFrame(frame);
  };
}
