// Boot: log in (auth.js), then one live connection for the page, a hash router (#/ and #/runs/ID)
// and the connection badge. Logging out, or the session ending, stops all of it.

import { startAuth } from "./auth.js";
import { Live } from "./connection.js";
import { runView } from "./run-view.js";
import { runsView } from "./runs-view.js";

const view = document.getElementById("view");
const conn = document.getElementById("conn");
const offlineBadge = document.getElementById("offline-badge");

const LABELS = { live: "live", sse: "live (SSE)", reconnecting: "reconnecting…", connecting: "connecting…" };

let live = null;
let me = null; // /api/me: who is logged in (null while unknown)
let teardown = () => {};

function route() {
  teardown();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const match = path.match(/^\/runs\/([\w-]+)$/);
  teardown = match ? runView(view, live, match[1], me) : runsView(view, live, new URLSearchParams(query), me);
  document.title = match ? `run ${match[1]} · runwatch` : "runwatch";
}

function start(who) {
  me = who;
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
            route();
          }
        });
      }
    },
    // 4401 (no, expired or revoked credential) or 4403 (forbidden): no reconnecting; log in again.
    onAuthLost: (code, reason) => auth.signedOut(`Your session has ended — log in again.${reason ? ` (${reason})` : ""}`),
    onStreamRefused: () => auth.refresh(),
  });
  window.runwatch = live; // for the curious, and for tests
  route();
}

function stop() {
  teardown();
  teardown = () => {};
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
