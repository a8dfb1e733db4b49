// @ts-check
// What a person can do with a run from its header: run it again (same agent, same input), edit
// its input in the start form first, export it (JSON events or a Markdown transcript), cancel it.
// Viewers may export; starting and cancelling runs are for operators. An external run is run by its
// agent elsewhere: no rerun or edit here, and a cancel only if its agent takes cancels.

import { api, h } from "./dom.js";
import { exportJson, exportMarkdown } from "./export.js";

// `run()`: the run model's fields (agent, input); `connected()`: is the live connection up;
// `onCancel()`: ask to confirm a cancel; `onError(message)`: say why something failed.
export function runActions({ runId, operator, run, connected, onCancel, onError }) {
  const rerun = h("button", { id: "rerun", type: "button", text: "Rerun", hidden: !operator });
  const edit = h("a", { id: "edit-run", class: "button", href: "#/", text: "Edit and run", hidden: true });
  const json = h("button", { id: "export-json", type: "button", text: "Export JSON" });
  const md = h("button", { id: "export-md", type: "button", text: "Export Markdown" });
  const cancel = h("button", { id: "cancel-run", class: "danger", type: "button", text: "Cancel run", hidden: true });
  const element = h("div", { class: "run-actions", role: "group", "aria-label": "Run actions" }, cancel, rerun, edit, json, md);
  let starting = false;

  rerun.addEventListener("click", async () => {
    const { agent, input } = run();
    starting = true;
    rerun.disabled = true;
    onError("");
    try {
      const started = await api("/api/runs", { method: "POST", body: JSON.stringify({ agent, input }) });
      location.hash = `#/runs/${started.id}`;
    } catch (error) {
      onError(`Could not start the run again: ${error.detail ?? error.message}`);
    } finally {
      starting = false;
      rerun.disabled = !connected();
    }
  });
  cancel.addEventListener("click", () => onCancel());

  for (const [button, save, what] of [[json, exportJson, "JSON"], [md, exportMarkdown, "Markdown"]]) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      onError("");
      try {
        await save(runId);
      } catch (error) {
        onError(`Could not export the run as ${what}: ${error.detail ?? error.message}`);
      } finally {
        button.disabled = false;
      }
    });
  }

  return {
    element,
    // `active`: the run can still be cancelled; `cancelling`: someone asked it to stop;
    // `canCancel`: the run takes a cancel (an external run's agent may not); `external`: its agent
    // runs elsewhere (runwatch cannot start it again).
    update({ active, cancelling, canCancel = true, external = false }) {
      const { agent, input } = run();
      const known = Boolean(agent && input);
      const up = connected();
      cancel.hidden = !operator || !active || !canCancel;
      cancel.disabled = cancelling || !up;
      rerun.hidden = !operator || external;
      rerun.disabled = starting || !known || !up;
      edit.hidden = !operator || !known || external;
      const href = `#/?agent=${encodeURIComponent(agent)}&input=${encodeURIComponent(input)}`;
      if (known && edit.getAttribute("href") !== href) edit.setAttribute("href", href);
    },
  };
}
