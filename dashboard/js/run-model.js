// @ts-check
// What the run view knows of one run, built from its events only (docs/protocol.md): the run's
// own fields, and its trace — LLM steps, the tool calls and approvals each step led to, and the
// messages and notes between them — as items the trace, the detail panel and the figures read.
//
// `apply(event)` changes the model and returns what changed ("header", "trace", "answer", …);
// rendering is someone else's job. Each item has a `rev` that grows when it changes (a step's
// streamed text grows without it: the detail panel appends what is new).

/** @typedef {import("./protocol.js").RunEvent} RunEvent */
/** @typedef {import("./protocol.js").RunStatus} RunStatus */
/** @typedef {import("./protocol.js").Actor} Actor */
/** @typedef {import("./protocol.js").Usage} Usage */
/** @typedef {import("./protocol.js").Totals} Totals */
/** @typedef {import("./protocol.js").ApprovalRequested} ApprovalRequested */
/** @typedef {import("./protocol.js").ApprovalResolved} ApprovalResolved */
/** @typedef {import("./protocol.js").Status} Status */
/** @typedef {import("./protocol.js").Capabilities} Capabilities */

/** What an event changed, for the views to redraw. @typedef {"header" | "loop" | "trace" | "answer" | "detail"} Change */

/**
 * Where an item sits in the trace, and its revision (it grows when the item changes).
 * @typedef {object} Links
 * @property {number} rev
 * @property {TraceItem | null} parent
 * @property {TraceItem[]} children
 */

/**
 * One LLM call. Times are the events' `ts` (epoch s); `end` is null while it runs.
 * @typedef {Links & {
 *   kind: "step", id: string, label: string, index: number, model: string,
 *   start: number, end: number | null, firstTokenAt: number | null, text: string, deltas: number,
 *   usage: Usage | null, ttft: number | null, duration: number | null, finish: string | null,
 *   errorType: string | null, cost: number | null, streamedText: boolean, resumed?: boolean,
 * }} StepItem
 */

/**
 * One tool call; `result` is undefined until it finished.
 * @typedef {Links & {
 *   kind: "tool", id: string, label: string, callId: string, tool: string, args: unknown,
 *   start: number, end: number | null, duration: number | null, result: unknown, error: string | null,
 *   denied: boolean, statuses: Status[],
 * }} ToolItem
 */

/**
 * A tool call waiting for (or given) a person's decision.
 * @typedef {Links & {
 *   kind: "approval", id: string, label: string, request: ApprovalRequested,
 *   resolved: ApprovalResolved | null, start: number, end: number | null,
 * }} ApprovalItem
 */

/**
 * A person's message to the run.
 * @typedef {Links & {
 *   kind: "message", id: string, label: string, start: number, end: number, text: string, by: string,
 *   mode: "interrupt" | "queue",
 * }} MessageItem
 */

/**
 * A line between the steps (a cancel asked for, a resume, a status without a tool call).
 * @typedef {Links & {kind: "note", id: string, label: string, start: number, end: number, text: string}} NoteItem
 */

/** @typedef {StepItem | ToolItem | ApprovalItem | MessageItem | NoteItem} TraceItem */

/**
 * The run as its events tell it. `status` is "loading" until its first event.
 * @typedef {object} Run
 * @property {RunStatus | "loading"} status
 * @property {string} agent
 * @property {string} model
 * @property {string} input
 * @property {boolean} offline
 * @property {string | null} error
 * @property {number | null} queuedAt
 * @property {number | null} startedAt
 * @property {number | null} finishedAt
 * @property {Totals | null} totals
 * @property {string} startedBy
 * @property {{by: string} | null} cancelRequest
 * @property {string} thread
 * @property {boolean} external an agent elsewhere executes the run and reports it (the ingest API)
 * @property {Capabilities | null} capabilities an external run's: the controls its agent takes
 * @property {number} lastSeq the seq of the last event applied
 * @property {TraceItem[]} roots items at the top of the trace: steps, messages, notes, in the order they happened
 * @property {StepItem[]} steps every step item, in order (a step run again after run.resumed is a new item)
 * @property {StepItem | null} current the step started last
 * @property {Map<string, ToolItem>} tools call_id -> tool item
 * @property {Map<string, ApprovalItem>} approvals approval_id -> approval item
 */

/**
 * @typedef {object} RunModel
 * @property {Run} run
 * @property {(event: RunEvent) => Change[]} apply apply one event; what it changed
 */

/**
 * Who did something, from an event's `by` ({id, name} or null).
 * @param {Actor | null | undefined} by
 */
export const actor = (by) => by?.name || by?.id || "";

