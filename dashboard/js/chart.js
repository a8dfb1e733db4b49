// @ts-check
// Small inline SVG charts for the overview (no chart library): runs per minute as bars, and a
// capacity bar (busy slots of an instance).

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

function hhmm(ts, withDay) {
  const d = new Date(ts * 1000);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return withDay ? `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}` : time;
}

function rate(value) {
  return value >= 10 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1);
}

// Runs per minute, one bar per bucket (its failed runs on top, in the failure colour).
// `buckets`: [{t, runs, failed}] oldest first; `bucket`: seconds per bucket; `span`: "the last hour".
export function runsChart(buckets, bucket, span) {
  const width = 600;
  const height = 150;
  const perMinute = 60 / bucket;
  const n = Math.max(1, buckets.length);
  const peak = Math.max(...buckets.map((b) => b.runs), 0);
  const top = Math.max(peak, 1);
  const step = width / n;
  const gap = step > 4 ? step * 0.18 : 0;
  const withDay = bucket >= 3600;
  const total = buckets.reduce((sum, b) => sum + b.runs, 0);
  const failed = buckets.reduce((sum, b) => sum + b.failed, 0);
  const busiest = buckets.find((b) => b.runs === peak);
  const label = total
    ? `Runs per minute over ${span}: ${total} runs, ${failed} failed; at most ${rate(peak * perMinute)} per minute` +
      (busiest ? ` (${hhmm(busiest.t, withDay)})` : "")
    : `No runs over ${span}`;

  const bars = buckets.map((b, i) => {
    const x = i * step + gap / 2;
    const w = Math.max(step - gap, 0.6);
    const okHeight = ((b.runs - b.failed) / top) * height;
    const failHeight = (b.failed / top) * height;
    const perMin = b.runs * perMinute;
    return svg("g", {},
      svg("title", {}, `${hhmm(b.t, withDay)}: ${b.runs} run${b.runs === 1 ? "" : "s"}${b.failed ? `, ${b.failed} failed` : ""} (${rate(perMin)}/min)`),
      // An invisible full-height target, so thin bars still show their title on hover.
      svg("rect", { class: "hit", x: i * step, y: 0, width: step, height }),
      okHeight > 0 ? svg("rect", { class: "bar-ok", x, y: height - okHeight - failHeight, width: w, height: okHeight }) : null,
      failHeight > 0 ? svg("rect", { class: "bar-failed", x, y: height - failHeight, width: w, height: failHeight }) : null,
    );
  });
  const chart = svg("svg", {
    class: "runs-chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": label,
  },
  svg("line", { class: "grid", x1: 0, x2: width, y1: 0.5, y2: 0.5 }),
  svg("line", { class: "axis", x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5 }),
  bars);
  const first = buckets[0]?.t;
  const last = buckets.at(-1)?.t;
  return h("figure", { class: "chart", "data-total": String(total), "data-peak-per-minute": String(peak * perMinute) },
    h("div", { class: "chart-y muted", "aria-hidden": "true" }, h("span", { text: `${rate(top * perMinute)}/min` }), h("span", { text: "0" })),
    h("div", { class: "chart-plot" }, chart,
      h("div", { class: "chart-x muted", "aria-hidden": "true" },
        h("span", { text: first ? hhmm(first, withDay) : "" }), h("span", { text: last ? hhmm(last + bucket, withDay) : "" }))),
    h("figcaption", { class: "chart-legend muted" },
      h("span", { class: "key ok", text: "runs" }), h("span", { class: "key failed", text: "failed" }),
      h("span", { text: `${bucket >= 60 ? `${bucket / 60} min` : `${bucket} s`} per bar` })),
  );
}

// "3 of 8 slots busy" as a bar and as text.
export function capacityBar(running, slots) {
  const share = slots > 0 ? Math.min(1, running / slots) : 0;
  const fill = h("span", { class: "capacity-fill" });
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  if (share >= 1) fill.classList.add("full");
  return h("span", { class: "capacity" },
    h("span", { class: "capacity-track", "aria-hidden": "true" }, fill),
    h("span", { class: "capacity-text", text: `${running} of ${slots} slot${slots === 1 ? "" : "s"} busy` }));
}
