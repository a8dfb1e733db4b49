"""The suite is hermetic: what a user of this checkout leaves behind changes no test's result, and
tests leave nothing in the user's home or the checkout (tests/harness/hermetic.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.harness.hermetic import HARNESS, PREFIX, SCRUBBED, SESSION, XDG, _sweep

#: The CLI tests whose results a user's leftovers used to change (a stale admin key sent to the
#: test's server, keys written to the user's database), and their neighbours.
CLI_TESTS = [
    "test_run_follows_a_run_to_its_end",
    "test_client_commands_find_the_server_from_the_environment",
    "test_agents_lists_them",
    "test_client_commands_take_a_token_and_say_what_to_do_without_one",
    "test_keys_are_created_shown_once_listed_and_revoked",
]

PLANTED_KEY = "rw_left-behind-by-the-readme-s-first-command\n"


#: What the checkout's own tools write (git, the virtual environment, caches, screenshots).
TOOLS = (".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", "artifacts")


def _paths(folder: Path, skip: tuple[str, ...] = ()) -> set[str]:
    """Every file and folder under ``folder``, relative to it, not descending into ``skip``."""
    found = set()
    for parent, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        found |= {str(Path(parent, name).relative_to(folder)) for name in dirs + names}
    return found


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path → its text)."""
    return {p: (folder / p).read_text() for p in _paths(folder) if (folder / p).is_file()} | {
        p: "(folder)" for p in _paths(folder) if (folder / p).is_dir()
    }


def test_tests_run_with_a_home_a_folder_and_an_environment_of_their_own():
    assert SESSION.folder is not None and Path.home() == SESSION.home
    assert Path.cwd() == SESSION.work and not Path.cwd().is_relative_to(ROOT)
    assert all(os.environ[name] == str(SESSION.home / under) for name, under in XDG.items())
    leaked = [n for n in os.environ if n.startswith(SCRUBBED) and not n.startswith(HARNESS)]
    assert leaked == []
    probe = "import json, os; print(json.dumps({'home': os.path.expanduser('~'), 'cwd': os.getcwd()}))"
    child = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout)
    assert child == {"home": str(SESSION.home), "cwd": str(SESSION.work)}  # and so does every subprocess


@pytest.mark.timeout(300)  # a pytest session of its own: a server and a dozen CLI processes
def test_what_a_user_left_behind_changes_no_cli_test_result(tmp_path):
    """The CLI tests, run by pytest from a folder where ``runwatch serve`` left its admin key, with a
    port's key in the user's home and runwatch settings exported, pass, and touch none of it."""
    checkout = tmp_path / "checkout"  # where the user ran `runwatch serve`, then pytest
    (checkout / "runwatch-data").mkdir(parents=True)
    (checkout / "runwatch-data" / "admin.key").write_text(PLANTED_KEY)
    home = tmp_path / "user"
    (home / ".local/share/runwatch/servers").mkdir(parents=True)
    (home / ".local/share/runwatch/servers/8000.key").write_text(PLANTED_KEY)
    env = {k: v for k, v in os.environ.items() if k not in XDG} | {
        "HOME": str(home),
        "RUNWATCH_TOKEN": PLANTED_KEY.strip(),
        "RUNWATCH_URL": "http://127.0.0.1:9",
        "RUNWATCH_DATA_DIR": str(checkout / "runwatch-data"),
        "RUNWATCH_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing",
        "OPENAI_API_KEY": "sk-left-in-the-shell",
    }
    left = {"checkout": _files(checkout), "home": _files(home)}
    repository = _paths(ROOT, skip=TOOLS)
    tests = [f"{ROOT / 'tests' / 'server' / 'ops' / 'test_cli.py'}::{name}" for name in CLI_TESTS]
    pytest = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    result = subprocess.run(
        [*pytest, "--basetemp", str(tmp_path / "pytest"), *tests],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0 and f"{len(CLI_TESTS)} passed" in result.stdout, result.stdout[-3000:]
    assert {"checkout": _files(checkout), "home": _files(home)} == left  # nothing read changed, nothing new
    assert _paths(ROOT, skip=TOOLS) == repository  # and nothing left in the checkout


def test_the_folder_of_a_killed_session_is_removed_when_the_next_one_starts(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folders = {name: tmp_path / f"{PREFIX}{name}" for name in ("killed", "running", "starting")}
    for folder in folders.values():
        (folder / "home").mkdir(parents=True)
    (folders["killed"] / "pid").write_text(ended.stdout.strip())  # that process has exited
    (folders["running"] / "pid").write_text(str(os.getpid()))
    _sweep(tmp_path)
    assert not folders["killed"].exists() and folders["running"].exists() and folders["starting"].exists()
