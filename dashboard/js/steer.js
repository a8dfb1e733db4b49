// @ts-check
// The message box of a running run: tell the agent something now (interrupt its answer) or after
// its current step (POST /api/runs/{id}/messages). The message shows in the answer once the model
// gets it (`message.received`), for everyone watching.

import { api, h, onSend } from "./dom.js";

export function messageBox({ runId }) {
  const text = h("textarea", { id: "message-text", rows: 2, placeholder: "Tell the agent something… (Ctrl+Enter sends)" });
  const mode = h("select", { id: "message-mode", "aria-label": "When the agent gets it" },
    h("option", { value: "queue", text: "After this step" }),
    h("option", { value: "interrupt", text: "Interrupt now" }));
  const send = h("button", { id: "message-send", class: "primary", type: "submit", text: "Send" });
  const note = h("p", { id: "message-status", class: "muted", role: "status", "aria-live": "polite" });
  const form = h("form", { class: "message-box", "aria-label": "Message the agent" },
    h("label", { for: "message-text", class: "sr-only", text: "Message to the agent" }), text, mode, send);
  const section = h("section", { id: "steer", class: "panel", "aria-label": "Message the agent", hidden: true },
    h("h2", { text: "Message the agent" }), form, note);

  let enabled = true;
  let sending = false;
  const sync = () => {
    send.disabled = sending || !enabled;
  };

  async function submit() {
    if (!enabled || sending) return;
    const said = text.value.trim();
    note.className = "muted";
    if (!said) {
      note.textContent = "Type a message first.";
      text.focus();
      return;
    }
    sending = true;
    sync();
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/messages`, { method: "POST", body: JSON.stringify({ text: said, mode: mode.value }) });
      text.value = "";
      note.textContent = mode.value === "interrupt" ? "Sent: the agent stops its answer to read it." : "Sent: the agent reads it after this step.";
    } catch (error) {
      note.className = "error-text";
      note.textContent = `Could not send: ${error.detail ?? error.message}`;
    } finally {
      sending = false;
      sync();
    }
  }

  onSend(form, text, submit);

  return {
    section,
    // Shown while the run can take messages (running or waiting) and the person may send them.
    show(visible) {
      section.hidden = !visible;
    },
    // Off while the live connection is down: what is sent could not be seen arriving.
    setEnabled(value) {
      enabled = value;
      sync();
    },
  };
}
