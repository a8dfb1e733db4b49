// The run model (dashboard/js/run-model.js): a run's fields and trace, from its events alone.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { controlsOf, createRunModel, flatten, itemState } from "../../../dashboard/js/run-model.js";
import { event, finished, queued, resetSeq, started, stepFinished, stepStarted, token, toolFinished, toolStarted } from "./events.mjs";

beforeEach(resetSeq);

function modelOf(...events) {
  const model = createRunModel();
  for (const e of events) model.apply(e);
  return model;
}

test("a run is loading until its first event", () => {
  assert.equal(createRunModel().run.status, "loading");
});

test("run.queued gives the run its agent, model, input, thread and who started it", () => {
  const { run } = modelOf(queued());
  assert.deepEqual(
    { status: run.status, agent: run.agent, model: run.model, input: run.input, thread: run.thread, by: run.startedBy },
    { status: "queued", agent: "demo", model: "m1", input: "hi", thread: "t1", by: "ada" },
  );
});

test("who started a run is its id when it has no name", () => {
  const { run } = modelOf(queued({ by: { id: "key:k9", name: "" } }));
  assert.equal(run.startedBy, "key:k9");
});

test("runwatch's own run takes every control", () => {
  const { run } = modelOf(queued());
  assert.equal(run.external, false);
  assert.deepEqual(controlsOf(run), { cancel: true, message: true, approve: true });
});

test("an external run offers only the controls its agent takes, and its approvals always", () => {
  const { run } = modelOf(queued({ external: true, capabilities: { cancel: true, approve: false, message: false } }));
  assert.equal(run.external, true);
  assert.deepEqual(controlsOf(run), { cancel: true, message: false, approve: true });
});

test("an observe-only external run takes no cancel and no message", () => {
  const { run } = modelOf(queued({ external: true, capabilities: { cancel: false, approve: false, message: false } }));
  assert.deepEqual(controlsOf(run), { cancel: false, message: false, approve: true });
  assert.deepEqual(controlsOf(modelOf(queued({ external: true })).run), { cancel: false, message: false, approve: true });
});

test("apply says what an event changed", () => {
  const model = createRunModel();
  assert.deepEqual(model.apply(queued()), ["header", "loop", "trace"]);
  assert.deepEqual(model.apply(started(1001)), ["header", "loop", "trace"]);
});

test("an event of an unknown type changes nothing but the last seq", () => {
  const model = modelOf(queued());
  const changes = model.apply(event("something.new", {}));
  assert.deepEqual(changes, []);
  assert.equal(model.run.lastSeq, 2);
  assert.equal(model.run.status, "queued");
});

test("tokens grow the current step's text and count its deltas", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), token("Hel", 2.5, 2), token("lo", 2.6));
  assert.equal(run.steps.length, 1);
  assert.equal(run.current.text, "Hello");
  assert.equal(run.current.deltas, 3);
});

test("a step's first token time is its first token event's ts", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), token("a", 2.5), token("b", 3));
  assert.equal(run.current.firstTokenAt, 2.5);
});

test("a token with no step running is not shown anywhere", () => {
  const { run } = modelOf(queued(), started(1), token("stray", 1.5));
  assert.equal(run.steps.length, 0);
  assert.equal(run.current, null);
});

test("step.finished ends the step with its usage, ttft, duration and cost", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), token("a", 2.5), stepFinished(0, 4));
  const step = run.steps[0];
  assert.deepEqual(
    { end: step.end, finish: step.finish, ttft: step.ttft, duration: step.duration, cost: step.cost, out: step.usage.output_tokens },
    { end: 4, finish: "stop", ttft: 0.5, duration: 2, cost: 0.001, out: 20 },
  );
});

test("a step stored before streamed_text existed counts as streamed when it had tokens", () => {
  const old = (ts) => {
    const e = stepFinished(0, ts);
    delete e.streamed_text;
    return e;
  };
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), token("a", 2.5), old(4));
  assert.equal(run.steps[0].streamedText, true);
});

test("each change to an item raises its rev", () => {
  const model = modelOf(queued(), started(1), stepStarted(0, 2));
  const step = model.run.steps[0];
  const before = step.rev;
  model.apply(token("a", 2.5)); // the first token: the step now streams
  assert.equal(step.rev, before + 1);
  model.apply(token("b", 2.6)); // more text: the detail panel appends it, the rev stays
  assert.equal(step.rev, before + 1);
  model.apply(stepFinished(0, 4));
  assert.equal(step.rev, before + 2);
});

test("a tool call sits under the step that asked for it", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), stepFinished(0, 3), toolStarted("c1", 3.1));
  const tool = run.tools.get("c1");
  assert.equal(tool.parent, run.steps[0]);
  assert.deepEqual(run.steps[0].children, [tool]);
  assert.deepEqual(tool.args, { q: "x" });
});

test("tool.finished gives the tool its result and duration", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), toolStarted("c1", 3), toolFinished("c1", 3.25));
  const tool = run.tools.get("c1");
  assert.deepEqual({ end: tool.end, result: tool.result, duration: tool.duration, denied: tool.denied }, { end: 3.25, result: "found", duration: 0.25, denied: false });
});

test("a status event about a tool call goes with that call", () => {
  const status = event("status", { message: "fetching", call_id: "c1", progress: 0.5 }, 3.1);
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), toolStarted("c1", 3), status);
  assert.deepEqual(run.tools.get("c1").statuses.map((s) => s.message), ["fetching"]);
});

