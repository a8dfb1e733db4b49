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

export async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { "content-type": "application/json" },
    ...options,
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = body.detail || response.statusText;
    throw new Error(`${detail} (HTTP ${response.status})`);
  }
  return body;
}
