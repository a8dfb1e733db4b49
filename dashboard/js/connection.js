// @ts-check
// The live connection to runwatch (docs/protocol.md): one WebSocket for the whole page.
//
// Each subscription remembers the seq of the last event it delivered; after any disconnect the
// page resubscribes from there, and events at or below it are dropped, so views never see a
// duplicate or a gap. When the WebSocket cannot connect at all, runs are followed over SSE
// (resuming the same way) and the runs list is polled, while the WebSocket keeps being retried.
// A close with a code the server's `hello` calls final stops the page for good (close-terms.js):
// one that means "log in again" (no, expired or revoked credential; forbidden) calls `onAuthLost`,
// which shows the login page; any other final one (a frame the server could not take) leaves the
// page closed, saying why. Until a hello has come, the generated constants stand in.

import { RESYNC } from "./protocol.js";
import { DEFAULT_TERMS, afterClose, termsFrom } from "./close-terms.js";

/** @typedef {import("./protocol.js").RunEvent} RunEvent */
/** @typedef {import("./protocol.js").Hello} Hello */
/** @typedef {import("./protocol.js").Ack} Ack */
/** @typedef {import("./protocol.js").Resync} Resync */
/** @typedef {import("./protocol.js").Presence} Presence */
/** @typedef {import("./protocol.js").ServerMessage} ServerMessage */
/** @typedef {import("./close-terms.js").CloseTerms} CloseTerms */

/** An event as it is delivered: a run's, or the runs feed's (which carries its feed position). @typedef {RunEvent & {feed?: number}} LiveEvent */
/** @typedef {"connecting" | "live" | "sse" | "reconnecting" | "closed"} ConnectionState */
/** A refused request: the server's `error` message on an Error. @typedef {Error & {code?: string, id?: string | number | null}} RequestError */

/**
 * One followed run (or the runs feed, "*"): where it is, and who gets what.
 * @typedef {object} Subscription
 * @property {number} last the seq (feed position for "*") of the last event delivered
 * @property {string | null} epoch the log's epoch `last` belongs to
 * @property {Set<(event: LiveEvent) => void>} handlers
 * @property {Set<(error: RequestError) => void>} errorHandlers
 * @property {Set<(resync: Resync) => void>} resetHandlers
 * @property {Set<(presence: Presence) => void>} presenceHandlers
 * @property {EventSource | null} [source] the SSE stream, while following over SSE
 */

/**
 * What the page hears from the connection.
 * @typedef {object} LiveCallbacks
 * @property {(state: ConnectionState, detail: string) => void} [onState]
 * @property {(hello: Hello) => void} [onHello]
 * @property {(code: number, reason: string) => void} [onAuthLost] the server ended the socket for good: log in again
 * @property {() => void} [onStreamRefused] an SSE stream was refused (maybe 401): check the session
 */

const BASE_DELAY = 500;
const MAX_DELAY = 15000;
const SSE_AFTER_FAILURES = 3;

