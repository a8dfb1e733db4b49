// A model-stream consumer for `python -m bench --runs` (bench/README.md): K concurrent chat
// completion streams from one OpenAI-compatible endpoint, every text chunk forwarded (to a counter
// and the JSON a server would send). Prints one JSON line: CPU, chunks, each stream's TTFT and wall.
//
//   node stream_consumer.mjs ai|openai BASE_URL RUNS TOKENS RATE [SOCKET]
//
// SOCKET: connect to that Unix socket instead of BASE_URL's host and port (the offline model's
// RUNWATCH_MODEL_SOCKET), through undici's fetch with an Agent of the same package.
//
// ai:     the seed design, Vercel AI SDK streamText over @ai-sdk/openai (chat completions API)
// openai: the bare openai npm client, stream: true
import { streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import OpenAI from "openai";
import { Agent, fetch as undiciFetch } from "undici";

const [mode, baseURL, runsArg, tokensArg, rateArg, socketPath] = process.argv.slice(2);
const dispatcher = socketPath ? new Agent({ connect: { socketPath } }) : undefined;
const viaSocket = socketPath ? (url, init) => undiciFetch(url, { ...init, dispatcher }) : undefined;
const runs = Number(runsArg), tokens = Number(tokensArg), rate = Number(rateArg);
const prompt = JSON.stringify({ tokens, rate });
let forwarded = 0;
const forward = (runIndex, text) => { forwarded += JSON.stringify({ type: "token", run: runIndex, text }).length; };

async function viaAi(i) {
  const provider = createOpenAI({ baseURL, apiKey: "bench", fetch: viaSocket });
  const result = streamText({ model: provider.chat("runwatch-offline"), prompt });
  const t0 = performance.now(); let first = null, n = 0;
  for await (const text of result.textStream) {
    if (first === null) first = performance.now() - t0;
    n += 1; forward(i, text);
  }
  return { chunks: n, ttft: first / 1000, wall: (performance.now() - t0) / 1000 };
}

const client = new OpenAI({ baseURL, apiKey: "bench", maxRetries: 0, fetch: viaSocket });
async function viaOpenai(i) {
  const t0 = performance.now(); let first = null, n = 0;
  const stream = await client.chat.completions.create({
    model: "runwatch-offline", stream: true, stream_options: { include_usage: true },
    messages: [{ role: "user", content: prompt }],
  });
  for await (const chunk of stream) {
    const text = chunk.choices[0]?.delta?.content;
    if (text) { if (first === null) first = performance.now() - t0; n += 1; forward(i, text); }
  }
  return { chunks: n, ttft: first / 1000, wall: (performance.now() - t0) / 1000 };
}

const one = mode === "ai" ? viaAi : viaOpenai;
const cpu0 = process.cpuUsage(); const t0 = performance.now();
const results = await Promise.all(Array.from({ length: runs }, (_, i) => one(i)));
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({
  cpu_s: (cpu.user + cpu.system) / 1e6, elapsed_s: (performance.now() - t0) / 1000,
  chunks: results.reduce((a, r) => a + r.chunks, 0),
  ttft_s: results.map((r) => r.ttft), wall_s: results.map((r) => r.wall), forwarded_bytes: forwarded,
}));
