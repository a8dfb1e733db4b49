// @ts-check
// Export a run: every event as JSON (what GET /api/runs/{id}/events answers, page after page), or
// a Markdown transcript a person can read — the input, each step's text, the tool calls with
// their arguments and results, people's messages and decisions, and how the run ended.

import { api, pretty } from "./dom.js";
import { actor } from "./run-model.js";

const PAGE = 5000;

// Seconds to the millisecond's tenth ("–": none), for a person reading the transcript.
const secs = (value) => (value === null || value === undefined ? "–" : String(Number(value.toFixed(4))));

// Every event of the run, in order, exactly as the REST replay gives them.
export async function allEvents(runId) {
  const events = [];
  let after = 0;
  for (;;) {
    const page = await api(`/api/runs/${encodeURIComponent(runId)}/events?after=${after}&limit=${PAGE}`);
    events.push(...page.events);
    if (!page.more || page.next_after <= after) return events;
    after = page.next_after;
  }
}

// Offer `text` as a file called `name` (the browser's download).
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A fenced block that no backtick run inside `text` can close.
function fenced(text, lang = "") {
  const longest = Math.max(2, ...(String(text).match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(longest + 1);
  return `${fence}${lang}\n${text}\n${fence}`;
}

const quote = (text) => String(text).split("\n").map((line) => `> ${line}`).join("\n");

// The run as a Markdown document.
export function transcript(runId, events) {
  const out = [`# Run ${runId}`];
  let text = "";
  const flush = () => {
    if (text.trim()) out.push(text.trim());
    text = "";
  };
  for (const e of events) {
    switch (e.type) {
      case "run.queued":
        out.push(`- agent: ${e.agent}${e.external ? " (external: it runs elsewhere and reports this run)" : ""}\n- model: ${e.model}${e.offline ? " (offline)" : ""}${actor(e.by) ? `\n- started by: ${actor(e.by)}` : ""}\n- queued: ${new Date(e.ts * 1000).toISOString()}`);
        out.push("## Input", quote(e.input));
        break;
      case "step.started":
        flush();
        out.push(`## Step ${e.index + 1}`);
        break;
      case "token":
        text += e.text;
        break;
      case "step.finished": {
        flush();
        const usage = e.usage ?? {};
        const cost = e.cost === null || e.cost === undefined ? "unpriced" : `$${e.cost}`;
        const tokensIn = usage.estimated ? "–" : usage.input_tokens ?? 0; // (estimated: the model did not say)
        const tokensOut = `${usage.estimated ? "≈" : ""}${usage.output_tokens ?? 0}`;
        out.push(`_finish: ${e.finish_reason}${e.error_type ? ` (${e.error_type})` : ""}; ${tokensIn} tokens in, ${tokensOut} out; ` +
          `${secs(e.duration)} s, first token after ${secs(e.ttft)} s; cost ${cost}_`);
        break;
      }
      case "tool.started":
        flush();
        out.push(`### Tool call: ${e.tool} (${e.call_id})`, "Arguments:", fenced(pretty(e.arguments), "json"));
        break;
      case "status":
        if (e.call_id) out.push(`- progress: ${e.message}${e.progress !== null && e.progress !== undefined ? ` (${Math.round(e.progress * 100)}%)` : ""}`);
        else out.push(`_${e.message}_`);
        break;
      case "tool.finished":
        if (e.denied) out.push(`Not called (denied). The model was told:`, fenced(pretty(e.result)));
        else if (e.error) out.push(`Error after ${e.duration} s:`, fenced(e.error));
        else out.push(`Result after ${e.duration} s:`, fenced(pretty(e.result), "json"));
        break;
      case "approval.requested":
        flush();
        out.push(`### Approval asked: ${e.tool} (${e.call_id})`, `Reason: ${e.reason}`, fenced(pretty(e.arguments), "json"));
        break;
      case "approval.resolved":
        out.push(`Approval ${e.decision}${actor(e.by) ? ` by ${actor(e.by)}` : ""}${e.message ? `: ${e.message}` : ""}`);
        break;
      case "message.received":
        flush();
        out.push(`### Message from ${actor(e.by) || "someone"} (${e.mode})`, quote(e.text));
        break;
      case "run.cancel_requested":
        flush();
        out.push(`_Cancel requested${actor(e.by) ? ` by ${actor(e.by)}` : ""}_`);
        break;
      case "run.resumed":
        flush();
        out.push(`_Resumed on ${e.instance} from step ${e.step + 1}; the interrupted step runs again_`);
        break;
      case "run.finished": {
        flush();
        const t = e.totals ?? {};
        const cost = t.cost === null || t.cost === undefined ? "unpriced" : `$${t.cost}`;
        out.push("## Result", `- status: ${e.status}${e.error ? `\n- error: ${e.error}` : ""}`.trim() +
          `\n- steps: ${t.steps ?? 0}, tool calls: ${t.tool_calls ?? 0}\n- tokens: ${t.input_tokens ?? 0} in, ${t.output_tokens ?? 0} out\n- duration: ${t.duration ?? 0} s\n- cost: ${cost}`);
        break;
      }
    }
  }
  flush();
  if (!events.some((e) => e.type === "run.finished")) out.push("## Result", "_The run had not finished when this was exported._");
  return `${out.join("\n\n")}\n`;
}

// Download the run's events as `run-<id>.json` and `run-<id>.md`.
export async function exportJson(runId) {
  const events = await allEvents(runId);
  download(`run-${runId}.json`, JSON.stringify(events), "application/json");
}

export async function exportMarkdown(runId) {
  const events = await allEvents(runId);
  download(`run-${runId}.md`, transcript(runId, events), "text/markdown");
}
