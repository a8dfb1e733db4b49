"""What the processor and ``run_streamed`` share: the SDK's usage as runwatch's, runwatch's agent-name
rule, and the traces ``run_streamed`` reports itself (which processors skip)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

#: runwatch's agent-name rule: 1 to 64 of letters, digits, ``_ . : -``, starting with a letter or digit.
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.:-]+")
#: The name of a run whose workflow and agent leave nothing usable.
FALLBACK_AGENT = "openai-agents"

#: The trace ids ``run_streamed`` reports itself while they run: a ``RunwatchProcessor`` skips them,
#: so that one run never appears twice. Added and removed on the caller's loop; read from any thread
#: (a set's membership test is atomic).
OWNED: set[str] = set()


def agent_name(name: str | None) -> str:
    """``name`` made a runwatch agent name: other characters become ``-``, cut to 64 (none left:
    ``openai-agents``)."""
    cleaned = _NOT_NAME.sub("-", name or "").lstrip("_.:-")[:64].rstrip("-")
    return cleaned or FALLBACK_AGENT


def usage(value: Any) -> dict[str, int] | None:
    """The SDK's usage (a span's usage dict, a ``Usage`` or a ``ResponseUsage``) as runwatch's
    ``{input_tokens, output_tokens}``; ``None`` when there is none."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        got_in, got_out = value.get("input_tokens"), value.get("output_tokens")
    else:
        got_in, got_out = getattr(value, "input_tokens", None), getattr(value, "output_tokens", None)
    if got_in is None and got_out is None:
        return None
    return {"input_tokens": int(got_in or 0), "output_tokens": int(got_out or 0)}


def arguments(raw: Any) -> Any:
    """A tool call's arguments as runwatch shows them: the decoded JSON, else the raw value."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw
