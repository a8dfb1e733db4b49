// @ts-check
// The overview (#/overview?window=3600): GET /api/overview for a time window (time-window.js),
// refreshed every 10 s while the page is visible — runs per minute, success rate, durations and time to first
// token, output tokens/s by model, cost by agent, the queue and each instance's capacity.

import { capacityBar, runsChart } from "./chart.js";
import { agentName, ago, api, clock, costText, figuresTable as table, focusableWhenScrolling, fullTime, h, number, percent, seconds } from "./dom.js";
import { spanOf, windowedFigures } from "./time-window.js";

function figure(name, label, value, detail = "") {
  return h("div", { class: "figure", "data-figure": name },
    h("span", { class: "v", text: value }),
    h("span", { class: "k", text: label }),
    detail ? h("span", { class: "d muted", text: detail }) : null);
}

// A cost cell: the priced runs' sum, marked with how many runs it leaves out because their model
// has no price — an agent with an unpriced run is never shown as free. No priced run: "—", as in
// the runs list.
function costCell(cost, unpriced) {
  if (!unpriced || cost === null || cost === undefined) return costText(cost);
  const runs = unpriced === 1 ? "1 run" : `${number(unpriced)} runs`;
  const why = `${runs} unpriced: the price table does not know ${unpriced === 1 ? "its" : "their"} model (set RUNWATCH_PRICES); not in this sum`;
  return h("span", { class: "cost-sum" }, costText(cost),
    h("span", { class: "unpriced", title: why }, h("span", { "aria-hidden": "true", text: `+ ${number(unpriced)} unpriced` }), h("span", { class: "sr-only", text: `, plus ${why}` })));
}

function withRuns(span) {
  return h("p", { class: "empty-state" }, `No runs in ${span} — start one from `, h("a", { href: "#/", text: "Runs" }), ".");
}

export function overviewView(root, live, params, me = null) {
  let data = null;
  const updated = h("p", { id: "overview-updated", class: "muted" });
  const error = h("p", { id: "overview-error", class: "error-text", role: "alert" });
  const body = h("div", { id: "overview-body", "aria-live": "off" });
  const windowed = windowedFigures({
    path: "/overview", endpoint: "/api/overview", name: "overview", params, error,
    show: (answer) => {
      data = answer;
      render();
    },
  });

  root.replaceChildren(
    h("section", { class: "panel overview-head" },
      h("div", { class: "overview-title" }, h("h1", { text: "Overview" }), windowed.picker),
      updated, error),
    body,
  );

  function render() {
    const span = spanOf(data.window ?? windowed.windowSeconds);
    const runs = data.runs ?? {};
    const finished = (runs.succeeded ?? 0) + (runs.failed ?? 0) + (runs.cancelled ?? 0);
    const queue = data.queue ?? {};
    updated.replaceChildren(`Runs created in ${span} · updated `,
      h("time", { datetime: new Date((data.now ?? Date.now() / 1000) * 1000).toISOString(), title: fullTime(data.now), text: clock(data.now) }),
      " · refreshes every 10 s");

    const figures = h("div", { class: "figures" },
      figure("runs", `runs in ${span}`, number(runs.total ?? 0),
        `${runs.succeeded ?? 0} succeeded · ${runs.failed ?? 0} failed · ${runs.cancelled ?? 0} cancelled`),
      figure("success-rate", "success rate", percent(data.success_rate),
        finished ? `${runs.succeeded ?? 0} of ${finished} finished runs` : "no finished runs yet"),
      figure("duration", "duration p50", data.duration ? seconds(data.duration.p50) : "–",
        data.duration ? `p95 ${seconds(data.duration.p95)}` : "no finished runs"),
      figure("ttft", "time to first token p50", data.ttft ? seconds(data.ttft.p50) : "–",
        data.ttft ? `p95 ${seconds(data.ttft.p95)}` : "no model calls"),
      figure("queue", "queued now", number(queue.queued ?? 0),
        `${queue.running ?? 0} running · ${queue.waiting ?? 0} waiting for approval`),
    );

    const chart = h("section", { class: "panel", "aria-labelledby": "rpm-title" },
      h("h2", { id: "rpm-title", text: "Runs per minute" }),
      runs.total ? runsChart(data.per_minute ?? [], data.bucket || 60, span) : withRuns(span));

    const models = (data.models ?? []).map((m) => h("tr", { "data-model": m.model },
      h("td", { class: "name", text: m.model || "(none)" }),
      h("td", { class: "num", text: number(m.runs) }),
      h("td", { class: "num", text: number(m.output_tokens) }),
      h("td", { class: "num", "data-value": m.tokens_per_second ?? "", text: m.tokens_per_second == null ? "–" : m.tokens_per_second.toLocaleString(undefined, { maximumFractionDigits: 1 }) }),
      h("td", { class: "num", "data-value": m.cost ?? "" }, costCell(m.cost, m.unpriced))));

    const top = Math.max(0, ...(data.agents ?? []).map((a) => a.cost ?? 0));
    const agents = (data.agents ?? []).map((a) => {
      const share = h("span", { class: "share", "aria-hidden": "true" });
      share.style.width = `${top > 0 ? ((a.cost ?? 0) / top) * 100 : 0}%`;
      return h("tr", { "data-agent": a.agent },
        h("td", { class: "name" }, agentName(a.agent, a.external)),
        h("td", { class: "num", text: number(a.runs) }),
        h("td", { class: "num", text: number(a.failed) }),
        h("td", { class: "num cost-cell", "data-value": a.cost ?? "" }, h("span", { class: "share-track" }, share), costCell(a.cost, a.unpriced)));
    });

    const instances = (data.instances ?? []).map((i) => h("li", { class: "instance", "data-instance": i.instance },
      h("span", { class: "name", text: i.instance }),
      capacityBar(i.running ?? 0, i.slots ?? 0),
      h("span", { class: "muted", text: `${i.queued ?? 0} queued · seen ${ago(i.seen)}` })));

    const none = `No runs in ${span}.`;
    body.replaceChildren(
      figures,
      chart,
      h("div", { class: "overview-grid" },
        h("section", { class: "panel", id: "overview-models", "aria-labelledby": "models-title" },
          h("h2", { id: "models-title", text: "Output tokens/s by model" }),
          table("Models", [["Model"], ["Runs", 1], ["Output tokens", 1], ["Tokens/s", 1], ["Cost", 1]], models, none)),
        h("section", { class: "panel", id: "overview-agents", "aria-labelledby": "agents-title" },
          h("h2", { id: "agents-title", text: "Cost by agent" }),
          table("Agents", [["Agent"], ["Runs", 1], ["Failed", 1], ["Cost", 1]], agents, none)),
        h("section", { class: "panel", id: "overview-instances", "aria-labelledby": "instances-title" },
          h("h2", { id: "instances-title", text: "Instances" }),
          h("p", { class: "muted queue-now" },
            `Now: ${queue.queued ?? 0} queued, ${queue.running ?? 0} running, ${queue.waiting ?? 0} waiting.`),
          instances.length ? h("ul", { class: "instances" }, instances) : h("p", { class: "muted", text: "No instance has reported yet." }))),
    );
    focusable();
  }

  const focusable = () => focusableWhenScrolling(body);
  window.addEventListener("resize", focusable);

  const teardown = () => {
    windowed.stop();
    window.removeEventListener("resize", focusable);
  };
  teardown.update = windowed.update;
  return teardown;
}
