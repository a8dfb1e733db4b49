// @ts-check
// The time window the overview and the agents page show (`?window=SECONDS` in the address bar):
// its choices, the group of toggle buttons that picks one, and the figures of the window, read
// again every 10 s while the page is visible.

import { api, h, seconds, whileVisible } from "./dom.js";

export const WINDOWS = [
  { seconds: 900, label: "15 min", span: "the last 15 minutes" },
  { seconds: 3600, label: "1 h", span: "the last hour" },
  { seconds: 21600, label: "6 h", span: "the last 6 hours" },
  { seconds: 86400, label: "24 h", span: "the last 24 hours" },
  { seconds: 604800, label: "7 d", span: "the last 7 days" },
];
const DEFAULT_WINDOW = 3600;

/** The window an address asks for (the default for none, or one that is not a choice). @param {URLSearchParams} params */
export function windowOf(params) {
  const value = Number(params.get("window"));
  return WINDOWS.some((w) => w.seconds === value) ? value : DEFAULT_WINDOW;
}

/** "the last hour". @param {number} windowSeconds */
export function spanOf(windowSeconds) {
  return WINDOWS.find((w) => w.seconds === windowSeconds)?.span ?? `the last ${seconds(windowSeconds)}`;
}

/**
 * One toggle button per window (`data-window`, `aria-pressed`) in a group with `id`; `choose(seconds)`
 * is called when one is pressed, and `sync(seconds)` shows which is chosen.
 * @param {string} id
 * @param {(seconds: number) => void} choose
 */
export function windowPicker(id, choose) {
  const buttons = WINDOWS.map((w) => h("button", {
    type: "button", "data-window": String(w.seconds), text: w.label,
    onclick: () => choose(w.seconds),
  }));
  const element = h("div", { id, class: "segmented", role: "group", "aria-label": "Time window" }, buttons);
  return {
    element,
    /** @param {number} value */
    sync(value) {
      for (const b of buttons) b.setAttribute("aria-pressed", String(Number(b.dataset.window) === value));
    },
  };
}

const REFRESH_MS = 10_000;

/**
 * What the overview and the agents page share: GET `endpoint` for the window (and an admin's
 * `tenant=`) the address asks for — at once, on `refresh()`, and every 10 s while the page is
 * visible — each answer to `show(answer)`; a failure said in `error` (`name`: what the page is).
 * Pressing a window's button puts it in the address (`#PATH?window=…`).
 * @param {{path: string, endpoint: string, name: string, params: URLSearchParams, error: HTMLElement, show: (answer: any) => void}} page
 */
export function windowedFigures({ path, endpoint, name, params, error, show }) {
  let windowSeconds = windowOf(params);
  let tenant = params.get("tenant") || "";
  let generation = 0;
  let loaded = false;
  const picker = windowPicker(`${path.slice(1)}-window`, (value) => {
    if (value === windowSeconds) return;
    windowSeconds = value;
    history.pushState(null, "", `#${path}?${query()}`);
    picker.sync(windowSeconds);
    refresh();
  });

  function query() {
    const q = new URLSearchParams({ window: String(windowSeconds) });
    if (tenant) q.set("tenant", tenant);
    return q;
  }

  async function refresh() {
    const gen = ++generation;
    try {
      const answer = await api(`${endpoint}?${query()}`);
      if (gen !== generation) return;
      loaded = true;
      error.textContent = "";
      show(answer);
    } catch (failure) {
      if (gen !== generation) return;
      error.textContent = failure.status === 404
        ? `This server has no ${name} (GET ${endpoint} answered 404): it is older than this dashboard.`
        : `Could not load the ${name}: ${failure.message}`;
    }
  }

  picker.sync(windowSeconds);
  refresh();
  const stopRefreshing = whileVisible(refresh, REFRESH_MS);
  return {
    picker: picker.element,
    refresh,
    get windowSeconds() {
      return windowSeconds;
    },
    // Another address of the same page (back, forward): its window.
    /** @param {URLSearchParams} next */
    update(next) {
      const value = windowOf(next);
      tenant = next.get("tenant") || "";
      if (value === windowSeconds && loaded) return;
      windowSeconds = value;
      picker.sync(windowSeconds);
      refresh();
    },
    stop() {
      generation++;
      stopRefreshing();
    },
  };
}
