// @ts-check
// The detail panel: everything about the item selected in the trace. For a step: its streamed
// text, finish reason, time to first token, tokens, speed and cost; for a tool call: its
// arguments, progress, result or error and duration; for an approval: who decided what.
//
// It is updated in place as the run streams: a step's text is appended to, the figures are
// rewritten only when they change, and the rest is rebuilt only when the item changes.

import { clock, h, number, pretty, seconds, truncatedPre } from "./dom.js";
import { actor, itemState } from "./run-model.js";
import { stepOutput, stepSpeed, stepTtft, streamingTime, usd } from "./run-figures.js";

// A step's text beyond this many characters shows its end only, until "Show all" is pressed:
// laying out a whole long answer a second time, every frame, would slow the page down.
const TEXT_LIMIT = 20_000;

const KIND = { step: "LLM step", tool: "Tool call", approval: "Approval", message: "Message", note: "Event" };

function stepFacts(step, run, now) {
  const live = step.end === null && run.finishedAt === null;
  const soFar = live ? " so far" : "";
  const ttft = stepTtft(step);
  const usage = step.usage;
  const speed = stepSpeed(step, now);
  const streamed = streamingTime(step, now);
  return [
    ["model", step.model],
    ["finish reason", step.finish ?? (live ? "still streaming" : "none (the step never finished)")],
    ["error", step.errorType],
    ["time to first token", ttft !== null ? seconds(ttft) : live ? "waiting for the model…" : "no output"],
    ["duration", `${seconds(step.duration ?? (step.end ?? now) - step.start)}${soFar}`],
    ["input tokens", usage && !usage.estimated ? number(usage.input_tokens) : "–"], // (estimated: the model did not say)
    ["output tokens", usage ? `${usage.estimated ? "≈" : ""}${number(usage.output_tokens)}` : `≈${number(stepOutput(step))}${soFar}`],
    ["speed", speed !== null ? `${speed.toFixed(1)} tokens/s over ${seconds(streamed)} of streaming`
      : streamed !== null && !live ? `– (${seconds(streamed)} of streaming: too short to measure)` : "–"],
    ["cost", usage ? usd(step.cost) : "–"],
  ];
}

function toolFacts(tool, run, now, approval) {
  const facts = [
    ["tool", tool.tool],
    ["call", tool.callId],
    ["duration", tool.end !== null ? seconds(tool.duration) : `${seconds(now - tool.start)}${run.finishedAt === null ? " so far" : " (never finished)"}`],
  ];
  if (approval) facts.push(["approval", approvalText(approval)]);
  if (tool.denied) facts.push(["outcome", "not called: a person denied it, or its approval expired"]);
  return facts;
}

function approvalText(item) {
  const resolved = item.resolved;
  if (!resolved) return "waiting for a decision";
  const who = actor(resolved.by);
  if (resolved.decision === "expired") return "expired: nobody decided in time";
  return `${resolved.decision}${who ? ` by ${who}` : ""}${resolved.message ? `: ${resolved.message}` : ""}`;
}

function approvalFacts(item, run, now) {
  return [
    ["tool", item.request.tool],
    ["reason", item.request.reason],
    ["decision", item.resolved ? approvalText(item) : run.finishedAt !== null ? "none: the run ended" : "waiting for a decision"],
    ["waited", `${seconds((item.end ?? run.finishedAt ?? now) - item.start)}${item.end === null && run.finishedAt === null ? " so far" : ""}`],
    ["requested at", clock(item.start)],
  ];
}

function facts(item, run, now) {
  switch (item.kind) {
    case "step": return stepFacts(item, run, now);
    case "tool": return toolFacts(item, run, now, [...run.approvals.values()].find((a) => a.request.call_id === item.callId));
    case "approval": return approvalFacts(item, run, now);
    case "message": return [["from", item.by], ["when", item.mode === "interrupt" ? "interrupted the answer" : "after the step"], ["at", clock(item.start)]];
    default: return [["at", clock(item.start)]];
  }
}