/** The statuses of a run not yet over. @type {readonly string[]} */
export const ACTIVE = ["queued", "running", "waiting"];

/**
 * What people may ask of a run (given their role allows it): everything of runwatch's own runs; of
 * an external run, what its agent declared it takes (`capabilities`) — but its approvals are always
 * decidable, since the agent asked for them.
 * @param {Pick<Run, "external" | "capabilities">} run
 * @returns {{cancel: boolean, message: boolean, approve: boolean}}
 */
export function controlsOf(run) {
  if (!run.external) return { cancel: true, message: true, approve: true };
  return { cancel: Boolean(run.capabilities?.cancel), message: Boolean(run.capabilities?.message), approve: true };
}

/** @returns {RunModel} */
export function createRunModel() {
  /** @type {Run} */
  const run = {
    status: "loading", agent: "", model: "", input: "", offline: false, error: null,
    queuedAt: null, startedAt: null, finishedAt: null, totals: null,
    startedBy: "", cancelRequest: null, thread: "", external: false, capabilities: null, lastSeq: 0,
    roots: [], steps: [], current: null, tools: new Map(), approvals: new Map(),
  };

  /**
   * Put `item` in the trace: under `parent`, or at the top.
   * @template {TraceItem} T
   * @param {Omit<T, keyof Links>} item
   * @param {TraceItem | null} [parent]
   * @returns {T}
   */
  function add(item, parent = null) {
    /** @type {Links} */
    const links = { rev: 0, parent, children: [] };
    const linked = /** @type {T} */ (Object.assign(item, links));
    (parent ? parent.children : run.roots).push(linked);
    return linked;
  }

  /** @param {TraceItem | null | undefined} item */
  const touch = (item) => item && (item.rev += 1);

  /** @param {RunEvent} event @param {string} text */
  function note(event, text) {
    /** @type {NoteItem} */
    const item = add({ id: `note-${event.seq}`, kind: "note", label: text, start: event.ts, end: event.ts, text });
    return item;
  }

  /** @type {{[K in RunEvent["type"]]: (event: Extract<RunEvent, {type: K}>) => Change[]}} */
  const handlers = {
    "run.queued"(e) {
      Object.assign(run, { agent: e.agent, model: e.model, input: e.input, offline: e.offline, queuedAt: e.ts, status: "queued" });
      run.startedBy = actor(e.by);
      run.thread = e.thread || run.thread;
      run.external = Boolean(e.external);
      run.capabilities = e.external ? e.capabilities ?? null : null;
      return ["header", "loop", "trace"];
    },
    "run.cancel_requested"(e) {
      const name = actor(e.by);
      run.cancelRequest = { by: name };
      note(e, name ? `Cancel requested by ${name}` : "Cancel requested");
      return ["header", "trace"];
    },
    "run.started"(e) {
      Object.assign(run, { startedAt: e.ts, status: "running" });
      return ["header", "loop", "trace"];
    },
    "run.resumed"(e) {
      // The instance executing the run stopped; another goes on. An unfinished step runs again.
      for (const step of run.steps) {
        if (step.end === null) {
          Object.assign(step, { end: e.ts, finish: "interrupted", resumed: true });
          touch(step);
        }
      }
      note(e, `Resumed on ${e.instance} from step ${e.step + 1}: the interrupted step runs again`);
      return ["header", "trace", "answer"];
    },
    "step.started"(e) {
      const again = run.steps.filter((s) => s.index === e.index).length;
      const id = again ? `step-${e.index}-${again}` : `step-${e.index}`;
      /** @type {StepItem} */
      const step = add({
        id, kind: "step", index: e.index, label: `step ${e.index + 1}`, model: e.model,
        start: e.ts, end: null, firstTokenAt: null, text: "", deltas: 0, usage: null, ttft: null,
        duration: null, finish: null, errorType: null, cost: null, streamedText: false,
      });
      run.current = step;
      run.steps.push(step);
      return ["header", "trace"];
    },
    token(e) {
      const step = run.current;
      if (step && step.end === null) {
        if (step.firstTokenAt === null) {
          step.firstTokenAt = e.ts;
          touch(step);
        }
        step.text += e.text;
        step.deltas += e.deltas ?? 1;
      }
      return ["answer", "header", "detail"];
    },
    "step.finished"(e) {
      const step = run.steps.findLast((s) => s.index === e.index) ?? run.current;
      if (step) {
        Object.assign(step, {
          end: e.ts, finish: e.finish_reason, usage: e.usage, ttft: e.ttft, duration: e.duration,
          errorType: e.error_type ?? null, cost: e.cost ?? null,
          // (events stored before the field: a step that streamed text had token events)
          streamedText: e.streamed_text ?? step.firstTokenAt !== null,
        });
        touch(step);
      }
      return ["header", "trace", "answer"];
    },
    "approval.requested"(e) {
      /** @type {ApprovalItem} */
      const item = add({
        id: `approval-${e.approval_id}`, kind: "approval", label: `approval: ${e.tool}`,
        request: e, resolved: null, start: e.ts, end: null,
      }, run.current);
      run.approvals.set(e.approval_id, item);
      if (run.finishedAt === null) run.status = "waiting";
      return ["header", "trace", "loop"];
    },
    "approval.resolved"(e) {
      const item = run.approvals.get(e.approval_id);
      if (item) {
        Object.assign(item, { resolved: e, end: e.ts });
        touch(item);
        const tool = run.tools.get(item.request.call_id);
        touch(tool);
      }
      if (run.finishedAt === null && !e.waiting && run.status === "waiting") run.status = "running";
      return ["header", "trace", "loop"];
    },
    "tool.started"(e) {
      /** @type {ToolItem} */
      const item = add({
        id: `tool-${e.call_id}`, kind: "tool", label: e.tool, callId: e.call_id, tool: e.tool, args: e.arguments,
        start: e.ts, end: null, duration: null, result: undefined, error: null, denied: false, statuses: [],
      }, run.current);
      run.tools.set(e.call_id, item);
      return ["header", "trace"];
    },
    "tool.finished"(e) {
      const item = run.tools.get(e.call_id);
      if (item) {
        Object.assign(item, { end: e.ts, result: e.result, error: e.error, duration: e.duration, denied: Boolean(e.denied) });
        touch(item);
      }
      return ["header", "trace"];
    },
    status(e) {
      const item = e.call_id && run.tools.get(e.call_id);
      if (item) {
        item.statuses.push(e);
        touch(item);
      } else {
        note(e, e.progress !== null && e.progress !== undefined ? `${e.message} (${Math.round(e.progress * 100)}%)` : e.message);
      }
      return ["trace"];
    },
    "message.received"(e) {
      const who = actor(e.by) || "someone";
      /** @type {MessageItem} */
      const message = add({
        id: `message-${e.seq}`, kind: "message", label: `${who} said`, start: e.ts, end: e.ts,
        text: e.text, by: who, mode: e.mode,
      });
      void message; // (typed above: the item has every field a message item has)
      return ["trace"];
    },
    "run.finished"(e) {
      Object.assign(run, { status: e.status, error: e.error, finishedAt: e.ts, totals: e.totals });
      for (const item of [...run.steps, ...run.tools.values(), ...run.approvals.values()]) touch(item);
      return ["header", "trace", "answer", "loop"];
    },
  };

  return {
    run,
    apply(event) {
      run.lastSeq = event.seq;
      // (an event of a type this page does not know, from a newer server, changes nothing)
      const handler = /** @type {((event: RunEvent) => Change[]) | undefined} */ (handlers[event.type]);
      return handler ? handler(event) : [];
    },
  };
}

