// The run's figures, from its model (run-model.js) and the server's clock: elapsed time, tokens,
// output speed measured over streaming time only, tool calls and cost.
//
// Speed: a step streams from its first token to its end, so output tokens / (duration − ttft).
// Time waiting for the first token (or for tools, or people) is not generation time. A rate shown
// after a few tokens is noise (6 tokens in 50 ms is not 120 tokens/s): it is shown once the run
// has streamed for MIN_STREAMING seconds, or a step has finished after streaming at least
// MIN_MEASURED seconds (a whole answer in a millisecond is not 100,000 tokens/s of anything).
// The run's rate counts the steps that streamed text: a step that only asked for tools streams
// nothing a watcher sees, and its few tokens say nothing about the model's speed.

export const MIN_STREAMING = 0.5;
export const MIN_MEASURED = 0.05;

// USD, to a precision that shows small step costs; null means the model has no price.
export function usd(cost) {
  if (cost === null || cost === undefined) return "unpriced";
  if (cost === 0) return "$0";
  if (cost >= 1) return `$${cost.toFixed(2)}`;
  if (cost >= 0.01) return `$${cost.toFixed(4)}`;
  return `$${cost.toFixed(6)}`;
}

// Seconds a step has streamed by `now` (epoch s, server clock), or null before its first token.
export function streamingTime(step, now) {
  if (step.end !== null && step.duration !== null) {
    return step.ttft === null ? null : Math.max(step.duration - step.ttft, 0);
  }
  if (step.firstTokenAt === null) return null;
  return Math.max((step.end ?? now) - step.firstTokenAt, 0);
}

// Output tokens of a step: its usage once finished, the streamed deltas (≈ tokens) before.
export const stepOutput = (step) => (step.usage ? step.usage.output_tokens : step.deltas);

// Output tokens per second of one step, or null when it has not streamed long enough to say.
export function stepSpeed(step, now) {
  const time = streamingTime(step, now);
  if (time === null || time < MIN_MEASURED) return null;
  if (time < MIN_STREAMING && (step.end === null || step.firstTokenAt === null)) return null;
  return stepOutput(step) / time;
}

// Everything the header shows. `now`: the server's clock (frozen while disconnected).
export function runFigures(run, now) {
  const end = run.finishedAt ?? now;
  const elapsed = run.startedAt !== null ? Math.max(end - run.startedAt, 0) : null;
  let tokensIn = 0;
  let tokensOut = 0;
  let streamed = 0; // seconds the text steps streamed
  let streamedOut = 0; // and their output tokens
  let finishedStreaming = false;
  let cost = 0;
  let priced = null; // null: no step has finished yet
  let estimated = false;
  for (const step of run.steps) {
    if (step.usage) {
      tokensIn += step.usage.input_tokens;
      tokensOut += step.usage.output_tokens;
      if (step.cost === null) priced = false;
      else {
        cost += step.cost;
        if (priced === null) priced = true;
      }
    } else if (step.end === null) {
      tokensOut += step.deltas;
      estimated = estimated || step.deltas > 0;
    }
    const time = step.firstTokenAt === null ? null : streamingTime(step, end);
    if (time !== null) {
      streamed += time;
      streamedOut += stepOutput(step);
      if (step.end !== null) finishedStreaming = true;
    }
  }
  if (run.totals) {
    tokensIn = run.totals.input_tokens;
    tokensOut = run.totals.output_tokens;
    estimated = false;
  }
  const rate = streamed >= MIN_STREAMING || (finishedStreaming && streamed >= MIN_MEASURED) ? streamedOut / streamed : null;
  const waiting = run.finishedAt === null && run.current !== null && run.current.end === null && run.current.firstTokenAt === null;
  let shownCost = priced === null ? undefined : priced ? cost : null;
  if (run.totals) shownCost = run.totals.cost;
  return {
    elapsed, tokensIn, tokensOut, estimated, rate, waiting,
    toolCalls: run.tools.size,
    cost: shownCost, // undefined: nothing to price yet; null: unpriced
  };
}