// `onFollow()`: the reader asked to follow the latest item again.
export function detailPanel({ onFollow }) {
  const title = h("h3", { id: "detail-title", class: "detail-title" });
  const dl = h("dl", { class: "facts", id: "detail-facts" });
  const body = h("div", { class: "detail-body" });
  const textNode = document.createTextNode("");
  const stepText = h("div", { class: "step-text", id: "detail-text", role: "region", "aria-label": "Text of the step", tabindex: "0" }, textNode);
  const showAll = h("button", { id: "detail-text-all", type: "button", class: "show-more", hidden: true });
  const follow = h("button", { id: "follow-latest", type: "button", class: "follow", text: "Follow latest", hidden: true, onclick: () => onFollow() });
  const placeholder = h("p", { class: "muted", text: "Select a step or a tool call in the trace to see its details." });
  const content = h("div", { id: "detail", hidden: true }, title, dl, body);
  const section = h("section", { class: "panel detail-panel", id: "detail-panel", "aria-label": "Details" },
    h("div", { class: "panel-head" }, h("h2", { text: "Details" }), h("span", { class: "spacer" }), follow),
    placeholder, content);
  let shownKey = "";
  let shownFacts = "";
  let shownId = null;
  let shownText = 0; // characters of the step's text in the page; -1: its end only
  let whole = false; // the reader asked for all of a long text
  let current = null;

  // The step's text: appended to as it grows; past TEXT_LIMIT, its end only (unless `whole`).
  function renderText(item) {
    const text = item.text;
    if (whole || text.length <= TEXT_LIMIT) {
      if (shownText < 0) {
        textNode.data = "";
        shownText = 0;
      }
      if (text.length > shownText) {
        textNode.appendData(text.slice(shownText));
        shownText = text.length;
      }
    } else {
      textNode.data = `…${text.slice(-TEXT_LIMIT)}`;
      shownText = -1;
    }
    showAll.hidden = whole || text.length <= TEXT_LIMIT;
    if (!showAll.hidden) showAll.textContent = `Show all ${number(text.length)} characters`;
    const empty = String(!text && item.end !== null);
    if (stepText.dataset.empty !== empty) stepText.dataset.empty = empty;
  }

  showAll.addEventListener("click", () => {
    whole = true;
    if (current) renderText(current);
  });

  function rebuild(item, run) {
    const parts = [];
    if (item.kind === "step") {
      parts.push(h("div", { class: "label", text: "streamed text" }), stepText, showAll);
      if (shownId !== item.id) {
        textNode.data = "";
        shownText = 0;
        whole = false;
      }
    } else if (item.kind === "tool") {
      parts.push(h("div", { class: "label", text: "arguments" }), truncatedPre(pretty(item.args)));
      if (item.statuses.length) {
        parts.push(h("div", { class: "label", text: "progress" }), h("ul", { class: "progress-list" },
          item.statuses.map((s) => h("li", { text: `${seconds(s.ts - item.start)}: ${s.message}${s.progress !== null && s.progress !== undefined ? ` (${Math.round(s.progress * 100)}%)` : ""}` }))));
      }
      if (item.end !== null) {
        parts.push(h("div", { class: "label", text: item.denied ? "not called: the model was told" : item.error ? "error" : "result" }));
        parts.push(item.error ? h("p", { class: "error-text", text: item.error }) : truncatedPre(pretty(item.result)));
      } else if (run.finishedAt !== null) {
        parts.push(h("p", { class: "muted", text: "The run ended before this call did." }));
      }
    } else if (item.kind === "approval") {
      parts.push(h("div", { class: "label", text: item.resolved ? "arguments the tool was called with" : "arguments" }),
        truncatedPre(pretty(item.resolved ? item.resolved.arguments : item.request.arguments)));
    } else if (item.kind === "message") {
      parts.push(h("div", { class: "label", text: "message" }), h("p", { class: "said-text", text: item.text }));
    } else {
      parts.push(h("p", { text: item.text }));
    }
    body.replaceChildren(...parts);
  }

  return {
    section,
    // Show `item` (null: nothing selected) as it is now; `following`: the trace picks the latest.
    show(item, run, clockNow, following) {
      const now = run.finishedAt ?? clockNow; // what never ended stops where the run did
      follow.hidden = following;
      placeholder.hidden = Boolean(item);
      content.hidden = !item;
      if (!item) return;
      const state = itemState(item, run);
      const key = `${item.id}:${item.rev}:${state}`;
      if (key !== shownKey) {
        title.replaceChildren(h("span", { text: `${KIND[item.kind]}: ${item.kind === "step" ? item.label : item.label.replace(/^approval: /, "")}` }), " ",
          h("span", { class: `detail-state state-${state}`, text: state === "event" ? "" : state }));
        rebuild(item, run);
        shownKey = key;
      }
      shownId = item.id;
      current = item;
      if (item.kind === "step") renderText(item);
      const rows = facts(item, run, now).filter(([, v]) => v !== null && v !== undefined && v !== "");
      const signature = JSON.stringify(rows);
      if (signature !== shownFacts) {
        dl.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { "data-fact": k, text: v })]));
        shownFacts = signature;
      }
    },
  };
}
