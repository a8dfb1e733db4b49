// What the run view knows of one run, built from its events only (docs/protocol.md): the run's
// own fields, and its trace — LLM steps, the tool calls and approvals each step led to, and the
// messages and notes between them — as items the trace, the detail panel and the figures read.
//
// `apply(event)` changes the model and returns what changed ("header", "trace", "answer", …);
// rendering is someone else's job. Each item has a `rev` that grows when it changes (a step's
// streamed text grows without it: the detail panel appends what is new).

// Who did something, from an event's `by` ({id, name} or null).
export const actor = (by) => by?.name || by?.id || "";

export const ACTIVE = ["queued", "running", "waiting"];

export function createRunModel() {
  const run = {
    status: "loading", agent: "", model: "", input: "", offline: false, error: null,
    queuedAt: null, startedAt: null, finishedAt: null, totals: null,
    startedBy: "", cancelRequest: null, thread: "", lastSeq: 0,
    roots: [], // items at the top of the trace: steps, messages, notes, in the order they happened
    steps: [], // every step item, in order (a step run again after run.resumed is a new item)
    current: null, // the step started last
    tools: new Map(), // call_id -> tool item
    approvals: new Map(), // approval_id -> approval item
  };

  function add(item, parent = null) {
    Object.assign(item, { rev: 0, parent, children: [] });
    (parent ? parent.children : run.roots).push(item);
    return item;
  }

  const touch = (item) => item && (item.rev += 1);

  function note(event, text) {
    add({ id: `note-${event.seq}`, kind: "note", label: text, start: event.ts, end: event.ts, text });
  }

  const handlers = {
    "run.queued"(e) {
      Object.assign(run, { agent: e.agent, model: e.model, input: e.input, offline: e.offline, queuedAt: e.ts, status: "queued" });
      run.startedBy = actor(e.by);
      run.thread = e.thread || run.thread;
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
      run.current = add({
        id, kind: "step", index: e.index, label: `step ${e.index + 1}`, model: e.model,
        start: e.ts, end: null, firstTokenAt: null, text: "", deltas: 0, usage: null, ttft: null,
        duration: null, finish: null, errorType: null, cost: null, streamedText: false,
      });
      run.steps.push(run.current);
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
      add({
        id: `message-${e.seq}`, kind: "message", label: `${who} said`, start: e.ts, end: e.ts,
        text: e.text, by: who, mode: e.mode,
      });
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
      const handler = handlers[event.type];
      return handler ? handler(event) : [];
    },
  };
}

// The trace as a flat list in reading order: each top item, then its children (depth first).
export function flatten(roots) {
  const out = [];
  const walk = (items, level) => {
    items.forEach((item, i) => {
      out.push({ item, level, posinset: i + 1, setsize: items.length });
      walk(item.children, level + 1);
    });
  };
  walk(roots, 1);
  return out;
}

// What an item's state is, as a word shown beside it and used for its style.
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

// Running items (their bars grow); the rest have ended.
export const isOpen = (state) => state === "running" || state === "waiting";
