// The run's figures (dashboard/js/run-figures.js), from the run model and the server's clock.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { runFigures, stepSpeed, stepTtft, usd } from "../../../dashboard/js/run-figures.js";
import { createRunModel } from "../../../dashboard/js/run-model.js";
import { finished, queued, resetSeq, started, stepFinished, stepStarted, token, toolStarted } from "./events.mjs";

beforeEach(resetSeq);

function runOf(...events) {
  const model = createRunModel();
  for (const e of events) model.apply(e);
  return model.run;
}

test("a cost is shown to a precision that shows small step costs", () => {
  assert.deepEqual([usd(null), usd(0), usd(2.5), usd(0.0123), usd(0.000012)], ["unpriced", "$0", "$2.50", "$0.0123", "$0.000012"]);
});

test("a step's time to first token is measured from its events while it streams", () => {
  const run = runOf(queued(), started(1), stepStarted(0, 2), token("a", 2.4));
  assert.equal(stepTtft(run.steps[0]), 2.4 - 2);
});

test("a step's speed is unknown until it has streamed long enough", () => {
  const run = runOf(queued(), started(1), stepStarted(0, 2), token("a", 2.1), token("b", 2.2));
  assert.equal(stepSpeed(run.steps[0], 2.3), null);
  assert.equal(stepSpeed(run.steps[0], 3.1), 2 / 1); // two deltas over one second of streaming
});

test("the run's output rate counts only the steps that streamed text", () => {
  const run = runOf(
    queued(), started(1),
    stepStarted(0, 2), stepFinished(0, 3, { ttft: 0.5, duration: 1, streamed_text: false, usage: { input_tokens: 5, output_tokens: 50, estimated: false } }),
    stepStarted(1, 4), stepFinished(1, 6, { ttft: 0, duration: 2, streamed_text: true, usage: { input_tokens: 5, output_tokens: 40, estimated: false } }),
  );
  assert.equal(runFigures(run, 7).rate, 40 / 2);
});

test("the run's figures add up its steps' tokens, cost and tool calls", () => {
  const run = runOf(queued(), started(1), stepStarted(0, 2), stepFinished(0, 3), toolStarted("c1", 3.1), stepStarted(1, 4), stepFinished(1, 5));
  const figures = runFigures(run, 6);
  assert.deepEqual(
    { in: figures.tokensIn, out: figures.tokensOut, cost: figures.cost, tools: figures.toolCalls, elapsed: figures.elapsed },
    { in: 20, out: 40, cost: 0.002, tools: 1, elapsed: 5 },
  );
});

test("a step with an unpriced model makes the run's cost unpriced", () => {
  const run = runOf(queued(), started(1), stepStarted(0, 2), stepFinished(0, 3), stepStarted(1, 4), stepFinished(1, 5, { cost: null }));
  assert.equal(runFigures(run, 6).cost, null);
});

test("a finished run's figures are its totals, and its time stops at its end", () => {
  const run = runOf(queued(), started(1), stepStarted(0, 2), stepFinished(0, 3), finished("succeeded", 4));
  const figures = runFigures(run, 100);
  assert.deepEqual([figures.elapsed, figures.tokensOut, figures.cost], [3, 20, 0.001]);
});

test("a run waits while its current step has no first token", () => {
  const run = runOf(queued(), started(1), stepStarted(0, 2));
  assert.equal(runFigures(run, 3).waiting, true);
});
