"""Label sets and lists of message kinds come from the unions they describe: every event tag and
every client message type has its series from the start, and the protocol's list is the union's."""

from __future__ import annotations

import json
import re
import typing

from prometheus_client.parser import text_string_to_metric_families

from runwatch.agents.errors import FINAL, LOG_IN_AGAIN
from runwatch.agents.events import AnyEvent, tags
from runwatch.api.ws import protocol_js
from runwatch.api.ws.protocol import CLIENT_TYPES, AnyClientMessage, parse_client_message
from tests.conftest import ROOT


def _labels(text: str, family: str, label: str) -> set[str]:
    (found,) = [f for f in text_string_to_metric_families(text) if f.name == family]
    return {s.labels[label] for s in found.samples if s.name.endswith("_total")}


def test_tags_are_read_from_the_union_in_its_order():
    assert tags(AnyEvent)[0] == "run.queued" and tags(AnyEvent)[-1] == "run.finished"
    assert len(tags(AnyEvent)) == len(typing.get_args(AnyEvent))
    assert set(CLIENT_TYPES) == {m.__struct_config__.tag for m in typing.get_args(AnyClientMessage)}


async def test_every_event_tag_and_client_message_type_has_its_series_at_start(make_server):
    srv = make_server()
    async with srv.client() as c:
        text = (await c.get("/metrics")).text
    assert _labels(text, "runwatch_bus_events_published", "type") == set(tags(AnyEvent))
    assert _labels(text, "runwatch_ws_messages_received", "type") == {*tags(AnyClientMessage), "invalid"}


def test_a_client_message_of_every_type_is_known_to_the_decoder():
    for kind in CLIENT_TYPES:
        try:
            parse_client_message(f'{{"type": "{kind}"}}'.encode())
        except Exception as exc:  # a known type with fields missing is told so, not "unknown type"
            assert "unknown message type" not in str(exc), kind


def test_the_dashboards_protocol_module_is_generated_from_the_code():
    committed = (ROOT / "dashboard" / "js" / "protocol.js").read_text()
    assert committed == protocol_js.build(), "run: python -m runwatch.api.ws.protocol_js > dashboard/js/protocol.js"


def test_the_dashboard_reads_close_codes_from_the_protocol_module_not_restated():
    for script in (ROOT / "dashboard" / "js").glob("*.js"):
        if script.name != "protocol.js":
            code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("//"))
            assert not re.search(r"\b(4401|4403|1007|1009|1013)\b", code), f"{script.name} restates a close code"


async def test_hello_tells_the_close_codes_that_end_reconnecting_from_agents_errors(make_server):
    srv = make_server()
    w = await srv.watcher()
    hello = await w.wait_for(lambda m: m["type"] == "hello")
    await w.close()
    assert hello["close_codes"] == {"final": sorted(FINAL), "log_in_again": sorted(LOG_IN_AGAIN)}


def test_the_protocol_docs_hello_shows_the_close_codes_the_server_sends():
    text = (ROOT / "docs" / "protocol.md").read_text()
    example = re.search(r'^(\{"type":"hello".*\})$', text, re.MULTILINE)
    assert example, "docs/protocol.md has no hello example"
    assert json.loads(example[1])["close_codes"] == {"final": sorted(FINAL), "log_in_again": sorted(LOG_IN_AGAIN)}


def test_the_dashboards_event_types_are_generated_with_every_field_the_server_sends():
    """The typedefs the dashboard's type check reads name each event's every field (a renamed or
    dropped field is a type error in the modules that use it)."""
    generated = protocol_js.build()
    for event in typing.get_args(AnyEvent):
        typedef = re.search(rf"@typedef {{object}} {event.__name__}\n((?: \* @property .*\n)+)", generated)
        assert typedef, f"no typedef of {event.__name__}"
        fields = set(re.findall(r"@property \{.*\} \[?(\w+)\]?$", typedef[1], re.MULTILINE))
        assert fields == {"type", *event.__struct_fields__}, event.__name__
