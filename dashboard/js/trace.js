// @ts-check
// The trace: the run's steps, and under each the approvals and tool calls it led to, as a tree
// with a waterfall bar per item on one time axis. Each row says its state and duration (and a
// step its time to first token) in words; the bar shows where it sits in the run.
//
// Rows are built once per item and updated in place, so live updates never move the focus, the
// selection or the scroll. The tree is an ARIA tree (flat, with aria-level): ↑/↓ move the
// selection, Home/End go to the ends, ←/→ collapse, expand, or go to the parent or first child,
// Enter/Space select the focused row. Until someone picks an item, the trace follows the latest.

import { h, seconds } from "./dom.js";
import { stepTtft } from "./run-figures.js";
import { flatten, isOpen, itemState } from "./run-model.js";

const STATE_TEXT = {
  step: { waiting: "waiting for the model", running: "streaming", done: "", interrupted: "interrupted", cancelled: "cancelled", failed: "failed" },
  tool: { running: "running", done: "", denied: "denied", cancelled: "cancelled", failed: "error", interrupted: "interrupted" },
  approval: { waiting: "waiting for a decision", approved: "approved", denied: "denied", expired: "expired", closed: "closed" },
};

const pct = (x) => `${Math.min(Math.max(x, 0), 100).toFixed(3)}%`;

// The words a row shows for an item's timing: "1.2 s · ttft 340 ms", "0.5 s…" while it runs.
function timing(item, state, now) {
  if (item.kind === "message" || item.kind === "note") return "";
  const end = item.end ?? now;
  const span = item.kind === "tool" && item.duration !== null ? item.duration
    : item.kind === "step" && item.duration !== null ? item.duration : end - item.start;
  const parts = [`${seconds(span)}${isOpen(state) ? "…" : ""}`];
  if (item.kind === "step") {
    const ttft = stepTtft(item);
    if (ttft !== null) parts.push(`ttft ${seconds(ttft)}`);
  }
  return parts.join(" · ");
}

function labelOf(item) {
  if (item.kind === "step") return `${item.label} · LLM`;
  if (item.kind === "message") return `${item.label}: ${item.text}`;
  return item.label;
}