test("a status event about no call is a note with its progress in percent", () => {
  const status = event("status", { message: "warming up", call_id: null, progress: 0.25 }, 1.5);
  const { run } = modelOf(queued(), started(1), status);
  assert.deepEqual(run.roots.map((i) => [i.kind, i.text]), [["note", "warming up (25%)"]]);
});

test("a cancel request is noted with who asked", () => {
  const cancel = event("run.cancel_requested", { by: { id: "u1", name: "grace" } }, 2);
  const { run } = modelOf(queued(), started(1), cancel);
  assert.deepEqual(run.cancelRequest, { by: "grace" });
  assert.equal(run.roots.at(-1).text, "Cancel requested by grace");
});

test("an approval request makes the run wait, and its decision lets it run again", () => {
  const request = event("approval.requested", { approval_id: "a1", call_id: "c1", tool: "deploy", arguments: {}, reason: "risky", expires_at: 9999 }, 3);
  const model = modelOf(queued(), started(1), stepStarted(0, 2), request);
  assert.equal(model.run.status, "waiting");
  model.apply(event("approval.resolved", { approval_id: "a1", decision: "approved", by: null, arguments: {}, message: null, waiting: false }, 4));
  assert.equal(model.run.status, "running");
  assert.equal(itemState(model.run.approvals.get("a1"), model.run), "approved");
});

test("a decision while other approvals are open keeps the run waiting", () => {
  const ask = (id, ts) => event("approval.requested", { approval_id: id, call_id: `c-${id}`, tool: "deploy", arguments: {}, reason: "", expires_at: 9999 }, ts);
  const model = modelOf(queued(), started(1), stepStarted(0, 2), ask("a1", 3), ask("a2", 3.1));
  model.apply(event("approval.resolved", { approval_id: "a1", decision: "denied", by: null, arguments: null, message: "no", waiting: true }, 4));
  assert.equal(model.run.status, "waiting");
});

test("run.resumed ends the unfinished step as interrupted and runs it again as a new item", () => {
  const resumed = event("run.resumed", { instance: "i2", step: 0, agent: "demo" }, 5);
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), token("half", 2.5), resumed, stepStarted(0, 6));
  assert.deepEqual(run.steps.map((s) => [s.id, s.finish]), [["step-0", "interrupted"], ["step-0-1", null]]);
  assert.equal(run.steps[0].end, 5);
  assert.match(run.roots.find((i) => i.kind === "note").text, /^Resumed on i2 from step 1/);
});

test("step.finished after a resume ends the step run again, not the interrupted one", () => {
  const resumed = event("run.resumed", { instance: "i2", step: 0, agent: "demo" }, 5);
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), resumed, stepStarted(0, 6), stepFinished(0, 8));
  assert.equal(run.steps[0].end, 5);
  assert.equal(run.steps[1].end, 8);
});

test("a person's message is an item of the trace with who said it", () => {
  const message = event("message.received", { text: "try again", by: { id: "u1", name: "ada" }, mode: "interrupt" }, 3);
  const { run } = modelOf(queued(), started(1), message);
  const item = run.roots.at(-1);
  assert.deepEqual([item.kind, item.label, item.text, item.mode], ["message", "ada said", "try again", "interrupt"]);
});

test("run.finished gives the run its final status, error and totals", () => {
  const { run } = modelOf(queued(), started(1), finished("failed", 9, { error: "model down" }));
  assert.deepEqual([run.status, run.error, run.finishedAt, run.totals.output_tokens], ["failed", "model down", 9, 20]);
});

test("a tool still running when the run finished shows as interrupted", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), toolStarted("c1", 3), finished("cancelled", 4));
  assert.equal(itemState(run.tools.get("c1"), run), "interrupted");
});

test("a step's state: waiting for its first token, running, then done", () => {
  const model = modelOf(queued(), started(1), stepStarted(0, 2));
  const step = model.run.steps[0];
  assert.equal(itemState(step, model.run), "waiting");
  model.apply(token("a", 2.5));
  assert.equal(itemState(step, model.run), "running");
  model.apply(stepFinished(0, 4));
  assert.equal(itemState(step, model.run), "done");
});

test("a step whose model call failed is failed", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), stepFinished(0, 4, { finish_reason: "error", error_type: "timeout" }));
  assert.equal(itemState(run.steps[0], run), "failed");
});

test("a denied tool call is denied, not done", () => {
  const { run } = modelOf(queued(), started(1), stepStarted(0, 2), toolStarted("c1", 3), toolFinished("c1", 4, { denied: true, result: "denied" }));
  assert.equal(itemState(run.tools.get("c1"), run), "denied");
});

test("flatten lists the trace depth first with each row's level and place among its siblings", () => {
  const { run } = modelOf(
    queued(), started(1), stepStarted(0, 2), stepFinished(0, 3), toolStarted("c1", 3.1), toolStarted("c2", 3.2),
    toolFinished("c1", 4), toolFinished("c2", 4), stepStarted(1, 5),
  );
  assert.deepEqual(
    flatten(run.roots).map((r) => [r.item.id, r.level, r.posinset, r.setsize]),
    [["step-0", 1, 1, 2], ["tool-c1", 2, 1, 2], ["tool-c2", 2, 2, 2], ["step-1", 1, 2, 2]],
  );
});
