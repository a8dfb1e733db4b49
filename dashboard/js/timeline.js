// The run's timeline: each LLM step, tool call and wait for an approval as a bar on one time axis.
// Running bars end at "now" and grow as the view re-renders.

import { h, seconds } from "./dom.js";

// spans: [{id, kind: "step"|"tool"|"approval", label, start, end|null, error, note}]; t0/now in epoch seconds.
// `note` (e.g. "interrupted": a person's message cut the step) is a small marker beside the label.
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
    const title = `${span.label}: ${seconds(end - span.start)}${running ? " so far" : ""}${span.error ? ` — ${span.error}` : ""}${span.note ? ` (${span.note})` : ""}`;
    return h("div", { class: "tl-row", "data-span": span.id },
      span.note
        ? h("span", { class: "tl-label has-note", title: `${span.label} (${span.note})` },
          h("span", { class: "tl-text", text: span.label }), h("span", { class: "tl-note", text: span.note }))
        : h("span", { class: "tl-label", title: span.label, text: span.label }),
      h("div", { class: "tl-track" },
        h("div", {
          class: `bar ${span.kind}${running ? " running" : ""}${span.error ? " error" : ""}${span.note ? ` ${span.note}` : ""}`,
          style: `left:${left.toFixed(3)}%;width:${Math.min(width, 100 - left).toFixed(3)}%`,
          title, role: "img", "aria-label": title,
        })));
  });
  container.replaceChildren(...rows,
    h("div", { class: "tl-axis", "aria-hidden": "true" }, h("span", { text: "0 s" }), h("span", { text: seconds(total) })));
}
