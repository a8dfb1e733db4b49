"""Where the client commands (``runwatch run``, ``runwatch agents``) find the server, and what they
say, in one line, when that address is wrong or what answers there is not runwatch."""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import urlsplit

#: Seconds a client command waits to connect, and for an answer to a request (not for a run's stream).
REQUEST_TIMEOUT = 10.0

_ELSEWHERE = "pass --url or set RUNWATCH_URL"


def settle_url(args: argparse.Namespace) -> str | None:
    """Set ``args.url`` from ``--url``, else ``RUNWATCH_URL``, else this machine on ``RUNWATCH_PORT``
    (8000); return what is wrong with it as one line that says what to do, or None."""
    if args.url:
        source = "--url"
    elif os.environ.get("RUNWATCH_URL"):
        args.url, source = os.environ["RUNWATCH_URL"], "RUNWATCH_URL"
    else:
        port = os.environ.get("RUNWATCH_PORT") or "8000"
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"RUNWATCH_PORT must be a port number (1 to 65535), got {port!r}; set it to `runwatch serve`'s port"
        args.url, source = f"http://127.0.0.1:{port}", "RUNWATCH_PORT"
    return url_problem(args.url, source)


def url_problem(url: str, source: str) -> str | None:
    """What is wrong with ``url`` as a server's address (None if nothing), naming ``source`` and the fix."""
    fix = "pass --url " if source == "--url" else f"set {source}="
    if "://" not in url:
        return f"{source} {url!r} has no scheme; {fix}http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, "http")
        return f"{source} {url!r} is not an http:// or https:// URL; {fix}{scheme}://{parts.netloc or 'HOST:PORT'}"
    if not parts.hostname:
        return f"{source} {url!r} names no host; {fix}http://HOST:PORT (as `runwatch serve` prints it)"
    try:
        parts.port  # noqa: B018 (it validates)
    except ValueError:
        return f"{source} {url!r} has no valid port (1 to 65535); {fix}http://{parts.hostname}:PORT"
    return None


def unreachable(exc: Exception, url: str, run: str | None = None) -> str:
    """What to say when no HTTP answer came from ``url`` (``exc``: httpx's error); ``run``: the run
    being followed when the connection went."""
    import httpx

    why = " ".join(str(exc).split()) or type(exc).__name__
    if run is not None:
        return (
            f"lost the connection to {url} ({why}) while following run {run}; it goes on on the server: "
            "see it in the dashboard"
        )
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {url} ({why}); is `runwatch serve` running? If it is elsewhere, {_ELSEWHERE}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer within {REQUEST_TIMEOUT:g} s; is it runwatch's address? If not, {_ELSEWHERE}"
    return f"{url} does not answer as an HTTP server ({why}); is it runwatch's address? If not, {_ELSEWHERE}"


def not_runwatch(r: Any) -> str | None:
    """None if ``r`` (an httpx response) is runwatch's JSON; else one line: what answered is something else."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict | list):
        return None
    kind = r.headers.get("content-type", "no content type").split(";")[0]
    return (
        f"{r.request.url} answered HTTP {r.status_code} with {kind}, not runwatch's JSON; "
        f"is it runwatch's address? If not, {_ELSEWHERE}"
    )
