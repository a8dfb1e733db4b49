"""The control channel speaks tagged structs, decoded in one place; what is not one is dropped and logged."""

from __future__ import annotations

import pytest

from runwatch.agents.cluster.channel import QUEUED, Answer, Ask, CancelRun, Queued, decode, encode
from runwatch.agents.identity import Actor
from runwatch.agents.runs.inbox import Decision, Steer

MESSAGES = [
    Queued(),
    CancelRun(run="1a2b3c", by=Actor(id="key:k_1", name="ann")),
    CancelRun(run="1a2b3c"),
    Ask(req="r1", sender="i0", run="1a2b3c", approval="a1", decision=Decision(approve=False, message="no")),
    Ask(req="r2", sender="i1", run="1a2b3c", steer=Steer(text="also check the logs", mode="queue")),
    Answer(req="r1", to="i0", code="already_decided", message="decided already"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_comes_back_as_it_was_sent(message):
    assert decode(encode(message)) == message


def test_the_queue_scripts_queued_bytes_are_a_queued_message():
    assert decode(QUEUED) == Queued()


@pytest.mark.parametrize("data", [b"queued", b"cancel 1a2b3c", b'ask {"req": "r"}', b'{"type": "reboot"}', b"\xff"])
def test_what_is_not_a_message_is_none(data):
    assert decode(data) is None
