// The live connection (dashboard/js/connection.js) over a scripted WebSocket: what it does after
// each kind of close, by the terms the server's `hello` gave.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { Live } from "../../../dashboard/js/connection.js";
import { CLOSE } from "../../../dashboard/js/protocol.js";

// A WebSocket the test plays the server of.
class ScriptedSocket {
  static OPEN = 1;
  /** @type {ScriptedSocket[]} */
  static made = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.made.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close() {
    this.readyState = 3;
  }

  // -- the server's side
  open() {
    this.readyState = ScriptedSocket.OPEN;
    this.onopen();
  }

  says(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }

  closes(code, reason = "") {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}

const hello = (closeCodes) => ({
  type: "hello", connection: "c1", version: "0", offline: true, heartbeat: 15, max_message_bytes: 65536,
  principal: null, expires_at: null, server_time: 0, ...(closeCodes ? { close_codes: closeCodes } : {}),
});

let live;
let authLost;

beforeEach((t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  ScriptedSocket.made = [];
  globalThis.WebSocket = ScriptedSocket;
  globalThis.location = { protocol: "http:", host: "127.0.0.1:8000" };
  authLost = [];
  live = new Live({ onAuthLost: (code, reason) => authLost.push([code, reason]) });
});

afterEach(() => {
  live.close();
  delete globalThis.WebSocket;
  delete globalThis.location;
});

const socket = () => ScriptedSocket.made.at(-1);

function connected(closeCodes) {
  socket().open();
  socket().says(hello(closeCodes));
}

test("the page connects to /ws on its own host", () => {
  assert.equal(socket().url, "ws://127.0.0.1:8000/ws");
});

test("after a close that is not final the page reconnects", (t) => {
  connected({ final: [4000], log_in_again: [] });
  socket().closes(CLOSE.GOING_AWAY, "server shutdown");
  assert.equal(live.mode, "reconnecting");
  t.mock.timers.tick(60_000);
  assert.equal(ScriptedSocket.made.length, 2);
});

test("after a close the hello calls final the page stops and says why", (t) => {
  connected({ final: [4000], log_in_again: [] });
  socket().closes(4000, "no more");
  t.mock.timers.tick(60_000);
  assert.equal(ScriptedSocket.made.length, 1);
  assert.equal(live.mode, "closed");
  assert.match(live.detail, /4000: no more/);
  assert.deepEqual(authLost, []);
});

test("after a close the hello calls log in again the page stops and asks for a login", (t) => {
  connected({ final: [4000], log_in_again: [4000] });
  socket().closes(4000, "expired");
  t.mock.timers.tick(60_000);
  assert.equal(ScriptedSocket.made.length, 1);
  assert.deepEqual(authLost, [[4000, "expired"]]);
});

test("a code the hello does not call final is reconnected after, whatever the page's constants say", (t) => {
  connected({ final: [], log_in_again: [] });
  socket().closes(CLOSE.MESSAGE_TOO_BIG);
  t.mock.timers.tick(60_000);
  assert.equal(ScriptedSocket.made.length, 2);
});

test("before any hello, the generated constants say an unauthenticated close is final", (t) => {
  socket().closes(CLOSE.UNAUTHENTICATED, "no credential");
  t.mock.timers.tick(60_000);
  assert.equal(ScriptedSocket.made.length, 1);
  assert.deepEqual(authLost, [[CLOSE.UNAUTHENTICATED, "no credential"]]);
});

test("a hello from a server without close codes leaves the generated terms", (t) => {
  connected(null);
  socket().closes(CLOSE.MESSAGE_TOO_BIG);
  t.mock.timers.tick(60_000);
  assert.equal(ScriptedSocket.made.length, 1);
  assert.equal(live.mode, "closed");
});

test("after a reconnect the page subscribes again from the last event it delivered", (t) => {
  connected();
  const seen = [];
  live.subscribe("r1", 0, (event) => seen.push(event.seq));
  for (const seq of [1, 2]) socket().says({ type: "token", run_id: "r1", seq, ts: seq, text: "x", deltas: 1 });
  socket().closes(CLOSE.GOING_AWAY);
  t.mock.timers.tick(60_000);
  socket().open();
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(socket().sent.map(({ type, run, after }) => ({ type, run, after })), [{ type: "subscribe", run: "r1", after: 2 }]);
});

test("an event delivered twice is handed on once", () => {
  connected();
  const seen = [];
  live.subscribe("r1", 0, (event) => seen.push(event.seq));
  for (const seq of [1, 1, 2]) socket().says({ type: "token", run_id: "r1", seq, ts: seq, text: "x", deltas: 1 });
  assert.deepEqual(seen, [1, 2]);
});
