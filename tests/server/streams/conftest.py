"""In this room ``server`` is served from the test process (tests/harness/inprocess.py): these tests only
talk HTTP and WebSocket to one server on default settings, started once for the room (so that no
other room's test shares this process with it). A test that signals, restarts or reads the log of a
server starts one of its own with ``make_server``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Server, serve_in_process


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_in_process(tmp_path_factory)
