// @ts-check
// Small DOM and formatting helpers. Text always goes in through textContent, never innerHTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function seconds(value) {
  if (value === null || value === undefined || !isFinite(value)) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(1)} s`;
  const m = Math.floor(value / 60);
  return m < 60 ? `${m} m ${Math.floor(value % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} m`;
}

export function clock(ts) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export function number(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString();
}

export function pretty(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// A <pre> that shows at most `limit` characters until "show more" is pressed.
export function truncatedPre(text, limit = 1500) {
  const pre = h("pre", {});
  const full = String(text);
  if (full.length <= limit) {
    pre.textContent = full;
    return pre;
  }
  pre.textContent = full.slice(0, limit) + "…";
  const button = h("button", {
    class: "show-more", type: "button", "aria-expanded": "false",
    text: `show more (${number(full.length)} characters)`,
  });
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") === "true";
    pre.textContent = open ? full.slice(0, limit) + "…" : full;
    button.setAttribute("aria-expanded", String(!open));
    button.textContent = open ? `show more (${number(full.length)} characters)` : "show less";
  });
  return h("div", {}, pre, button);
}

// What to do when the server says "unauthenticated" (401): auth.js shows the login page.
/** @type {(error: ApiError) => void} */
let unauthenticated = () => {};
/** @param {(error: ApiError) => void} fn */
export function onUnauthenticated(fn) {
  unauthenticated = fn;
}

// An error answer of the API: `status` (HTTP), `code` (e.g. "forbidden") and the server's `detail`.
export class ApiError extends Error {
  /** @param {number} status @param {{detail?: string, code?: string} | null} body @param {string} [statusText] */
  constructor(status, body, statusText) {
    const detail = body?.detail || statusText || "request failed";
    super(`${detail} (HTTP ${status})`);
    Object.assign(this, { status, code: body?.code ?? null, detail });
  }
}

// JSON in, JSON out. State-changing requests always carry a JSON body ({} when there is nothing
// to send): the server refuses cookie-authenticated ones that are not JSON (CSRF). A 401 also
// calls the unauthenticated handler, unless `authRedirect: false` (the login calls themselves).
/**
 * @param {string} path
 * @param {Omit<RequestInit, "headers"> & {authRedirect?: boolean, headers?: Record<string, string>}} [options]
 * @returns {Promise<any>} the answer's JSON
 */
export async function api(path, { authRedirect = true, headers = {}, ...options } = {}) {
  const method = (options.method || "GET").toUpperCase();
  /** @type {RequestInit} */
  const init = { ...options, method, headers: { "content-type": "application/json", ...headers } };
  if (method !== "GET" && method !== "HEAD" && init.body === undefined) init.body = "{}";
  const response = await fetch(path, init);
  const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new ApiError(response.status, body, response.statusText);
    if (response.status === 401 && authRedirect) unauthenticated(error);
    throw error;
  }
  return body;
}

// Send a form's text with its submit button, or Ctrl/Cmd+Enter in its text area.
export function onSend(form, text, submit) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      submit();
    }
  });
}

// --- Added for the runs list and the overview (new exports only) ---

// "12 s ago", "5 min ago", "3 h ago", "2 d ago" (or "in …" for a time ahead of this clock).
export function ago(ts, now = Date.now() / 1000) {
  if (!ts) return "–";
  const diff = now - ts;
  const past = diff >= -1;
  const s = Math.abs(diff);
  let text;
  if (s < 5) return "just now";
  if (s < 60) text = `${Math.floor(s)} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h`;
  else text = `${Math.floor(s / 86400)} d`;
  return past ? `${text} ago` : `in ${text}`;
}

// The full local date and time of an epoch (for titles).
export function fullTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "–";
}

// <time datetime="ISO" title="full date">relative</time>; `refreshTimes` keeps the text current.
export function timeAgo(ts) {
  if (!ts) return h("span", { text: "–" });
  return h("time", { class: "ago", datetime: new Date(ts * 1000).toISOString(), title: fullTime(ts), "data-ts": String(ts), text: ago(ts) });
}

export function refreshTimes(root) {
  const now = Date.now() / 1000;
  for (const el of root.querySelectorAll("time.ago[data-ts]")) {
    const text = ago(Number(el.dataset.ts), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

// US dollars: "$0.0012", "$3.40"; null (an unpriced model) is "—".
export function usd(cost) {
  if (cost === null || cost === undefined || !isFinite(cost)) return "—";
  if (cost === 0) return "$0";
  if (cost >= 1) return `$${cost.toFixed(2)}`;
  if (cost >= 0.0001) return `$${cost.toFixed(4)}`;
  return "<$0.0001";
}

// The mark of a run, or an agent, that an agent running elsewhere reports (the ingest API): a word,
// not only a colour.
export const EXTERNAL = "an agent running elsewhere reports it (the ingest API)";
export function externalMark() {
  return h("span", { class: "badge external", title: `External: ${EXTERNAL}`, text: "external" });
}

// An agent's name, marked when it runs elsewhere.
export function agentName(name, external) {
  return external ? h("span", { class: "agent-name" }, name, " ", externalMark()) : h("span", { class: "agent-name", text: name });
}

export const UNPRICED = "unpriced: the price table does not know this model (set RUNWATCH_PRICES)";

// A cost for a table cell: the amount, or "—" with why (for the eye on hover, for screen readers as text).
export function costText(cost) {
  if (cost === null || cost === undefined) {
    return h("span", { class: "unpriced", title: UNPRICED }, h("span", { "aria-hidden": "true", text: "—" }), h("span", { class: "sr-only", text: UNPRICED }));
  }
  return h("span", { title: `${cost} USD`, text: usd(cost) });
}

// A rate as a whole percentage ("75%"); "–" when there is none.
export function percent(rate) {
  return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`;
}

