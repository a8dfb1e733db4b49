"""A tiny OpenAI-compatible chat completions endpoint a test runs, scripted like a local model
(Ollama, llama.cpp): a tool call arrives whole in one chunk, text streams a token a chunk at a
rate, and the usage chunk is sent or not.

The run's input is the script, a JSON object: ``{"tokens": N, "rate": R, "tool_calls": K,
"usage": true}`` — K steps that each call the demo agent's ``calculator`` (all of the call in one
chunk, its usage counting ``TOOL_CALL_TOKENS`` output tokens), then N text tokens at R tokens/s.
Point a server at it with ``FakeModel.env``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Output tokens a tool-call step reports (a local model sends the whole call at once).
TOOL_CALL_TOKENS = 24


def _script(messages: list[dict[str, Any]]) -> dict[str, Any]:
    first = next(m for m in messages if m.get("role") == "user")
    return json.loads(first["content"])


def _replies(body: dict[str, Any]) -> list[dict[str, Any] | float]:
    """The chunks of one reply (a float: seconds to wait before the next chunk)."""
    messages = body["messages"]
    script = _script(messages)
    usage = script.get("usage", True) and body.get("stream_options", {}).get("include_usage")
    done_calls = sum(1 for m in messages if m.get("role") == "tool")
    out: list[dict[str, Any] | float] = [{"role": "assistant", "content": ""}]
    if done_calls < script.get("tool_calls", 0):
        call = {"name": "calculator", "arguments": json.dumps({"expression": "6*7"})}
        out.append({"tool_calls": [{"index": 0, "id": f"call_{done_calls}", "type": "function", "function": call}]})
        finish, completion = "tool_calls", TOOL_CALL_TOKENS
    else:
        tokens, rate = script.get("tokens", 5), script.get("rate", 0)
        for i in range(tokens):
            if rate and i:
                out.append(1 / rate)
            out.append({"content": f"word{i} "})
        finish, completion = "stop", tokens
    out.append({"finish": finish})
    if usage:
        out.append({"usage": {"prompt_tokens": 50, "completion_tokens": completion, "total_tokens": 50 + completion}})
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test's output is the server's log
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time())}
        head["model"] = body["model"]
        due = time.monotonic()
        for part in _replies(body):
            if isinstance(part, float):  # the model's pace, kept on a schedule: a late chunk does not delay the rest
                due += part
                time.sleep(max(0.0, due - time.monotonic()))
                continue
            if "usage" in part:
                chunk = head | {"choices": [], "usage": part["usage"]}
            elif "finish" in part:
                chunk = head | {"choices": [{"index": 0, "delta": {}, "finish_reason": part["finish"]}]}
            else:
                chunk = head | {"choices": [{"index": 0, "delta": part, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class FakeModel:
    """The endpoint on a free loopback port, served by a thread until ``close``."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-model", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def env(self, model: str = "llama3.1") -> dict[str, str]:
        """The settings that make a runwatch server use this endpoint as ``model``."""
        return {"OPENAI_BASE_URL": self.url, "OPENAI_API_KEY": "not-a-real-key", "RUNWATCH_MODEL": model}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
