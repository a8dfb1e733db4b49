// The seed design runwatch is compared with: a `ws` server with rooms. Each LLM chunk is
// JSON.stringify'd once and sent to every member of its room, one frame per chunk.
//
// Protocol (shared with py_rooms.py and bench/loadgen.py):
//   client -> {"type":"join","room":R}                       server -> {"type":"ack","room":R}
//   client -> {"type":"start","room":R,"chunks":N}           server streams N token chunks to R's members,
//             then {"type":"run.finished",...}. Chunks have runwatch's token shape (run_id, seq, ts, text).
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 8900);
const rooms = new Map();
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
const WORDS = "the agent streams every token as it is written while watchers follow along".split(" ");

function broadcast(room, message) {
  const data = JSON.stringify(message);
  for (const member of rooms.get(room) ?? []) member.send(data);
}

async function stream(room, chunks) {
  for (let seq = 1; seq <= chunks; seq++) {
    broadcast(room, { type: "token", text: WORDS[seq % WORDS.length] + " ", run_id: room, seq, ts: Date.now() / 1000 });
    await new Promise((resolve) => setImmediate(resolve)); // a model stream yields between chunks
  }
  broadcast(room, { type: "run.finished", status: "succeeded", run_id: room, seq: chunks + 1, ts: Date.now() / 1000 });
}

wss.on("connection", (ws) => {
  const joined = new Set();
  ws.on("message", (raw) => {
    const msg = JSON.parse(raw);
    if (msg.type === "join") {
      if (!rooms.has(msg.room)) rooms.set(msg.room, new Set());
      rooms.get(msg.room).add(ws);
      joined.add(msg.room);
      ws.send(JSON.stringify({ type: "ack", room: msg.room }));
    } else if (msg.type === "start") {
      stream(msg.room, msg.chunks);
    }
  });
  ws.on("close", () => {
    for (const room of joined) rooms.get(room)?.delete(ws);
  });
});
wss.on("listening", () => console.log(`node rooms listening on ${port}`));
