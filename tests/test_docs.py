"""The documents describe the code: AsyncAPI is generated from it, protocol.md names every code."""

from __future__ import annotations

from pathlib import Path

import yaml

from runwatch.agents.errors import HTTP_STATUS, ResyncReason
from runwatch.agents.events import AnyEvent
from runwatch.api import asyncapi
from runwatch.api.protocol import CLIENT_TYPES, CloseCode, ErrorCode

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_committed_asyncapi_document_matches_the_code():
    committed = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert committed == asyncapi.build(), "run: python -m runwatch.api.asyncapi > docs/asyncapi.yaml"


def test_protocol_md_documents_every_message_event_and_code():
    text = (DOCS / "protocol.md").read_text()
    names = [*CLIENT_TYPES, *(e.__struct_config__.tag for e in AnyEvent.__args__), *ResyncReason]
    missing = [n for n in names if f"`{n}`" not in text]
    missing += [c.value for c in ErrorCode if f"| `{c.value}`".ljust(27) + f"| {HTTP_STATUS[c]} |" not in text]
    missing += [str(int(c)) for c in CloseCode if f"| {int(c)} |" not in text]
    assert not missing, f"docs/protocol.md does not mention {missing}"
