// The run's timeline: each LLM step and each tool call as a bar on one time axis.
// Running bars end at "now" and grow as the view re-renders.

import { h, seconds } from "./dom.js";

// spans: [{id, kind: "step"|"tool", label, start, end|null, error}]; t0/now in epoch seconds.
export function renderTimeline(container, spans, t0, now) {
  if (!spans.length || !t0) {
    container.replaceChildren(h("p", { class: "muted", text: "Nothing has happened yet." }));
    return;
  }
  const t1 = Math.max(now, ...spans.map((s) => s.end ?? now), t0 + 0.001);
  const total = t1 - t0;
  const rows = spans.map((span) => {
    const end = span.end ?? now;
    const left = ((span.start - t0) / total) * 100;
    const width = Math.max(((end - span.start) / total) * 100, 0.3);
    const running = span.end === null;
    const title = `${span.label}: ${seconds(end - span.start)}${running ? " so far" : ""}${span.error ? ` — ${span.error}` : ""}`;
    return h("div", { class: "tl-row", "data-span": span.id },
      h("span", { class: "tl-label", title: span.label, text: span.label }),
      h("div", { class: "tl-track" },
        h("div", {
          class: `bar ${span.kind}${running ? " running" : ""}${span.error ? " error" : ""}`,
          style: `left:${left.toFixed(3)}%;width:${Math.min(width, 100 - left).toFixed(3)}%`,
          title, role: "img", "aria-label": title,
        })));
  });
  container.replaceChildren(...rows,
    h("div", { class: "tl-axis", "aria-hidden": "true" }, h("span", { text: "0 s" }), h("span", { text: seconds(total) })));
}