export class Live {
  /** @param {LiveCallbacks} [callbacks] */
  constructor({ onState = () => {}, onHello = () => {}, onAuthLost = () => {}, onStreamRefused = () => {} } = {}) {
    this.onState = onState;
    this.onHello = onHello;
    this.onAuthLost = onAuthLost;
    this.onStreamRefused = onStreamRefused;
    this.closed = false;
    /** @type {Map<string, Subscription>} run id or "*" -> its subscription */
    this.subs = new Map();
    /** @type {Map<number, {resolve: (reply: Ack | Resync) => void, reject: (error: RequestError) => void}>} message id -> its waiter */
    this.pending = new Map();
    this.nextId = 1;
    this.failures = 0;
    this.everOpened = false;
    /** @type {ConnectionState} */
    this.mode = "connecting";
    this.detail = "";
    /** @type {Set<(state: ConnectionState, detail: string) => void>} */
    this.stateWatchers = new Set();
    this.heartbeat = 15;
    /** The server's clock minus this machine's (s), from the last `hello`; undefined before one. @type {number | undefined} */
    this.clockOffset = undefined;
    /** Which close codes end reconnecting: the last `hello`'s terms. @type {CloseTerms} */
    this.closeTerms = DEFAULT_TERMS;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.watchdogTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pollTimer = undefined;
    /** @type {Set<() => void>} */
    this.pollers = new Set();
    this.connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  /** @param {ConnectionState} state @param {string} [detail] */
  setState(state, detail = "") {
    this.mode = state;
    this.detail = detail;
    this.onState(state, detail);
    for (const watcher of this.stateWatchers) watcher(state, detail);
  }

  // Call `fn(state, detail)` now and on every change of the connection's state (connecting, live,
  // sse, reconnecting, closed). Returns a function that stops it.
  /** @param {(state: ConnectionState, detail: string) => void} fn */
  watchState(fn) {
    this.stateWatchers.add(fn);
    fn(this.mode, this.detail);
    return () => this.stateWatchers.delete(fn);
  }

  // Is the page following runs now (over the WebSocket, or SSE as a fallback)?
  get connected() {
    return this.mode === "live" || this.mode === "sse";
  }

  // Reconnect now instead of at the end of the back-off ("Retry now"); nothing if already open.
  retryNow() {
    if (this.closed || this.ws?.readyState === WebSocket.OPEN) return;
    const pending = this.ws;
    this.ws = null; // its close, if it comes, is no longer ours to handle
    if (pending) pending.close();
    this.failures = 0;
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.closed) return;
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.everOpened = true;
      this.failures = 0;
      this.leaveSse();
      this.setState("live");
      for (const [run, sub] of this.subs) this.sendSubscribe(run, sub);
      this.watchdog();
    };
    ws.onmessage = (message) => {
      this.watchdog();
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      for (const item of Array.isArray(data) ? data : [data]) this.dispatch(item);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.watchdogTimer);
      for (const { reject } of this.pending.values()) reject(new Error("connection lost"));
      this.pending.clear();
      const after = afterClose(event?.code, this.closeTerms);
      if (after === "log_in_again") {
        this.close();
        this.onAuthLost(event.code, event.reason || "");
        return;
      }
      if (after === "final") {
        const why = event.reason ? `${event.code}: ${event.reason}` : String(event.code);
        this.close(`closed by the server (${why}); reload the page to connect again`);
        return;
      }
      if (!opened) this.failures++;
      if (!this.everOpened && this.failures >= SSE_AFTER_FAILURES) this.enterSse();
      this.scheduleReconnect();
    };
  }

  // Stop for good: no reconnecting, no SSE, no polling (logged out, the session ended, or the server
  // closed the socket with a final code). `detail` says why.
  close(detail = "signed out") {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdogTimer);
    this.leaveSse();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "logged out");
    for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
    this.pending.clear();
    this.subs.clear();
    this.pollers.clear();
    this.setState("closed", detail);
  }

  // Exponential backoff with full jitter, so a restarted server is not hit by every page at once.
  scheduleReconnect() {
    const attempt = Math.max(this.failures, 1);
    const delay = Math.random() * Math.min(MAX_DELAY, BASE_DELAY * 2 ** attempt) + 100;
    if (this.mode !== "sse") this.setState("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // No frame for 2.5 heartbeats: the server or the path to it is gone.
  watchdog() {
    clearTimeout(this.watchdogTimer);
    this.watchdogTimer = setTimeout(() => this.ws && this.ws.close(), this.heartbeat * 2500);
  }

  /** @param {ServerMessage | LiveEvent} msg */
  dispatch(msg) {
    switch (msg.type) {
      case "hello":
        this.heartbeat = msg.heartbeat;
        this.closeTerms = termsFrom(msg, this.closeTerms);
        // Events' times are the server's: "how long ago" is measured on its clock (one network
        // delay off at most), not on this machine's, nor from the last event seen.
        if (msg.server_time) this.clockOffset = msg.server_time - Date.now() / 1000;
        this.onHello(msg);
        return;
      case "ack":
      case "error": {
        const waiter = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
        if (waiter) {
          this.pending.delete(/** @type {number} */ (msg.id));
          msg.type === "ack" ? waiter.resolve(msg) : waiter.reject(Object.assign(new Error(msg.message), msg));
        }
        return;
      }
      case "resync": {
        const waiter = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
        if (waiter) {
          this.pending.delete(/** @type {number} */ (msg.id));
          waiter.resolve(msg);
        }
        const sub = this.subs.get(msg.run);
        if (!sub) return;
        if (msg.reason === RESYNC.SLOW_CONSUMER) {
          this.sendSubscribe(msg.run, sub); // from our own last seq: nothing lost, nothing twice
        } else {
          // epoch_changed / feed_trimmed: what we hold no longer lines up with the log; start over.
          sub.last = msg.after;
          sub.epoch = msg.epoch;
          if (sub.resetHandlers.size) for (const reset of sub.resetHandlers) reset(msg);
          else this.sendSubscribe(msg.run, sub);
        }
        return;
      }
      case "presence": {
        // Who watches a run (not an event: no seq, nothing to resume).
        const sub = this.subs.get(msg.run);
        if (sub) for (const handler of sub.presenceHandlers) handler(msg);
        return;
      }
      case "heartbeat":
      case "pong":
        return;
      default:
        if (msg.run_id !== undefined && msg.seq !== undefined) this.deliver(msg);
    }
  }

  /** @param {LiveEvent} event */
  deliver(event) {
    const feed = this.subs.get("*");
    if (event.feed !== undefined) {
      // From the runs feed: its own positions, kept to resume the feed after a disconnect.
      if (!feed || event.feed <= feed.last) return;
      feed.last = event.feed;
      for (const handler of feed.handlers) handler(event);
      return;
    }
    const sub = this.subs.get(event.run_id);
    if (sub) {
      if (event.seq === sub.last + 1) {
        sub.last = event.seq;
        for (const handler of sub.handlers) handler(event);
      } else if (event.seq > sub.last + 1) {
        this.sendSubscribe(event.run_id, sub); // a gap: ask again from what we have
      }
    }
  }

  /**
   * Send `message` with a fresh id; the answer is its `ack` (or `resync`), a refusal its `error`.
   * @param {{type: string} & Record<string, unknown>} message
   * @returns {Promise<Ack | Resync>}
   */
  request(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = this.nextId++;
    const ws = this.ws;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ ...message, id }));
    });
  }

  /** @param {string} run @param {Subscription} sub */
  sendSubscribe(run, sub) {
    if (this.mode === "sse") return this.followOverSse(run, sub);
    /** @type {{type: "subscribe", run: string, after: number, epoch?: string}} */
    const message = { type: "subscribe", run, after: sub.last };
    if (sub.epoch) message.epoch = sub.epoch;
    this.request(message).then((reply) => {
      if (reply.type === "ack" && reply.epoch) sub.epoch = reply.epoch;
    }).catch((error) => {
      for (const handler of sub.errorHandlers) handler(error);
    });
  }

  // Follow `run` (a run id, or "*" for the runs feed) from position `after` in `epoch` (optional);
  // `handler` gets each event once, in order. `onReset(resync)` is called when the log's epoch
  // changed or the feed no longer holds our position: reload, then `resume(after, epoch)`.
  // `onPresence(message)` gets the run's `presence` messages (who watches it). Returns an
  // unsubscribe function.
  /**
   * @param {string} run
   * @param {number} after
   * @param {(event: LiveEvent) => void} handler
   * @param {(error: RequestError) => void} [onError]
   * @param {{epoch?: string | null, onReset?: ((resync: Resync) => void) | null, onPresence?: ((presence: Presence) => void) | null}} [options]
   * @returns {() => void}
   */
  subscribe(run, after, handler, onError = () => {}, { epoch = null, onReset = null, onPresence = null } = {}) {
    const known = this.subs.get(run);
    const fresh = !known;
    /** @type {Subscription} */
    const sub = known ?? { last: after, epoch, handlers: new Set(), errorHandlers: new Set(), resetHandlers: new Set(), presenceHandlers: new Set() };
    if (fresh) this.subs.set(run, sub);
    sub.handlers.add(handler);
    sub.errorHandlers.add(onError);
    if (onReset) sub.resetHandlers.add(onReset);
    if (onPresence) sub.presenceHandlers.add(onPresence);
    if (fresh && (this.mode === "live" || this.mode === "sse")) this.sendSubscribe(run, sub);
    return () => {
      sub.handlers.delete(handler);
      sub.errorHandlers.delete(onError);
      if (onReset) sub.resetHandlers.delete(onReset);
      if (onPresence) sub.presenceHandlers.delete(onPresence);
      if (sub.handlers.size) return;
      this.subs.delete(run);
      if (sub.source) sub.source.close();
      if (this.mode === "live") this.request({ type: "unsubscribe", run }).catch(() => {});
    };
  }

  // Start following `run` again from `after` in `epoch` (after an onReset).
  /** @param {string} run @param {number} after @param {string | null} epoch */
  resume(run, after, epoch) {
    const sub = this.subs.get(run);
    if (!sub) return;
    sub.last = after;
    sub.epoch = epoch;
    if (this.mode === "live" || this.mode === "sse") this.sendSubscribe(run, sub);
  }

  // Called every few seconds while the runs feed cannot be followed live (SSE mode).
  /** @param {() => void} fn */
  onPoll(fn) {
    this.pollers.add(fn);
    return () => this.pollers.delete(fn);
  }

  enterSse() {
    if (this.mode === "sse" || this.closed) return;
    this.setState("sse", "live over SSE (WebSocket unavailable)");
    for (const [run, sub] of this.subs) this.followOverSse(run, sub);
    this.pollTimer = setInterval(() => this.pollers.forEach((fn) => fn()), 3000);
  }

  leaveSse() {
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    for (const sub of this.subs.values()) {
      if (sub.source) sub.source.close();
      sub.source = null;
    }
  }

  /** @param {string} run @param {Subscription} sub */
  followOverSse(run, sub) {
    if (run === "*") return; // the runs list is polled instead
    if (sub.source) sub.source.close();
    const source = new EventSource(`/api/runs/${encodeURIComponent(run)}/stream?after=${sub.last}`);
    sub.source = source;
    source.onmessage = (message) => {
      // Only events carry data; anything else (an empty message, say) is not ours to deliver.
      if (!message.data) return;
      /** @type {LiveEvent} */
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.deliver(event);
      if (event.type === "run.finished") source.close();
    };
    source.onerror = () => {
      // Closed (not reconnecting): the server refused the stream, e.g. 401 after the session ended.
      if (source.readyState === EventSource.CLOSED && sub.source === source) this.onStreamRefused();
    };
  }
}