// A table of figures (`columns`: [label, numeric?]); `emptyText` instead when there are no rows. It
// scrolls sideways only if a name is too long to fit (then its view makes it focusable, for the keyboard).
export function figuresTable(caption, columns, rows, emptyText) {
  if (!rows.length) return h("p", { class: "muted empty", text: emptyText });
  return h("div", { class: "table-scroll", role: "region", "aria-label": caption }, h("table", { class: "figures-table" },
    h("caption", { class: "sr-only", text: caption }),
    h("thead", {}, h("tr", {}, columns.map(([label, num]) => h("th", { scope: "col", class: num ? "num" : null, text: label })))),
    h("tbody", {}, rows)));
}

// Make each of `root`'s figures tables that scrolls sideways focusable (so the keyboard can scroll it).
export function focusableWhenScrolling(root) {
  for (const box of root.querySelectorAll(".table-scroll")) {
    if (box.scrollWidth > box.clientWidth) box.setAttribute("tabindex", "0");
    else box.removeAttribute("tabindex");
  }
}

// Call `fn` every `ms` while the page is visible, and at once when it becomes visible again;
// returns what stops it.
export function whileVisible(fn, ms) {
  const timer = setInterval(() => {
    if (document.visibilityState === "visible") fn();
  }, ms);
  const onVisibility = () => {
    if (document.visibilityState === "visible") fn();
  };
  document.addEventListener("visibilitychange", onVisibility);
  return () => {
    clearInterval(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}

// Call `fn` once calls have stopped for `ms`; `.cancel()` drops a pending call.
export function debounce(fn, ms) {
  let timer = 0;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

// Call `fn` at most once per `ms` (the first call at once, the last one of a burst at the end).
export function throttle(fn, ms) {
  let last = 0;
  let timer = 0;
  const wrapped = () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      clearTimeout(timer);
      timer = 0;
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = 0;
        last = Date.now();
        fn();
      }, wait);
    }
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

// Put `text` on the clipboard (the async API where allowed, else a hidden text area).
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { class: "sr-only", "aria-hidden": "true", tabindex: "-1" });
    area.value = text;
    document.body.append(area);
    area.select();
    let done = false;
    try {
      done = document.execCommand("copy");
    } catch {
      done = false;
    }
    area.remove();
    return done;
  }
}

// A "Copy" button for `text`: it says "Copied" (or "Copy failed") for a moment, and `announce`
// (optional) tells screen readers.
/** @param {string} text @param {string} label @param {(message: string) => void} [announce] */
export function copyButton(text, label, announce = () => {}) {
  const button = h("button", { type: "button", class: "copy", "aria-label": label, title: label, "data-copy": text, text: "Copy" });
  let timer = 0;
  button.addEventListener("click", async (e) => {
    e.stopPropagation();
    const ok = await copyText(text);
    button.textContent = ok ? "Copied ✓" : "Copy failed";
    button.dataset.copied = ok ? "yes" : "no";
    announce(ok ? `Copied ${text}` : "Could not copy: select the text instead");
    clearTimeout(timer);
    timer = setTimeout(() => {
      button.textContent = "Copy";
      delete button.dataset.copied;
    }, 2000);
  });
  return button;
}
