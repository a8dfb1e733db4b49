"""The client commands: ``runwatch run`` (start a run and follow it) and ``runwatch agents``; and how
they find a server and the credential to send it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runwatch.api.cli.url import REQUEST_TIMEOUT, not_runwatch, settle_url, unreachable


def _credential(args: argparse.Namespace) -> tuple[str | None, str, bool]:
    """The credential client commands send, where to, and whether it is a local key: ``--token``,
    ``RUNWATCH_TOKEN``, or the local admin key ``serve`` keeps in its data folder (``--data-dir``,
    ``RUNWATCH_DATA_DIR``, ./runwatch-data) or left for this user's client commands of a server on
    this machine — that one only once the server proved it holds it (api/auth/local_client.py)."""
    import os

    from runwatch.api.auth.local_client import find_local_key

    if args.token:
        return args.token, args.url, False
    if os.environ.get("RUNWATCH_TOKEN"):
        return os.environ["RUNWATCH_TOKEN"], args.url, False
    found = find_local_key(args.url, Path(args.data_dir or os.environ.get("RUNWATCH_DATA_DIR") or "runwatch-data"))
    if found.notice:
        print(f"runwatch: {found.notice}", file=sys.stderr)
    return found.key, found.url, found.key is not None


def _client(args: argparse.Namespace):
    import httpx

    token, url, local = _credential(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # A local key goes straight to the address that proved it holds it, never through a proxy.
    return httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=None), headers=headers, trust_env=not local)


def _refused(r: Any) -> str:
    """What to tell the user when the server refused a client command's request."""
    if wrong := not_runwatch(r):
        return wrong
    body = r.json()
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str):
        return f"{r.request.url} answered HTTP {r.status_code} without runwatch's error body; is it runwatch's address?"
    if r.status_code == 401:
        return f"{detail}\n  pass --token or set RUNWATCH_TOKEN (a key from `runwatch keys create`, or a JWT)"
    return detail


def run_agent(args: argparse.Namespace) -> int:
    """Start a run and print it as it happens: tokens inline, tools and status on their own lines."""
    import httpx

    from runwatch.api.cli.sse_client import StreamLost, follow_run

    if problem := settle_url(args):
        print(f"runwatch: {problem}", file=sys.stderr)
        return 2
    run: dict[str, Any] | None = None
    try:
        with _client(args) as client:
            body = {"agent": args.agent, "input": args.input}
            if getattr(args, "thread", None):
                body |= {"thread": args.thread, "if_busy": "queue"}
            r = client.post("/api/runs", json=body, timeout=REQUEST_TIMEOUT)
            if r.status_code != 202 or not_runwatch(r):
                print(f"runwatch: {_refused(r)}", file=sys.stderr)
                return 2
            run = r.json()
            print(
                f"run {run['id']} ({run['agent']}, model {run['model']}, thread {run['thread']}) — Ctrl-C cancels it",
                file=sys.stderr,
            )
            status = "failed"
            try:
                for event in follow_run(client, run["stream"]):
                    status = _show(event, args.url) or status
            except StreamLost as exc:
                refused = f": {_refused(exc.response)}" if exc.response is not None else ""
                print(f"\nrunwatch: {exc}{refused}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                client.post(f"/api/runs/{run['id']}/cancel", json={})
                print("\ncancelled", file=sys.stderr)
                return 130
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        print(f"runwatch: {unreachable(exc, args.url, run['id'] if run else None)}", file=sys.stderr)
        return 2
    return 0 if status == "succeeded" else 1


def _show(event: dict[str, Any], url: str = "") -> str | None:
    kind = event["type"]
    if kind == "token":
        sys.stdout.write(event["text"])
        sys.stdout.flush()
    elif kind == "tool.started":
        print(f"\n→ {event['tool']}({json.dumps(event['arguments'])})", file=sys.stderr)
    elif kind == "approval.requested":
        print(
            f"\n⏸ {event['tool']}({json.dumps(event['arguments'])}) waits for approval: {event['reason']}\n"
            f"  approve or deny it in the dashboard ({url}/#/runs/{event['run_id']}) or with\n"
            f"  POST {url}/api/runs/{event['run_id']}/approvals/{event['approval_id']}",
            file=sys.stderr,
        )
    elif kind == "approval.resolved":
        who = (event.get("by") or {}).get("name") or "nobody"
        said = f": {event['message']}" if event.get("message") else ""
        print(f"  {event['decision']} by {who}{said}", file=sys.stderr)
    elif kind == "message.received":
        who = (event.get("by") or {}).get("name") or "someone"
        print(f"\n» {who} ({event['mode']}): {event['text']}", file=sys.stderr)
    elif kind == "tool.finished":
        outcome = f"error: {event['error']}" if event["error"] else json.dumps(event["result"])[:200]
        if event.get("denied"):
            outcome = f"not made: {event['result']}"
        print(f"← {event['tool']} {outcome} ({event['duration']:.2f} s)", file=sys.stderr)
    elif kind == "status":
        print(f"  … {event['message']}", file=sys.stderr)
    elif kind == "run.resumed":
        print(f"\n[resumed on {event['instance']} from step {event['step']}]", file=sys.stderr)
    elif kind == "run.finished":
        sys.stdout.write("\n")  # the answer's last line ends, before the shell's prompt
        sys.stdout.flush()
        totals = event["totals"]
        print(
            f"\n[{event['status']}{': ' + event['error'] if event['error'] else ''}] "
            f"{totals['output_tokens']} tokens out, {totals['tool_calls']} tool call"
            f"{'' if totals['tool_calls'] == 1 else 's'}, "
            f"{totals['duration']:.2f} s",
            file=sys.stderr,
        )
        return event["status"]
    return None


def list_agents(args: argparse.Namespace) -> int:
    import httpx

    if problem := settle_url(args):
        print(f"runwatch: {problem}", file=sys.stderr)
        return 2
    try:
        with _client(args) as client:
            r = client.get("/api/agents", timeout=REQUEST_TIMEOUT)
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        print(f"runwatch: {unreachable(exc, args.url)}", file=sys.stderr)
        return 2
    if r.status_code != 200 or not_runwatch(r):
        print(f"runwatch: {_refused(r)}", file=sys.stderr)
        return 2
    try:
        rows = [
            f"{a['name']:<16} {a['model']:<20} tools: {', '.join(a['tools']) or '-'}  {a['description']}"
            for a in r.json()
        ]
    except (KeyError, TypeError):
        print(
            f"runwatch: {args.url}/api/agents is not runwatch's list of agents; is it runwatch's address?",
            file=sys.stderr,
        )
        return 2
    for row in rows:
        print(row)
    return 0


def client_options(p: argparse.ArgumentParser, url_help: str) -> None:
    p.add_argument("--url", help=url_help)
    p.add_argument("--token", help="API key or JWT to send (default $RUNWATCH_TOKEN, else the local admin key)")
    p.add_argument("--data-dir", help="where to find the local admin key (default $RUNWATCH_DATA_DIR, ./runwatch-data)")
