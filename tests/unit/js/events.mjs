// Events as the server sends them (agents/events.py), for the model tests: every field present,
// `seq` counted per run, `ts` given by the test.

let seq = 0;

export function resetSeq() {
  seq = 0;
}

export function event(type, fields = {}, ts = 1000 + seq) {
  seq += 1;
  return { type, run_id: "r1", seq, ts, ...fields };
}

export const queued = (fields = {}) =>
  event("run.queued", { agent: "demo", input: "hi", model: "m1", tenant: "default", offline: true, by: { id: "key:k1", name: "ada" }, thread: "t1", ...fields });
export const started = (ts) => event("run.started", { agent: "demo", queue_wait: 0, instance: "i1" }, ts);
export const stepStarted = (index, ts) => event("step.started", { index, model: "m1" }, ts);
export const token = (text, ts, deltas = 1) => event("token", { text, deltas }, ts);
export const stepFinished = (index, ts, fields = {}) =>
  event("step.finished", {
    index, finish_reason: "stop", usage: { input_tokens: 10, output_tokens: 20, estimated: false },
    ttft: 0.5, duration: 2, streamed_text: true, error_type: null, cost: 0.001, tool_calls: 0, ...fields,
  }, ts);
export const toolStarted = (callId, ts) => event("tool.started", { call_id: callId, tool: "search", arguments: { q: "x" } }, ts);
export const toolFinished = (callId, ts, fields = {}) =>
  event("tool.finished", { call_id: callId, tool: "search", result: "found", duration: 0.25, error: null, denied: false, ...fields }, ts);
export const finished = (status, ts, fields = {}) =>
  event("run.finished", {
    status, error: null, totals: { input_tokens: 10, output_tokens: 20, tool_calls: 0, steps: 1, duration: 3, cost: 0.001 }, ...fields,
  }, ts);
