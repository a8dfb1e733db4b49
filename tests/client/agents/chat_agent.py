"""An agent in a process of its own (tests/client/test_agent_process.py runs it): the openai SDK
against runwatch's offline model, reported with ``runwatch.client``'s ``run.stream_chat``.

``python chat_agent.py PROMPT LEASE_SECONDS`` with ``RUNWATCH_URL`` and ``RUNWATCH_AGENT_KEY`` set.
It says what it did as JSON lines on stdout: ``{"run": id}`` once registered; ``{"answer": text,
"messages": [...]}`` after its first step, which a person's steering message cuts short (the
messages ``run.messages()`` gave it); ``{"reply": text}`` after answering them. Then it waits for
its stdin to close before it ends the run.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from openai import OpenAI

from runwatch.client import Message, Run, Runwatch


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def first_step(run: Run, model: OpenAI, conversation: list[dict[str, Any]]) -> list[Message]:
    """Stream the model's answer; cut it when people send messages, and return them."""
    taken: list[Message] = []
    with run.stream_chat(model, model="offline", messages=conversation) as chat:
        for _ in chat:
            if taken := run.messages():
                break
    conversation.append(chat.assistant_message())
    say(answer=chat.text, messages=[m.text for m in taken])
    return taken


def main() -> None:
    url, key = os.environ["RUNWATCH_URL"], os.environ["RUNWATCH_AGENT_KEY"]
    prompt, lease = sys.argv[1], float(sys.argv[2])
    model = OpenAI(base_url=f"{url}/v1", api_key=key)
    rw = Runwatch(url, key)
    caps = ["cancel", "message"]
    with rw.run(agent="process-agent", input=prompt, capabilities=caps, lease_seconds=lease) as run:
        say(run=run.id)
        conversation: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        if taken := first_step(run, model, conversation):
            conversation += [{"role": "user", "content": m.text} for m in taken]
            with run.stream_chat(model, model="offline", messages=conversation) as reply:
                for _ in reply:
                    pass
            say(reply=reply.text)
        sys.stdin.read()  # the test says when the run ends
    rw.close()


if __name__ == "__main__":
    main()
