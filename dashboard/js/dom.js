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
let unauthenticated = () => {};
export function onUnauthenticated(fn) {
  unauthenticated = fn;
}

// An error answer of the API: `status` (HTTP), `code` (e.g. "forbidden") and the server's `detail`.
export class ApiError extends Error {
  constructor(status, body, statusText) {
    const detail = body?.detail || statusText || "request failed";
    super(`${detail} (HTTP ${status})`);
    Object.assign(this, { status, code: body?.code ?? null, detail });
  }
}

// JSON in, JSON out. State-changing requests always carry a JSON body ({} when there is nothing
// to send): the server refuses cookie-authenticated ones that are not JSON (CSRF). A 401 also
// calls the unauthenticated handler, unless `authRedirect: false` (the login calls themselves).
export async function api(path, { authRedirect = true, headers = {}, ...options } = {}) {
  const method = (options.method || "GET").toUpperCase();
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
