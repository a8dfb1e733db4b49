// @ts-check
// The run's thread as a conversation: each run of it as the person's input and the agent's final
// answer (GET /api/threads/{id}, then the end of each other run's events), and on a finished run a
// "Continue" box that starts the next run of the thread and opens it.

import { api, h, onSend } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const ANSWER_LIMIT = 3000; // characters of an earlier answer shown; the run's own page has it all
const TAIL_EVENTS = 1000; // events read from the end of an earlier run to find its final answer
const FETCHED_RUNS = 10; // earlier answers fetched (older runs show their input and a link)
const answers = new Map(); // run id -> final answer of a finished run (they do not change)

// The final answer in a run's events: the tokens after its last step.started ("…" first when the
// events do not reach back to that step).
export function finalAnswer(events, complete = true) {
  let start = -1;
  events.forEach((e, i) => {
    if (e.type === "step.started") start = i;
  });
  const text = events.slice(start + 1).filter((e) => e.type === "token").map((e) => e.text).join("");
  return start < 0 && !complete ? `…${text}` : text;
}

async function answerOf(run) {
  if (answers.has(run.id)) return answers.get(run.id);
  const after = Math.max(0, (run.last_seq || 0) - TAIL_EVENTS);
  const page = await api(`/api/runs/${encodeURIComponent(run.id)}/events?after=${after}&limit=${TAIL_EVENTS}`);
  const text = finalAnswer(page.events, after === 0);
  if (TERMINAL.has(run.status)) answers.set(run.id, text);
  return text;
}

// `runId`: the run on the page; `operator`: may start runs (viewers get no Continue box).
export function threadPanel({ runId, operator }) {
  let threadId = null;
  let agent = "";
  let finished = false;
  let external = false; // its agent runs elsewhere: runwatch cannot start the next run
  let loads = 0;
  let shown = 0; // runs in the thread, as last read
  let failed = false; // the last read failed (the note says why)
  const list = h("ol", { class: "thread-runs" });
  const note = h("p", { class: "muted thread-note" });
  const text = h("textarea", { id: "continue-text", rows: 2, placeholder: "Ask a follow-up… (Ctrl+Enter sends)" });
  const send = h("button", { id: "continue-send", class: "primary", type: "submit", text: "Continue" });
  const error = h("p", { id: "continue-error", class: "error-text", role: "alert" });
  const form = h("form", { id: "continue", class: "continue-box", "aria-label": "Continue this conversation", hidden: true },
    h("label", { for: "continue-text", text: "Continue this conversation" }),
    h("div", { class: "continue-row" }, text, send), error);
  const section = h("section", { id: "thread", class: "panel", "aria-label": "Conversation", hidden: true },
    h("h2", { text: "Conversation" }), note, list, form);

  function turn(run, answer) {
    const current = run.id === runId;
    const body = current ? h("p", { class: "muted", text: "This run: its answer is above." })
      : !TERMINAL.has(run.status) ? h("p", { class: "muted", text: `${run.status}…` })
      : answer === null ? h("p", { class: "muted", text: "Open the run for its answer." })
      : h("div", { class: "turn-text" });
    if (body.className === "turn-text") {
      const cut = answer.length > ANSWER_LIMIT ? `${answer.slice(0, ANSWER_LIMIT)}…` : answer;
      body.innerHTML = renderMarkdown(cut || "(no answer)"); // escaped by renderMarkdown
    }
    return h("li", { class: "turn", "data-run": run.id, "aria-current": current ? "page" : null },
      h("div", { class: "turn-input", "aria-label": "Input" }, run.input || "(no input)"),
      h("div", { class: "turn-answer" }, body),
      h("div", { class: "turn-meta" },
        current ? h("span", { text: "this run" }) : h("a", { href: `#/runs/${run.id}`, text: `run ${run.id}` }),
        h("span", { class: `status ${run.status}`, text: run.status })));
  }

  // A thread of one run is this run: then only the Continue box (if any) shows.
  function visibility() {
    form.hidden = !(operator && finished && threadId && agent && !external);
    list.hidden = shown < 2;
    note.hidden = shown < 2 && !failed;
    section.hidden = form.hidden && shown < 2 && !failed;
  }

  async function load() {
    if (!threadId) return;
    const mine = ++loads;
    try {
      const thread = await api(`/api/threads/${encodeURIComponent(threadId)}`);
      const fetched = new Set(thread.runs.filter((r) => r.id !== runId).slice(-FETCHED_RUNS).map((r) => r.id));
      const texts = await Promise.all(thread.runs.map((run) => (fetched.has(run.id) && TERMINAL.has(run.status)
        ? answerOf(run).catch(() => null) : null)));
      if (mine !== loads) return; // a later load is under way
      failed = false;
      shown = thread.runs.length;
      note.textContent = `Thread ${thread.id} · ${shown} run${shown === 1 ? "" : "s"}`;
      list.replaceChildren(...thread.runs.map((run, i) => turn(run, texts[i])));
    } catch (failure) {
      if (mine !== loads) return;
      failed = true;
      note.textContent = `Could not load the conversation: ${failure.detail ?? failure.message}`;
    }
    visibility();
  }

  let enabled = true;
  let sending = false;
  const sync = () => {
    send.disabled = sending || !enabled;
  };

  async function submit() {
    if (!enabled || sending) return;
    const said = text.value.trim();
    error.textContent = "";
    if (!said) {
      error.textContent = "Type what to say next.";
      text.focus();
      return;
    }
    sending = true;
    sync();
    try {
      const run = await api("/api/runs", { method: "POST", body: JSON.stringify({ agent, input: said, thread: threadId, if_busy: "queue" }) });
      text.value = "";
      location.hash = `#/runs/${run.id}`;
    } catch (failure) {
      error.textContent = `Could not continue: ${failure.detail ?? failure.message}`;
    } finally {
      sending = false;
      sync();
    }
  }

  onSend(form, text, submit);

  return {
    section,
    // What the page knows of its run: its thread, agent, whether it has finished and whether its
    // agent runs elsewhere. The conversation is read again when the thread becomes known and when
    // the run starts or ends.
    update({ thread, agent: name, done, external: elsewhere = false }) {
      const changed = (thread && thread !== threadId) || done !== finished;
      threadId = thread || threadId;
      agent = name || agent;
      finished = done;
      external = elsewhere;
      visibility();
      if (changed) load();
    },
    refresh: load,
    // Off while the live connection is down.
    setEnabled(value) {
      enabled = value;
      sync();
    },
  };
}
