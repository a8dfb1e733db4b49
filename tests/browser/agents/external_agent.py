"""An agent that runs elsewhere, for the dashboard's tests: a process of its own that reports three
runs of ``billing-bot`` with ``runwatch.client`` (nothing of the server imported) and says on its
standard output, one JSON object a line, what happened to them::

    python tests/browser/agents/external_agent.py URL AGENT_KEY

First ``{"runs": {"stream": ID, "approval": ID, "watch": ID}}`` once all three are registered, then:

- ``stream`` (takes cancels and messages): a token every 50 ms until a person cancels it; then
  ``{"cancelled": ID, "at": EPOCH}`` the moment the agent sees it, and the run ends ``cancelled``.
- ``approval`` (takes approvals): asks a person to approve ``send_report`` to ``cfo@acme.test``
  (``SCHEMA``), then ``{"decision": …, "arguments": …}`` — what it got back — calls the tool with
  those arguments, and ends ``succeeded``.
- ``watch`` (takes nothing: people can only watch it; a lease of 1 s): a token every 200 ms until
  the process is killed, after which runwatch ends it ``agent_lost``.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from runwatch.client import Run, Runwatch

AGENT = "billing-bot"
ARGUMENTS = {"to": "cfo@acme.test"}
SCHEMA = {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}

_said = threading.Lock()


def say(**fields: Any) -> None:
    """One line of what happened, written whole (the test reads it as it comes)."""
    with _said:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def stream(run: Run) -> None:
    run.step("their-model")
    n = 0
    while not run.cancelled.wait(0.05):
        n += 1
        run.token(f"tok{n} ")
    say(cancelled=run.id, at=time.time())
    run.step_done({"input_tokens": 12, "output_tokens": n}, "cancelled")


def approval(run: Run) -> None:
    run.step("their-model")
    run.token("I will send the report.")
    run.step_done({"input_tokens": 12, "output_tokens": 6}, "tool_calls")
    decision = run.request_approval("call_1", "send_report", ARGUMENTS, "emails the report outside the team", SCHEMA)
    say(decision=decision.decision, arguments=decision.arguments, run=run.id)
    if decision.approved:
        with run.tool("call_1", "send_report", decision.arguments) as tool:
            tool.result({"sent_to": decision.arguments["to"]})


def watch(run: Run) -> None:
    run.step("their-model")
    n = 0
    while True:
        n += 1
        run.token(f"seen{n} ")
        time.sleep(0.2)


#: Each run: what it does, the controls it takes, and more of its registration.
RUNS: dict[str, tuple[Callable[[Run], None], list[str], dict[str, Any]]] = {
    "stream": (stream, ["cancel", "message"], {}),
    "approval": (approval, ["approve"], {}),
    "watch": (watch, [], {"lease_seconds": 1}),
}


def main(url: str, key: str) -> None:
    rw = Runwatch(url, key)
    registered: queue.Queue[tuple[str, str]] = queue.Queue()

    def report(name: str) -> None:
        work, capabilities, fields = RUNS[name]
        with rw.run(agent=AGENT, input=f"the {name} run", capabilities=capabilities, **fields) as run:
            registered.put((name, run.id or ""))
            work(run)

    for name in RUNS:
        threading.Thread(target=report, args=(name,), name=name, daemon=True).start()
    runs = dict(registered.get(timeout=30) for _ in RUNS)
    say(runs=runs)
    threading.Event().wait()  # until killed (the watch run never ends by itself)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
