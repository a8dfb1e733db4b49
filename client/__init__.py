"""runwatch.client: report runs of an agent that runs elsewhere to a runwatch server (the ingest API).

Imports only httpx, msgspec and the standard library — none of the server's dependencies::

    rw = Runwatch("https://runwatch.example", api_key)
    with rw.run(agent="billing-bot", input="summarise the quarter") as run:
        run.step("gpt-4o")
        run.token("Hello")
        run.step_done({"input_tokens": 12, "output_tokens": 1}, "stop")
"""

from runwatch.client.link import Cancelled, ClientError
from runwatch.client.openai_chat import AsyncChatStream, ChatStream, ModelToolCall
from runwatch.client.run import AsyncRun, Run, ToolCall
from runwatch.client.runwatch import AsyncRunwatch, Runwatch
from runwatch.client.wire import Decision, Message

__all__ = [
    "AsyncChatStream",
    "AsyncRun",
    "AsyncRunwatch",
    "Cancelled",
    "ChatStream",
    "ClientError",
    "Decision",
    "Message",
    "ModelToolCall",
    "Run",
    "Runwatch",
    "ToolCall",
]
