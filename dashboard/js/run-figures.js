// @ts-check
// The run's figures, from its model (run-model.js) and the server's clock: elapsed time, tokens,
// output speed measured over streaming time only, tool calls and cost.
//
// Every time here is on the events' clock (their `ts`), so a figure reads the same while a step
// streams and after it: a step's time to first token is its first token event's ts minus its
// step.started's (the server's `ttft` is exactly that), its streaming time its end minus that first
// token (`duration − ttft` once finished, where `duration` is its end minus the same start).
//
// Output tokens/s — defined once, the same as the overview's (agents/store/aggregates.py): the
// output tokens of the steps that streamed text over those steps' streaming time. A step that only
// asked for tools streams nothing a watcher sees, and its tokens (a local model sends a whole call in
// one chunk) say nothing about the model's speed. A rate shown after a few tokens is noise (6
// tokens in 50 ms is not 120 tokens/s): it is shown once the run has streamed for MIN_STREAMING
// seconds, or a step has finished after streaming at least MIN_MEASURED seconds (a whole answer in
// a millisecond is not 100,000 tokens/s of anything).

/** @typedef {import("./run-model.js").Run} Run */
/** @typedef {import("./run-model.js").StepItem} StepItem */

/**
 * What the run's header shows.
 * @typedef {object} Figures
 * @property {number | null} elapsed seconds since the run started (null before)
 * @property {number | null} tokensIn input tokens so far (null while no step has said)
 * @property {boolean} inPartial some finished step's input is unknown
 * @property {number} tokensOut output tokens so far
 * @property {boolean} estimated some of `tokensOut` is counted from streamed deltas, not reported
 * @property {number | null} rate output tokens/s (null until measurable)
 * @property {boolean} waiting the current step waits for its first token
 * @property {number} toolCalls
 * @property {number | null | undefined} cost USD; undefined: nothing to price yet; null: unpriced
 */

export const MIN_STREAMING = 0.5;
export const MIN_MEASURED = 0.05;

/**
 * USD, to a precision that shows small step costs; null means the model has no price.
 * @param {number | null | undefined} cost
 */
export function usd(cost) {
  if (cost === null || cost === undefined) return "unpriced";
  if (cost === 0) return "$0";
  if (cost >= 1) return `$${cost.toFixed(2)}`;
  if (cost >= 0.01) return `$${cost.toFixed(4)}`;
  return `$${cost.toFixed(6)}`;
}

// A step's time to first token (s), or null before its first token: the same while it streams
// (its events) and after (the server's `ttft`, computed from the same two timestamps).
/** @param {StepItem} step @returns {number | null} */
export function stepTtft(step) {
  if (step.ttft !== null && step.ttft !== undefined) return step.ttft;
  return step.firstTokenAt !== null ? step.firstTokenAt - step.start : null;
}

// Seconds a step has streamed by `now` (epoch s, server clock), or null before its first token.
/** @param {StepItem} step @param {number} now @returns {number | null} */
export function streamingTime(step, now) {
  if (step.end !== null && step.duration !== null) {
    return step.ttft === null ? null : Math.max(step.duration - step.ttft, 0);
  }
  if (step.firstTokenAt === null) return null;
  return Math.max((step.end ?? now) - step.firstTokenAt, 0);
}

// Output tokens of a step: its usage once finished, the streamed deltas (≈ tokens) before.
/** @param {StepItem} step @returns {number} */
export const stepOutput = (step) => (step.usage ? step.usage.output_tokens : step.deltas);

// Output tokens per second of one step, or null when it has not streamed long enough to say.
/** @param {StepItem} step @param {number} now @returns {number | null} */
export function stepSpeed(step, now) {
  const time = streamingTime(step, now);
  if (time === null || time < MIN_MEASURED) return null;
  if (time < MIN_STREAMING && (step.end === null || step.firstTokenAt === null)) return null;
  return stepOutput(step) / time;
}

// Does a step count in the run's output tokens/s: one that streamed text and finished, or the one
// streaming now (a step cut off by an instance's end, with no step.finished, the server does not count).
/** @param {StepItem} step */
function countsInRate(step) {
  return step.duration !== null ? step.streamedText : step.end === null && step.firstTokenAt !== null;
}

// Input tokens so far: null while no step has said (the first one is streaming, or the model sends
// no usage); `partial` when a finished step's input is unknown (it was cut, or had no usage).
/** @param {StepItem[]} steps @returns {{tokensIn: number | null, inPartial: boolean}} */
function inputTokens(steps) {
  /** @type {number | null} */
  let known = null;
  let partial = false;
  for (const step of steps) {
    if (!step.usage) continue;
    if (step.usage.estimated) partial = true;
    else known = (known ?? 0) + step.usage.input_tokens;
  }
  return { tokensIn: known, inPartial: partial && known !== null };
}

// Everything the header shows. `now`: the server's clock (frozen while disconnected).
/** @param {Run} run @param {number} now @returns {Figures} */
export function runFigures(run, now) {
  const end = run.finishedAt ?? now;
  const elapsed = run.startedAt !== null ? Math.max(end - run.startedAt, 0) : null;
  let tokensOut = 0;
  let streamed = 0; // seconds the text steps streamed
  let streamedOut = 0; // and their output tokens
  let finishedStreaming = false;
  let cost = 0;
  /** @type {boolean | null} */
  let priced = null; // null: no step has finished yet
  let estimated = false;
  for (const step of run.steps) {
    if (step.usage) {
      tokensOut += step.usage.output_tokens;
      estimated = estimated || Boolean(step.usage.estimated);
      if (step.cost === null) priced = false;
      else {
        cost += step.cost;
        if (priced === null) priced = true;
      }
    } else if (step.end === null) {
      tokensOut += step.deltas;
      estimated = estimated || step.deltas > 0;
    }
    if (countsInRate(step)) {
      streamed += streamingTime(step, end) ?? 0;
      streamedOut += stepOutput(step);
      if (step.end !== null) finishedStreaming = true;
    }
  }
  if (run.totals) tokensOut = run.totals.output_tokens;
  const rate = streamed >= MIN_STREAMING || (finishedStreaming && streamed >= MIN_MEASURED) ? streamedOut / streamed : null;
  const waiting = run.finishedAt === null && run.current !== null && run.current.end === null && run.current.firstTokenAt === null;
  let shownCost = priced === null ? undefined : priced ? cost : null;
  if (run.totals) shownCost = run.totals.cost;
  return {
    elapsed, ...inputTokens(run.steps), tokensOut, estimated, rate, waiting,
    toolCalls: run.tools.size,
    cost: shownCost, // undefined: nothing to price yet; null: unpriced
  };
}