// `onSelect(item, following)`: the selected item changed (by a person, or by following the
// latest); `onLayout()`: an item was collapsed or expanded (update again).
export function traceView({ onSelect, onLayout }) {
  const rows = new Map(); // item id -> {li, label, state, time, bar, wait, twisty}
  const collapsed = new Set();
  let order = []; // flat entries as last rendered
  let selected = null; // item id
  let following = true;
  const tree = h("ul", { class: "trace-tree", role: "tree", "aria-label": "Steps and tool calls", id: "trace-tree" });
  const empty = h("p", { class: "muted trace-empty", text: "Nothing has happened yet." });
  const axisEnd = h("span", { class: "trace-axis-end" });
  const axis = h("div", { class: "trace-axis", "aria-hidden": "true" },
    h("span", { class: "trace-axis-note", text: "time since the run started" }),
    h("span", { class: "trace-axis-scale" }, h("span", { text: "0 s" }), axisEnd));
  const element = h("div", { class: "trace" }, empty, tree, axis);

  function build(item) {
    const row = {
      twisty: h("span", { class: "twisty", "aria-hidden": "true" }),
      label: h("span", { class: "trace-label" }),
      state: h("span", { class: "trace-state" }),
      time: h("span", { class: "trace-time" }),
      wait: h("span", { class: "bar-wait" }),
    };
    row.bar = h("span", { class: `bar ${item.kind}` }, row.wait);
    row.li = h("li", { role: "treeitem", class: `trace-row kind-${item.kind}`, "data-id": item.id, "data-kind": item.kind, tabindex: "-1", "aria-selected": "false" },
      h("span", { class: "trace-name" }, row.twisty, row.label, row.state, row.time),
      h("span", { class: "trace-track", "aria-hidden": "true" }, row.bar));
    row.li.addEventListener("click", () => choose(item.id, true));
    row.twisty.addEventListener("click", (e) => {
      e.stopPropagation();
      toggle(item.id);
    });
    rows.set(item.id, row);
    return row;
  }

  function set(el, prop, value) {
    if (el[prop] !== value) el[prop] = value;
  }

  function attr(el, name, value) {
    if (value === null) el.removeAttribute(name);
    else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
  }

  // Place every row, hide those under collapsed items, and bring texts and bars up to date.
  function update(run, clockNow) {
    const now = run.finishedAt ?? clockNow; // what never ended stops where the run did
    order = flatten(run.roots);
    empty.hidden = order.length > 0;
    axis.hidden = order.length === 0;
    const t0 = run.startedAt ?? run.queuedAt ?? now;
    const t1 = Math.max(run.finishedAt ?? now, ...order.map(({ item }) => item.end ?? now), t0 + 0.001);
    const total = t1 - t0;
    let previous = null;
    const hiddenUnder = [];
    for (const { item, level, posinset, setsize } of order) {
      const row = rows.get(item.id) ?? build(item);
      const expected = previous ? previous.nextSibling : tree.firstChild;
      if (expected !== row.li) tree.insertBefore(row.li, expected);
      previous = row.li;
      while (hiddenUnder.length && hiddenUnder.at(-1) >= level) hiddenUnder.pop();
      set(row.li, "hidden", hiddenUnder.length > 0);
      if (item.children.length && collapsed.has(item.id)) hiddenUnder.push(level);
      const state = itemState(item, run);
      attr(row.li, "aria-level", level);
      attr(row.li, "aria-posinset", posinset);
      attr(row.li, "aria-setsize", setsize);
      attr(row.li, "aria-expanded", item.children.length ? String(!collapsed.has(item.id)) : null);
      attr(row.li, "data-state", state);
      set(row.twisty, "textContent", item.children.length ? (collapsed.has(item.id) ? "▸" : "▾") : "");
      set(row.label, "textContent", labelOf(item));
      set(row.state, "textContent", STATE_TEXT[item.kind]?.[state] ?? "");
      set(row.time, "textContent", timing(item, state, now));
      const end = item.end ?? now;
      const left = ((item.start - t0) / total) * 100;
      const width = ((end - item.start) / total) * 100;
      set(row.bar.style, "left", pct(left));
      set(row.bar.style, "width", pct(Math.min(width, 100 - left)));
      set(row.bar, "className", `bar ${item.kind} ${state}${isOpen(state) ? " open" : ""}`);
      const ttft = item.kind !== "step" ? null
        : stepTtft(item) ?? (item.end === null ? end - item.start : null);
      set(row.wait.style, "width", ttft === null || end <= item.start ? "0%" : pct((ttft / (end - item.start)) * 100));
    }
    set(axisEnd, "textContent", seconds(total));
    if (following) {
      const latest = order.findLast(({ item }) => item.kind !== "note" && item.kind !== "message");
      if (latest && latest.item.id !== selected) choose(latest.item.id, false);
    }
    roving();
  }

  function visible() {
    return order.filter(({ item }) => !rows.get(item.id)?.li.hidden).map(({ item }) => item);
  }

  // One row is in the tab order: the selected one, else the first.
  function roving() {
    const items = visible();
    const target = items.find((item) => item.id === selected) ?? items[0];
    for (const [id, row] of rows) {
      attr(row.li, "tabindex", target && id === target.id ? "0" : "-1");
      attr(row.li, "aria-selected", String(id === selected));
    }
  }

  function choose(id, byPerson, focus = false) {
    if (byPerson) following = false;
    const changed = id !== selected;
    selected = id;
    roving();
    const row = rows.get(id);
    if (focus && row) row.li.focus();
    if (changed || byPerson) onSelect(order.find(({ item }) => item.id === id)?.item ?? null, following);
  }

  function toggle(id) {
    if (collapsed.has(id)) collapsed.delete(id);
    else collapsed.add(id);
    onLayout();
  }

  tree.addEventListener("keydown", (e) => {
    const items = visible();
    const row = /** @type {HTMLElement | null | undefined} */ (document.activeElement?.closest?.(".trace-row"));
    const focusedId = row?.dataset.id ?? selected;
    const at = items.findIndex((item) => item.id === focusedId);
    const item = items[at];
    const go = (next) => next && choose(next.id, true, true);
    switch (e.key) {
      case "ArrowDown": go(items[Math.min(at + 1, items.length - 1)]); break;
      case "ArrowUp": go(items[Math.max(at - 1, 0)]); break;
      case "Home": go(items[0]); break;
      case "End": go(items.at(-1)); break;
      case "Enter":
      case " ":
        if (item) choose(item.id, true, true);
        break;
      case "ArrowRight":
        if (!item?.children.length) return;
        if (collapsed.has(item.id)) toggle(item.id);
        else go(item.children[0]);
        break;
      case "ArrowLeft":
        if (item?.children.length && !collapsed.has(item.id)) toggle(item.id);
        else if (item?.parent) go(item.parent);
        break;
      default:
        return;
    }
    e.preventDefault();
  });

  return {
    element,
    update,
    get selected() {
      return selected;
    },
    get following() {
      return following;
    },
    // Go back to following the latest item.
    follow() {
      following = true;
    },
  };
}
