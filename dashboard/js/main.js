// Boot: one live connection for the page, a hash router (#/ and #/runs/ID) and the connection badge.

import { Live } from "./connection.js";
import { runView } from "./run-view.js";
import { runsView } from "./runs-view.js";

const view = document.getElementById("view");
const conn = document.getElementById("conn");
const offlineBadge = document.getElementById("offline-badge");

const LABELS = { live: "live", sse: "live (SSE)", reconnecting: "reconnecting…", connecting: "connecting…" };

const live = new Live({
  onState(state, detail) {
    conn.dataset.state = state;
    conn.querySelector(".conn-text").textContent = detail || LABELS[state] || state;
  },
  onHello(hello) {
    offlineBadge.hidden = !hello.offline;
  },
});
window.runwatch = live; // for the curious, and for tests

let teardown = () => {};

function route() {
  teardown();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const match = path.match(/^\/runs\/([\w-]+)$/);
  teardown = match ? runView(view, live, match[1]) : runsView(view, live, new URLSearchParams(query));
  document.title = match ? `run ${match[1]} · runwatch` : "runwatch";
}

window.addEventListener("hashchange", route);
fetch("/api/health").then((r) => r.json()).then((health) => { offlineBadge.hidden = !health.offline; }).catch(() => {});
route();
