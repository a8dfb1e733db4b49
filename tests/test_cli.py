"""The command line: --help everywhere, clear errors, `run` follows a run to its end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import free_port


def runwatch(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runwatch.api.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.parametrize("command", [[], ["serve"], ["run"], ["agents"]])
def test_every_command_has_help(command):
    result = runwatch(*command, "--help")
    assert result.returncode == 0 and "usage: runwatch" in result.stdout


def test_serve_help_lists_every_environment_variable():
    out = runwatch("serve", "--help").stdout
    assert "OPENAI_BASE_URL" in out and "RUNWATCH_COALESCE_MS" in out and "RUNWATCH_WS_MAX_LAG" in out


def test_a_bad_setting_says_what_is_wrong(tmp_path):
    result = runwatch("serve", "--data-dir", str(tmp_path), env={"RUNWATCH_MAX_RUNNING": "many", "PATH": ""})
    assert result.returncode == 2 and "max_running must be int" in result.stderr


def test_a_port_in_use_says_what_to_do(server, tmp_path):
    result = runwatch("serve", "--port", str(server.port), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "already in use" in result.stderr and "--port" in result.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--port", "99999"], "port must be between 1 and 65535"),
        (["--host", "10.255.255.1"], "10.255.255.1 is not an address of this machine; pass --host"),
        (["--data-dir", "/proc/nope"], "cannot use '/proc/nope' as the data folder"),
    ],
    ids=["port-out-of-range", "host-not-here", "data-dir-not-creatable"],
)
def test_a_setting_serve_cannot_use_is_one_line_that_says_what_to_do(flags, says, tmp_path):
    # Binding to an address this machine does not have fails locally; nothing is sent anywhere.
    result = runwatch("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), *flags)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("runwatch: ") and says in result.stderr, result.stderr
    assert "pass --" in result.stderr


def test_run_follows_a_run_to_its_end(server):
    result = runwatch("run", "demo", "what is 3 * 4?", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert "→ calculator" in result.stderr and "[succeeded]" in result.stderr
    assert "12" in result.stdout


def test_run_against_no_server_explains(tmp_path):
    result = runwatch("run", "demo", "hi", "--url", "http://127.0.0.1:9")
    assert result.returncode == 2 and "is `runwatch serve` running?" in result.stderr


def test_agents_lists_them(server):
    result = runwatch("agents", "--url", server.url)
    assert result.returncode == 0 and result.stdout.startswith("demo")
