// The Markdown transcript of a run (dashboard/js/export.js): what its header says of the agent.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { transcript } from "../../../dashboard/js/export.js";
import { finished, queued, resetSeq } from "./events.mjs";

beforeEach(resetSeq);

test("a run of runwatch's own agent names its agent", () => {
  const text = transcript("r1", [queued(), finished("succeeded", 1002)]);
  assert.match(text, /^- agent: demo$/m);
});

test("an external run's transcript says its agent runs elsewhere", () => {
  const text = transcript("r1", [queued({ agent: "billing-bot", external: true }), finished("succeeded", 1002)]);
  assert.match(text, /^- agent: billing-bot \(external: it runs elsewhere and reports this run\)$/m);
});
