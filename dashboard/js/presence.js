// @ts-check
// Who is watching a run, from the server's `presence` messages: "Watching: ada (you), grace (+3)".

import { h } from "./dom.js";

const NAMED = 5; // names shown; the rest are counted

// `me`: who is logged in (/api/me), marked "(you)" in the list.
export function presenceLine(me) {
  const element = h("span", { id: "watchers", class: "watchers muted", hidden: true });
  return {
    element,
    // A `presence` message: {run, watchers: [{id, name}], count}.
    update({ watchers = [], count = 0 }) {
      const names = watchers.map((w) => (me && w.id === me.id ? `${w.name || w.id} (you)` : w.name || w.id));
      const extra = Math.max(count - Math.min(names.length, NAMED), 0);
      element.textContent = `Watching: ${names.slice(0, NAMED).join(", ")}${extra ? ` (+${extra})` : ""}`;
      element.title = names.join(", ") + (count > names.length ? ` and ${count - names.length} more` : "");
      element.dataset.count = String(count);
      element.hidden = count === 0;
    },
  };
}