/** @typedef {{item: TraceItem, level: number, posinset: number, setsize: number}} Row */

/**
 * The trace as a flat list in reading order: each top item, then its children (depth first).
 * @param {TraceItem[]} roots
 * @returns {Row[]}
 */
export function flatten(roots) {
  /** @type {Row[]} */
  const out = [];
  /** @param {TraceItem[]} items @param {number} level */
  const walk = (items, level) => {
    items.forEach((item, i) => {
      out.push({ item, level, posinset: i + 1, setsize: items.length });
      walk(item.children, level + 1);
    });
  };
  walk(roots, 1);
  return out;
}

/**
 * What an item's state is, as a word shown beside it and used for its style.
 * @param {TraceItem} item
 * @param {Run} run
 * @returns {string}
 */
export function itemState(item, run) {
  const over = run.finishedAt !== null;
  switch (item.kind) {
    case "step":
      if (item.end === null) return over ? "interrupted" : item.firstTokenAt === null ? "waiting" : "running";
      if (item.finish === "interrupted") return "interrupted";
      if (item.finish === "cancelled") return "cancelled";
      if (item.finish === "error" || item.errorType) return "failed";
      return "done";
    case "tool":
      if (item.end === null) return over ? "interrupted" : "running";
      if (item.denied) return "denied";
      if (item.error === "cancelled") return "cancelled";
      return item.error ? "failed" : "done";
    case "approval":
      if (item.resolved) return item.resolved.decision; // approved, denied, expired
      return over ? "closed" : "waiting";
    default:
      return "event";
  }
}

/** Running items (their bars grow); the rest have ended. @param {string} state */
export const isOpen = (state) => state === "running" || state === "waiting";
