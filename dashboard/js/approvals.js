// @ts-check
// Approval cards: tool calls a run waits on until a person approves (maybe with edited arguments)
// or denies them (maybe saying why), and the banner that says the run is waiting.
//
// Cards are keyed by approval_id and built once, then updated in place, so replayed events (after
// a reconnect) never add a second card, and what someone is typing in a card survives updates.
// A decision goes to the server (POST /api/runs/{id}/approvals/{approval_id}); the card changes to
// its resolved state only from the run's `approval.resolved` event, whoever decided.

import { api, clock, h, pretty, seconds } from "./dom.js";

const actor = (by) => by?.name || by?.id || "";

// Two JSON values are the same (object keys in any order).
function same(a, b) {
  const canon = (v) => (Array.isArray(v) ? v.map(canon)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v);
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

// The arguments typed in the editor, or an error saying what is wrong with them.
export function parseArguments(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `The arguments are not valid JSON: ${error.message}` };
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return { error: 'The arguments must be a JSON object, such as {"version": "1.2.0"}.' };
  }
  return { value };
}

// What a resolved approval says: "Approved by ada", "Denied by grace: not on Fridays", "Expired".
function resolution(item) {
  const { decision, by, message, arguments: args } = item.resolved;
  const who = actor(by);
  if (decision === "approved") {
    const edited = !same(args, item.request.arguments) ? " with edited arguments" : "";
    return `Approved${who ? ` by ${who}` : ""}${edited}`;
  }
  if (decision === "denied") return `Denied${who ? ` by ${who}` : ""}${message ? `: ${message}` : ""}`;
  return "Expired: nobody decided in time";
}

