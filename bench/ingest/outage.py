"""The outage scenario: K paced external runs; the server killed (SIGKILL) a few seconds into their
streams, kept down, then started again on the same data folder and port. The agent process goes on
calling ``run.token()`` throughout; its client retries every batch it got no answer for. At the end
each run's events are read back over REST (the replay) and compared with what its agent sent:
token by token (each token's text holds its index), and the events around them.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from typing import Any

import httpx

from bench import servers
from bench.ingest.child import Child

#: Seconds of streaming before the kill, and after the server is back, at least.
BEFORE_S, AFTER_S = 3.0, 5.0
#: What a run's agent sends besides its tokens, in order (``step.started``, tokens, ...).
AGENT_EVENTS = ["step.started", "step.finished", "run.finished"]
#: What runwatch writes on an external run itself.
SERVER_EVENTS = {"run.queued", "run.started"}


def replay(http_url: str, token: str | None, run: str) -> list[dict[str, Any]]:
    """Every stored event of ``run``, through the REST replay, page by page."""
    events: list[dict[str, Any]] = []
    page: dict[str, Any] = {"more": True, "next_after": 0}
    with httpx.Client(base_url=http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        while page["more"]:
            r = c.get(f"/api/runs/{run}/events", params={"after": page["next_after"], "limit": 5000})
            r.raise_for_status()
            page = r.json()
            events += page["events"]
    return events


def compare(stored: list[dict[str, Any]], sent_digest: str, sent_tokens: int) -> dict[str, Any]:
    """How a run's stored events differ from what its agent sent: tokens lost, tokens stored twice,
    and whether everything else (the events around the tokens, their order, the text) is equal."""
    agent = [e for e in stored if e["type"] not in SERVER_EVENTS]
    tokens = [e for e in agent if e["type"] == "token"]
    others = [e["type"] for e in agent if e["type"] != "token"]
    text = "".join(e["text"] for e in tokens)
    indices = [int(t.partition("@")[0]) for t in text.split()]
    first, last = (
        next((i for i, e in enumerate(agent) if e["type"] == t), -1) for t in ("step.started", "step.finished")
    )
    in_step = all(first < i < last for i, e in enumerate(agent) if e["type"] == "token")
    kept = set(indices)
    finished = agent[-1] if agent else {}
    return {
        "lost": sum(1 for i in range(sent_tokens) if i not in kept),
        "duplicated": len(indices) - len(kept),
        "stored": len(indices),
        "deltas": sum(e.get("deltas", 1) for e in tokens),
        "equal": hashlib.sha256(text.encode()).hexdigest() == sent_digest
        and others == AGENT_EVENTS
        and in_step
        and finished.get("status") == "succeeded"
        and sum(e.get("deltas", 1) for e in tokens) == sent_tokens,
    }


def run(runs: int, rate: float, down_s: float) -> dict[str, Any]:
    tokens = int(rate * (BEFORE_S + down_s + AFTER_S + 3))  # (+3: the restart's own seconds)
    port, data = servers.free_port(), tempfile.mkdtemp(prefix="runwatch-bench-")
    server = servers.runwatch_alone(port=port, data_dir=data)
    agent: Child | None = None
    try:
        spec = {"mode": "paced", "url": server.http_url, "key": servers.agent_key(server), "record": True}
        spec |= {"tag": "outage", "runs": runs, "tokens": tokens, "rate": rate}
        agent = Child("agent", servers.LOAD_CORE, "bench.ingest.agent", spec)
        agent.expect("ready")
        agent.send({"command": "register"})
        ids = agent.expect("registered")["runs"]
        agent.send({"command": "go"})
        time.sleep(BEFORE_S)  # the runs stream meanwhile
        server.proc.kill()
        server.proc.wait()
        killed = time.monotonic()
        time.sleep(down_s)  # the outage itself
        restarted = time.monotonic() - killed
        server = servers.runwatch_alone(port=port, data_dir=data)
        down = time.monotonic() - killed
        sent = agent.expect("sent", timeout=tokens / rate + 120)
        diffs = [
            compare(replay(server.http_url, server.token, run), digest, tokens)
            for run, digest in zip(ids, sent.pop("digests"), strict=True)
        ]
    finally:
        if agent is not None:
            agent.stop()
        if server.proc.poll() is None:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)
    return {
        "runs": runs,
        "tokens_per_run": tokens,
        "kill_after_s": BEFORE_S,
        "restarted_after_s": round(restarted, 2),
        "down_s": round(down, 2),
        "tokens_sent": sent["tokens"] - sent["dropped"],
        "tokens_stored": sum(d["stored"] for d in diffs),
        "lost": sum(d["lost"] for d in diffs),
        "duplicated": sum(d["duplicated"] for d in diffs),
        "runs_differ": sum(1 for d in diffs if not d["equal"]),
        "exact": all(d["equal"] and not d["lost"] and not d["duplicated"] for d in diffs) and not sent["dropped"],
        "agent": sent,
    }
