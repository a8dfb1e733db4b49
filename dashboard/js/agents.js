// @ts-check
// The agents (#/agents?window=3600): every agent that reported in a time window — runwatch's own
// and agents that run elsewhere (the ingest API) — with its runs now and in the window, error
// rate, median duration, last heartbeat and state (GET /api/agents/activity). Refreshed every
// 10 s while the page is visible, and (at most once a second) when one of the tenant's runs is
// queued, starts or ends: the runs feed says so.

import {
  api, clock, externalMark, figuresTable, focusableWhenScrolling, fullTime, h, number, percent, refreshTimes,
  seconds, throttle, timeAgo,
} from "./dom.js";
import { spanOf, windowedFigures } from "./time-window.js";

// Runs-feed events that change an agent's figures.
const LIFECYCLE = new Set(["run.queued", "run.started", "run.finished"]);

const STATE_TEXT = {
  active: "runs queued, running or waiting now",
  idle: "no run now",
  stale: "silent past its run's lease: runwatch ended that run (agent_lost), and the agent has not posted or polled since",
};

const COLUMNS = [["Agent"], ["State"], ["Running now", 1], ["Runs", 1], ["Error rate", 1], ["Duration p50", 1], ["Last heartbeat", 1]];

function row(agent) {
  const ended = agent.succeeded + agent.failed + agent.cancelled;
  const name = h("a", { href: `#/?agent=${encodeURIComponent(agent.name)}`, title: `${agent.name}'s runs`, text: agent.name });
  return h("tr", { "data-agent": agent.name, "data-external": String(agent.external), "data-state": agent.state },
    h("td", { class: "name", "data-col": "agent" }, name, agent.external ? " " : "", agent.external ? externalMark() : ""),
    h("td", { "data-col": "state" },
      h("span", { class: `agent-state ${agent.state}`, title: STATE_TEXT[agent.state] ?? null, text: agent.state })),
    h("td", { class: "num", "data-col": "running" }, number(agent.running),
      agent.queued ? h("span", { class: "muted", text: ` · ${number(agent.queued)} queued` }) : null),
    h("td", { class: "num", "data-col": "runs",
      title: `${agent.succeeded} succeeded · ${agent.failed} failed · ${agent.cancelled} cancelled`, text: number(agent.runs) }),
    h("td", { class: "num", "data-col": "error-rate", "data-value": agent.error_rate ?? "",
      title: ended ? `${agent.failed} of ${ended} ended runs failed` : "no run ended", text: percent(agent.error_rate) }),
    h("td", { class: "num", "data-col": "duration", "data-value": agent.duration?.p50 ?? "",
      title: agent.duration ? `p95 ${seconds(agent.duration.p95)}` : "no run ended", text: agent.duration ? seconds(agent.duration.p50) : "–" }),
    h("td", { class: "num", "data-col": "heartbeat", "data-value": agent.last_heartbeat ?? "" }, timeAgo(agent.last_heartbeat)));
}

export function agentsView(root, live, params) {
  let data = null;
  let closed = false;
  const updated = h("p", { id: "agents-updated", class: "muted" });
  const error = h("p", { id: "agents-error", class: "error-text", role: "alert" });
  const body = h("div", { id: "agents-body" });
  const windowed = windowedFigures({
    path: "/agents", endpoint: "/api/agents/activity", name: "agents page", params, error,
    show: (answer) => {
      data = answer;
      render();
    },
  });
  root.replaceChildren(
    h("section", { class: "panel overview-head" },
      h("div", { class: "overview-title" }, h("h1", { text: "Agents" }), windowed.picker),
      updated, error),
    h("section", { class: "panel", "aria-labelledby": "agents-title" },
      h("h2", { id: "agents-title", class: "sr-only", text: "Agents and their runs" }),
      body,
      h("p", { class: "muted agents-note" },
        "Running now counts runs running or waiting for a person. Error rate: failed of the runs that ended. ",
        h("strong", { text: "Stale" }),
        ": an external agent that went silent (no post, no poll) past its run's lease, so runwatch ended that run " +
        "(agent_lost), and has not been heard from since.")),
  );

  function render() {
    const span = spanOf(data.window ?? windowed.windowSeconds);
    const read = data.until ?? Date.now() / 1000;
    updated.replaceChildren(`Agents with runs in ${span} or now · updated `,
      h("time", { datetime: new Date(read * 1000).toISOString(), title: fullTime(read), text: clock(read) }),
      " · live");
    const agents = data.agents ?? [];
    body.replaceChildren(figuresTable("Agents", COLUMNS, agents.map(row), `No agent reported in ${span}.`));
    focusableWhenScrolling(body);
  }

  // Live: a run queued, started or ended changes its agent's figures.
  const soon = throttle(() => {
    if (!closed) windowed.refresh();
  }, 1000);
  let stopFeed = () => {};
  function follow() {
    api("/api/runs?limit=1").then((page) => {
      if (closed) return;
      stopFeed = live.subscribe("*", page.feed, (event) => {
        if (LIFECYCLE.has(event.type)) soon();
      }, () => {}, { epoch: page.feed_epoch, onReset: resume });
    }).catch(() => {}); // (the timer still refreshes)
  }
  function resume() {
    soon();
    api("/api/runs?limit=1").then((page) => live.resume("*", page.feed, page.feed_epoch)).catch(() => {});
  }
  const stopPolling = live.onPoll(soon);

  const focusable = () => focusableWhenScrolling(body);
  window.addEventListener("resize", focusable);
  const ticker = setInterval(() => refreshTimes(body), 1000); // "… ago"

  follow();

  const teardown = () => {
    closed = true;
    windowed.stop();
    stopFeed();
    stopPolling();
    soon.cancel();
    clearInterval(ticker);
    window.removeEventListener("resize", focusable);
  };
  teardown.update = windowed.update;
  return teardown;
}
