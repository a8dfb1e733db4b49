// @ts-check
// The runs list's "Start a run" form. `#/?agent=demo&input=…` (the run view's "Edit and run")
// prefills it and puts the cursor in the input; Ctrl+Enter (Cmd+Enter) starts the run.

import { api, h, onSend } from "./dom.js";

export function startForm(params, showError) {
  const wanted = { agent: params.get("agent") || "", input: params.get("input") };
  const agentPick = h("select", { id: "start-agent", name: "agent", "aria-label": "Agent", required: true });
  const input = h("textarea", {
    id: "start-input", name: "input", rows: 2, "aria-label": "Input", "aria-describedby": "start-hint",
    placeholder: "What should the agent do? (e.g. what is (2+3)*4 and what time is it?)",
  });
  const button = h("button", { class: "primary", type: "submit", text: "Start run" });
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { class: "start", "aria-label": "Start a run" }, agentPick, input, button);
  const hint = h("p", { id: "start-hint", class: "hint muted" }, "Ctrl+Enter (⌘+Enter) starts the run.");
  const section = h("section", { class: "panel start-panel" }, h("h1", { text: "Start a run" }), form, hint, error);
  if (wanted.input !== null) input.value = wanted.input;

  async function submit() {
    error.textContent = "";
    if (!input.value.trim()) {
      // The server refuses it too (400 empty_input); say so before asking.
      error.textContent = "The input is empty: say what the agent should do.";
      input.focus();
      return;
    }
    if (button.disabled) return;
    button.disabled = true;
    try {
      const run = await api("/api/runs", { method: "POST", body: JSON.stringify({ agent: agentPick.value, input: input.value }) });
      location.hash = `#/runs/${run.id}`;
    } catch (failure) {
      error.textContent = `Could not start the run: ${failure.message}`;
    } finally {
      button.disabled = false;
    }
  }
  onSend(form, input, submit);

  return {
    section,
    error,
    // The agents are known: fill the picker, choose the asked one, and focus when prefilled.
    setAgents(agents) {
      agentPick.replaceChildren(...agents.map((a) => h("option", { value: a.name, title: a.description, text: a.name })));
      if (wanted.agent) {
        if (agents.some((a) => a.name === wanted.agent)) agentPick.value = wanted.agent;
        else showError(`There is no agent "${wanted.agent}" on this server: pick another.`);
      }
      if (wanted.agent || wanted.input !== null) {
        input.focus();
        input.setSelectionRange(input.value.length, input.value.length);
        section.scrollIntoView({ block: "nearest" });
      }
    },
  };
}
