// What a WebSocket close means for the page (dashboard/js/close-terms.js): the server's `hello`
// says which codes end reconnecting; before one, the generated constants do.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_TERMS, afterClose, termsFrom } from "../../../dashboard/js/close-terms.js";
import { CLOSE } from "../../../dashboard/js/protocol.js";

test("before any hello, an unauthenticated close means log in again", () => {
  assert.equal(afterClose(CLOSE.UNAUTHENTICATED), "log_in_again");
  assert.equal(afterClose(CLOSE.FORBIDDEN), "log_in_again");
});

test("before any hello, a frame the server could not take is final", () => {
  assert.equal(afterClose(CLOSE.MESSAGE_TOO_BIG), "final");
  assert.equal(afterClose(CLOSE.INVALID_DATA), "final");
});

test("a server going away, a slow consumer or a dropped socket mean reconnect", () => {
  for (const code of [CLOSE.GOING_AWAY, CLOSE.SERVICE_RESTART, CLOSE.TRY_AGAIN_LATER, CLOSE.INTERNAL_ERROR, 1006, undefined]) {
    assert.equal(afterClose(code), "reconnect", String(code));
  }
});

test("the hello's terms replace the generated ones", () => {
  const terms = termsFrom({ close_codes: { final: [4000, 4001], log_in_again: [4001] } });
  assert.equal(afterClose(4000, terms), "final");
  assert.equal(afterClose(4001, terms), "log_in_again");
  assert.equal(afterClose(CLOSE.MESSAGE_TOO_BIG, terms), "reconnect");
});

test("a code that means log in again is final even if the hello's final list leaves it out", () => {
  const terms = termsFrom({ close_codes: { final: [], log_in_again: [4001] } });
  assert.equal(terms.final.has(4001), true);
});

test("a hello without close codes keeps the terms the page had", () => {
  const before = termsFrom({ close_codes: { final: [4000], log_in_again: [] } });
  assert.equal(termsFrom({}, before), before);
  assert.equal(termsFrom({ close_codes: null }), DEFAULT_TERMS);
});
