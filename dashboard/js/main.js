// @ts-check
// Boot: log in (auth.js), then one live connection for the page, a hash router (#/ the runs list,
// #/runs/ID a run, #/overview the overview, #/agents the agents; each may carry a ?query) and the
// connection badge. Logging out, or the session ending, stops all of it.

import { agentsView } from "./agents.js";
import { startAuth } from "./auth.js";
import { Live } from "./connection.js";
import { runView } from "./run-view.js";
import { overviewView } from "./overview.js";
import { runsView } from "./runs-view.js";

const view = document.getElementById("view");
const conn = document.getElementById("conn");
const offlineBadge = document.getElementById("offline-badge");

const LABELS = { live: "live", sse: "live (SSE)", reconnecting: "reconnecting…", connecting: "connecting…" };

let live = null;
let me = null; // /api/me: who is logged in (null while unknown)
const nav = document.getElementById("nav");
/** The view on screen's teardown; `update(params)`, when it has one, shows another state of it. @type {(() => void) & {update?: (params: URLSearchParams) => void}} */
let teardown = () => {};
let shown = null; // which view is on screen: "runs", "overview", "agents" or "run:ID"
// The views besides the runs list and a run: path -> [key, title].
const PAGES = { "/overview": ["overview", "overview · runwatch"], "/agents": ["agents", "agents · runwatch"] };

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const cut = hash.indexOf("?");
  const path = cut < 0 ? hash : hash.slice(0, cut);
  const params = new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1));
  const match = path.match(/^\/runs\/([\w-]+)$/);
  const key = match ? `run:${match[1]}` : PAGES[path]?.[0] ?? "runs";
  for (const link of /** @type {NodeListOf<HTMLElement>} */ (nav.querySelectorAll("a[data-view]"))) {
    if (link.dataset.view === key) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // Another state of the same view (its filters, its window): the view updates itself.
  if (key === shown && typeof teardown.update === "function") return teardown.update(params);
  teardown();
  shown = key;
  if (match) teardown = runView(view, live, match[1], me);
  else if (key === "overview") teardown = overviewView(view, live, params, me);
  else if (key === "agents") teardown = agentsView(view, live, params);
  else teardown = runsView(view, live, params, me);
  document.title = match ? `run ${match[1]} · runwatch` : PAGES[path]?.[1] ?? "runwatch";
}

function start(who) {
  me = who;
  nav.hidden = false;
  live = new Live({
    onState(state, detail) {
      conn.dataset.state = state;
      conn.querySelector(".conn-text").textContent = detail || LABELS[state] || state;
    },
    onHello(hello) {
      offlineBadge.hidden = !hello.offline;
      // Who the server says we are: if that is news (the role changed, or /api/me could not be
      // asked at load), show the views again with the right controls.
      if (!me || (hello.principal && hello.principal.role !== me.role)) {
        auth.refresh().then((changed) => {
          if (changed) {
            me = changed;
            shown = null; // show the views again, with this identity's controls
            route();
          }
        });
      }
    },
    // 4401 (no, expired or revoked credential) or 4403 (forbidden): no reconnecting; log in again.
    onAuthLost: (code, reason) => auth.signedOut(`Your session has ended — log in again.${reason ? ` (${reason})` : ""}`),
    onStreamRefused: () => auth.refresh(),
  });
  /** @type {any} */ (window).runwatch = live; // for the curious, and for tests
  route();
}

function stop() {
  teardown();
  teardown = () => {};
  shown = null;
  nav.hidden = true;
  live?.close();
  live = null;
  me = null;
  view.replaceChildren();
  document.title = "runwatch · log in";
}

const auth = startAuth({ start, stop });

window.addEventListener("hashchange", () => {
  if (live) route();
});
fetch("/api/health").then((r) => r.json()).then((health) => { offlineBadge.hidden = !health.offline; }).catch(() => {});
