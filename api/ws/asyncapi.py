"""The AsyncAPI 3.0 description of ``/ws``, generated from the msgspec structs the server uses.

``python -m runwatch.api.ws.asyncapi > docs/asyncapi.yaml`` rewrites the committed copy; a test keeps the two equal.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
import yaml

from runwatch.agents import events
from runwatch.api import __version__
from runwatch.api.ws import protocol

CLIENT = [
    protocol.Subscribe,
    protocol.Unsubscribe,
    protocol.Cancel,
    protocol.Start,
    protocol.Approve,
    protocol.Deny,
    protocol.SendMessage,
    protocol.Ping,
    protocol.Auth,
]
SERVER = [
    protocol.Hello,
    protocol.Ack,
    protocol.Error,
    protocol.Resync,
    protocol.Presence,
    protocol.Heartbeat,
    protocol.Pong,
]
EVENTS = list(events.AnyEvent.__args__)


def _name(struct: type) -> str:
    return struct.__name__


def _canonical(schema: Any) -> Any:
    """``schema`` as every msgspec version writes it: each ``description`` as ``inspect.cleandoc``
    leaves a docstring (0.18 kept its indentation, 0.23 drops it) and each ``anyOf``'s alternatives in
    one order (0.18 put ``null`` first, 0.23 last; the order means nothing)."""
    if isinstance(schema, dict):
        out = {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _canonical(v)
            for k, v in schema.items()
        }
        if isinstance(out.get("anyOf"), list):
            out["anyOf"] = sorted(out["anyOf"], key=lambda alternative: json.dumps(alternative, sort_keys=True))
        return out
    if isinstance(schema, list):
        return [_canonical(v) for v in schema]
    return schema


def _message(s: type[msgspec.Struct]) -> dict[str, Any]:
    """One message of the channel: its tag, its docstring's first line, its payload's schema."""
    message = {
        "name": s.__struct_config__.tag,
        "title": s.__struct_config__.tag,
        "summary": inspect.cleandoc(s.__doc__ or "").split("\n")[0] or None,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{_name(s)}"},
    }
    if message["summary"] is None:
        del message["summary"]
    return message


def _operation(action: str, summary: str, structs: Sequence[type[msgspec.Struct]]) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": "#/channels/ws"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/ws/messages/{_name(s)}"} for s in structs],
    }


def build() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(CLIENT + SERVER + EVENTS, ref_template="#/components/schemas/{name}")
    components = _canonical(components)
    messages = {_name(s): _message(s) for s in CLIENT + SERVER + EVENTS}
    refs = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "runwatch WebSocket API",
            "version": __version__,
            "description": (
                "Watch LLM agent runs live. Server frames are one message or a JSON array of messages. "
                "See docs/protocol.md for semantics: resume by seq, slow-consumer policy, close codes."
            ),
        },
        "servers": {"local": {"host": "127.0.0.1:8000", "protocol": "ws", "pathname": "/ws"}},
        "channels": {
            "ws": {
                "address": "/ws",
                "messages": refs,
                "description": "Close codes: "
                + ", ".join(f"{int(c)} {c.name.lower()}" for c in protocol.CloseCode)
                + ". Error codes: "
                + ", ".join(c.value for c in protocol.ErrorCode)
                + ".",
            }
        },
        "operations": {
            "sendClientMessage": _operation("receive", "Messages a client sends.", CLIENT),
            "receiveServerMessage": _operation(
                "send", "Messages the server sends that are not run events: acks, errors, notices.", SERVER
            ),
            "receiveEvent": _operation("send", "Run events, in seq order per run.", EVENTS),
        },
        "components": {"schemas": components, "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    """YAML with multi-line text (a docstring's paragraphs) as ``|`` blocks, line for line."""


_Dumper.add_representer(
    str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)
)


def render() -> str:
    return yaml.dump(build(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
