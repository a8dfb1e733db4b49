// @ts-check
// Keyboard shortcuts, for the whole page: "?" shows them; the view on screen says what the others do
// (the runs list: "/" search, j/k move the selection, Enter opens it). None fires while typing.

import { h } from "./dom.js";

export const SHORTCUTS = [
  ["/", "Search the runs"],
  ["j", "Select the next run"],
  ["k", "Select the previous run"],
  ["Enter", "Open the selected run"],
  ["Ctrl+Enter", "Start the run (in the start form; ⌘+Enter on a Mac)"],
  ["?", "Show or hide these shortcuts"],
  ["Esc", "Close this help"],
];

let handlers = {};
let dialog = null;
let opener = null; // what had focus when the help opened

// The view on screen registers its handlers ({"/": fn, j: fn, k: fn, Enter: fn}); returns an unregister.
export function setShortcuts(next) {
  handlers = next;
  return () => {
    if (handlers === next) handlers = {};
  };
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  return /** @type {HTMLElement} */ (target).isContentEditable || Boolean(target.closest("input, textarea, select, [contenteditable]"));
}

// An element that does something with Enter itself (a link, a button, a summary).
// (Focus left inside a dialog that has closed counts as none: its "close" event, which gives focus
// back, may come after the next key.)
function interactive(target) {
  if (!(target instanceof Element)) return false;
  const inDialog = target.closest("dialog");
  if (inDialog && !inDialog.open) return false;
  return Boolean(target.closest("a[href], button, summary, details, dialog, [tabindex]:not(main)"));
}

function helpDialog() {
  if (dialog) return dialog;
  dialog = h("dialog", { id: "shortcuts", "aria-labelledby": "shortcuts-title" },
    h("h2", { id: "shortcuts-title", text: "Keyboard shortcuts" }),
    h("dl", { class: "shortcut-list" }, SHORTCUTS.flatMap(([key, what]) => [h("dt", {}, h("kbd", { text: key })), h("dd", { text: what })])),
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", text: "Close", onclick: () => dialog.close() })));
  dialog.addEventListener("click", (e) => {
    if (e.target === dialog) dialog.close(); // a click on the backdrop
  });
  // Chromium may leave focus on the closed dialog's button: give it back to where it was, so the
  // next Enter opens the selected run instead of pressing a button nobody sees.
  dialog.addEventListener("close", () => {
    if (dialog.contains(document.activeElement)) {
      if (opener instanceof HTMLElement && opener.isConnected && opener !== document.body) opener.focus();
      else /** @type {HTMLElement} */ (document.activeElement).blur();
    }
  });
  document.body.append(dialog);
  return dialog;
}

export function toggleHelp() {
  const d = helpDialog();
  if (d.open) d.close();
  else {
    opener = document.activeElement;
    d.showModal();
  }
}

document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  if (typing(e.target)) return;
  if (e.key === "?") {
    e.preventDefault();
    toggleHelp();
    return;
  }
  if (dialog?.open) return;
  const handler = handlers[e.key];
  if (!handler) return;
  if (e.key === "Enter" && interactive(e.target)) return;
  if (handler(e) !== false) e.preventDefault();
});