// `runId`; `operator`: may this person decide (viewers see the cards without buttons); `now()`:
// the server's clock in epoch seconds. Returns the section, the banner and what the run view calls.
export function approvalsPanel({ runId, operator, now }) {
  const items = new Map(); // approval_id -> {request, resolved, busy, note, error, el}
  let finished = false;
  let enabled = true; // off while the live connection is down
  const list = h("div", { class: "approval-list" });
  const section = h("section", { id: "approvals", class: "panel", "aria-label": "Approvals", hidden: true },
    h("h2", { text: "Approvals" }), list);
  const banner = h("p", { id: "waiting-banner", class: "waiting-banner", role: "status", "aria-live": "polite" });

  const open = () => [...items.values()].filter((item) => !item.resolved);

  function build(item) {
    const id = item.request.approval_id;
    const editorId = `editor-${id}`;
    const el = {
      state: h("span", { class: "approval-state", role: "status" }),
      expires: h("span", { class: "expires muted" }),
      argsLabel: h("div", { class: "label", text: "arguments" }),
      args: h("pre", { class: "arguments" }),
      error: h("p", { class: "approval-error error-text", role: "alert" }),
    };
    const head = h("div", { class: "approval-head" },
      h("span", { class: "name", text: item.request.tool }), el.state, h("span", { class: "spacer" }), el.expires);
    const parts = [head, h("p", { class: "reason", text: item.request.reason || "" }), el.argsLabel, el.args];
    if (operator) {
      el.approve = h("button", { class: "approve primary", type: "button", text: "Approve" });
      el.edit = h("button", { class: "edit-arguments", type: "button", "aria-expanded": "false", "aria-controls": editorId, text: "Edit arguments" });
      el.reason = h("input", { class: "deny-reason", type: "text", id: `reason-${id}`, placeholder: "optional: the model reads it", autocomplete: "off" });
      el.deny = h("button", { class: "deny danger", type: "button", text: "Deny" });
      el.editorText = h("textarea", { class: "arguments-editor", id: `${editorId}-text`, rows: 5, spellcheck: "false" });
      el.editor = h("div", { class: "editor", id: editorId, hidden: true },
        h("label", { for: `${editorId}-text`, text: "Arguments (JSON) to call the tool with" }), el.editorText);
      el.actions = h("div", { class: "approval-actions" },
        el.approve, el.edit, h("span", { class: "spacer" }),
        h("label", { for: `reason-${id}`, text: "Reason to deny" }), el.reason, el.deny);
      el.approve.addEventListener("click", () => approve(item));
      el.deny.addEventListener("click", () => deny(item));
      el.reason.addEventListener("keydown", (e) => {
        if (e.key === "Enter") deny(item);
      });
      el.edit.addEventListener("click", () => {
        item.editing = !item.editing;
        if (item.editing && !el.editorText.value) el.editorText.value = pretty(item.request.arguments);
        item.error = "";
        update(item);
        if (item.editing) el.editorText.focus();
      });
      parts.push(el.editor, el.actions);
    }
    parts.push(el.error);
    item.card = h("article", { class: "approval-card", "data-approval-id": id, "aria-label": `Approval of ${item.request.tool}` }, ...parts);
    item.el = el;
    list.append(item.card);
  }

  function update(item) {
    const { el } = item;
    const state = item.resolved ? item.resolved.decision : finished ? "closed" : "open";
    item.card.dataset.state = state;
    el.state.textContent = item.resolved ? resolution(item)
      : finished ? "Closed: the run ended without a decision"
      : item.busy ? (item.busy === "approve" ? "Approving…" : "Denying…") : "Waiting for a decision";
    el.state.className = `approval-state ${state}`;
    const shown = item.resolved ? item.resolved.arguments : item.request.arguments;
    const edited = item.resolved && !same(shown, item.request.arguments);
    el.argsLabel.textContent = edited ? "arguments (edited)" : "arguments";
    const text = pretty(shown);
    if (el.args.textContent !== text) el.args.textContent = text;
    el.error.textContent = item.resolved || finished ? "" : [item.note, item.error].filter(Boolean).join(" ");
    tickItem(item);
    if (!operator) return;
    const decided = Boolean(item.resolved) || finished;
    el.actions.hidden = decided;
    el.editor.hidden = decided || !item.editing;
    el.edit.setAttribute("aria-expanded", String(item.editing && !decided));
    el.edit.textContent = item.editing ? "Use the model's arguments" : "Edit arguments";
    el.approve.textContent = item.editing ? "Approve with these arguments" : "Approve";
    for (const control of [el.approve, el.edit, el.reason, el.deny, el.editorText]) control.disabled = Boolean(item.busy) || !enabled;
  }

  function tickItem(item) {
    const left = item.request.expires_at - now();
    const text = item.resolved || finished ? "" : left > 0 ? `expires at ${clock(item.request.expires_at)} (in ${seconds(left)})` : "expiring…";
    if (item.el.expires.textContent !== text) item.el.expires.textContent = text;
  }

  // Send a decision; the card waits for `approval.resolved` (ours or someone else's) to change.
  async function decide(item, kind, body) {
    item.busy = kind;
    item.error = item.note = "";
    update(item);
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/approvals/${encodeURIComponent(item.request.approval_id)}`,
        { method: "POST", body: JSON.stringify(body) });
    } catch (error) {
      if (item.resolved) return;
      if (error.code === "already_decided") {
        item.note = "Someone decided first; their decision is on its way.";
      } else {
        item.busy = null;
        const refused = error.code === "invalid_arguments";
        if (refused) item.el.editorText?.setAttribute("aria-invalid", "true");
        item.error = refused ? `Refused: ${error.detail}` : `Could not ${kind}: ${error.detail ?? error.message}`;
      }
      update(item);
    }
  }

  function approve(item) {
    if (item.busy || item.resolved || !enabled) return;
    const body = { decision: "approve" };
    if (item.editing) {
      const parsed = parseArguments(item.el.editorText.value);
      item.el.editorText.setAttribute("aria-invalid", String(Boolean(parsed.error)));
      if (parsed.error) {
        item.error = parsed.error;
        update(item);
        item.el.editorText.focus();
        return;
      }
      body.arguments = parsed.value;
    }
    decide(item, "approve", body);
  }

  function deny(item) {
    if (item.busy || item.resolved || !enabled) return;
    const message = item.el.reason.value.trim();
    decide(item, "deny", message ? { decision: "deny", message } : { decision: "deny" });
  }

  function renderBanner() {
    const count = finished ? 0 : open().length;
    const text = count ? `Waiting for approval: ${count} open` : "";
    if (banner.textContent !== text) banner.textContent = text;
    banner.dataset.open = String(count);
    section.hidden = items.size === 0;
  }

  return {
    section,
    banner,
    get openCount() {
      return finished ? 0 : open().length;
    },
    // An `approval.requested` or `approval.resolved` event (in seq order; replays are harmless).
    apply(event) {
      let item = items.get(event.approval_id);
      if (event.type === "approval.requested") {
        if (item) return;
        item = { request: event, resolved: null, busy: null, note: "", error: "", editing: false };
        items.set(event.approval_id, item);
        build(item);
      } else if (event.type === "approval.resolved") {
        if (!item) return; // its request is always earlier in the run's log
        item.resolved = event;
        item.busy = null;
      } else {
        return;
      }
      update(item);
      renderBanner();
    },
    // The run ended: approvals still open can no longer be decided.
    finish() {
      finished = true;
      for (const item of items.values()) update(item);
      renderBanner();
    },
    setEnabled(value) {
      if (value === enabled) return;
      enabled = value;
      for (const item of items.values()) update(item);
    },
    tick() {
      for (const item of items.values()) tickItem(item);
    },
  };
}
