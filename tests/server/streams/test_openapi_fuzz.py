"""schemathesis against a live server's OpenAPI schema: no 5xx, and every answer is one the schema documents."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

#: Requests a schema-valid request may still be refused with, per route, for reasons an OpenAPI schema
#: cannot state. Everything else a valid request gets must be a 2xx (or 404/409/429, schemathesis's defaults).
CONFIG = """
[[operations]]
# Agent names are the server's configuration (422 unknown_agent), and the body refuses unknown fields
# (400 bad_request): Litestar's schema for a msgspec Struct cannot say additionalProperties: false.
include-name = "POST /api/runs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "422", "429"]

[[operations]]
# As for runs: a new key's body refuses unknown fields (400 bad_request).
include-name = "POST /api/keys"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "429"]

[[operations]]
# A credential the schema allows may still be one the server does not know (401 unauthenticated), and
# the body refuses unknown fields (400).
include-name = "POST /api/login"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "429"]

[[operations]]
# An external run's registration: a blank input (400 empty_input) or an agent name of the server's own
# (400 bad_request) are the service's checks, and the body refuses unknown fields (400).
include-name = "POST /api/ingest/runs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "429"]

[[operations]]
# An external run's batch: what JSON Schema cannot say — n going up by one, run.finished last, sizes in
# bytes of JSON (422 invalid_event, 413 field_too_large), integers written as integers (4.0 is one to
# JSON Schema: 400) — and the run's own state: unknown or ended (404, 409), n past a gap (409).
include-name = "POST /api/ingest/runs/{run_id}/events"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "413", "422", "429"]

[[operations]]
# Many runs' batches: each run's part is checked as one run's batch, its refusal in the 200's results;
# the request as a whole is refused for a run twice or an integer written 4.0 (400), too many events
# in all (413).
include-name = "POST /api/ingest/events"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "413", "429"]

[[operations]]
# A long poll waits up to 25 s for a control that nobody sends here: asked not to wait.
include-name = "GET /api/ingest/runs/{run_id}/controls"
parameters = { wait = 0 }

[[operations]]
# A resume position past the run's head (400 after_beyond_head) depends on how far the run got. Its
# run ids are not taken from other answers: an external run's stream (POST /api/ingest/runs) lasts
# as long as its agent's lease, not the second or two of a demo run.
include-path-regex = "^/api/runs/\\\\{run_id\\\\}/stream$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "429"]
phases.coverage.extra-data-sources.responses = false
phases.fuzzing.extra-data-sources.responses = false
"""


def test_schemathesis_finds_no_server_errors_and_no_undocumented_answers(make_server, tmp_path: Path):
    # Nothing is excluded: the offline model's streams end in a second or two (demo text at 40 tokens/s).
    srv = make_server()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{srv.url}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "20",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--header",
        f"Authorization: Bearer {srv.token}",  # the local admin: every route is open to it
    ]
    started = time.monotonic()
    # cwd: schemathesis keeps a cache in .schemathesis/ under its working directory.
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Tested: 29" in done.stdout, done.stdout[-3000:]
    assert not [line for line in srv.log_lines() if line.get("event") == "http.failed"]
    print(f"schemathesis: {elapsed:.1f} s")
