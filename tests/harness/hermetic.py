"""Every test process runs as a stranger to the user who started pytest.

Its own HOME and XDG folders, a working directory outside the checkout, and none of the shell's
runwatch or OpenAI settings: what a user leaves behind — ``./runwatch-data/admin.key`` from the
README's first command, a port's key in ``~/.local/share/runwatch/servers``, ``RUNWATCH_TOKEN`` or
``OPENAI_API_KEY`` exported — changes no result, and no test writes into the user's home or the
checkout. Server and CLI subprocesses inherit this environment; in-process code reads it too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: What the shell may set that runwatch (or the openai SDK) would read.
SCRUBBED = ("RUNWATCH_", "OPENAI_")
#: The test harness's own settings, kept: where the shared PostgreSQL and Redis are, which Chromium.
HARNESS = ("RUNWATCH_TEST_", "RUNWATCH_CHROMIUM")
#: The per-user folders of the XDG base directory spec (the system-wide XDG_*_DIRS stay).
XDG = {
    "XDG_DATA_HOME": ".local/share",
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}


def _package_managers(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The user's pip and npm caches and configuration, kept where they are: the packaging test
    installs dependencies with pip and the accessibility tests run ``npm ci``, which must work as
    they do for this user (an index mirror, offline from the cache)."""
    home = Path(environ.get("HOME") or Path.home())
    cache = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    kept = {"PIP_CACHE_DIR": str(cache / "pip"), "npm_config_cache": str(home / ".npm")}
    pip_conf = next((p for p in (config / "pip" / "pip.conf", home / ".pip" / "pip.conf") if p.is_file()), None)
    if pip_conf is not None:
        kept["PIP_CONFIG_FILE"] = str(pip_conf)
    if (home / ".npmrc").is_file():
        kept["npm_config_userconfig"] = str(home / ".npmrc")
    return {k: v for k, v in kept.items() if k not in environ}


PREFIX = "runwatch-tests-"


def _sweep(tmp: Path) -> None:
    """Remove the folders of sessions killed before they could (their pid no longer runs)."""
    for folder in tmp.glob(PREFIX + "*"):
        try:
            pid = int((folder / "pid").read_text())
        except (OSError, ValueError):
            continue  # being made, or not a session's
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # another user's session, running


class Hermetic:
    """``enter()`` points this process at a new temporary HOME (and XDG folders and working directory
    inside it) and scrubs the environment; ``leave()`` puts everything back and removes the folder."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._saved_env: dict[str, str] = {}
        self._saved_cwd = ""

    @property
    def home(self) -> Path:
        assert self.folder is not None, "enter() first"
        return self.folder / "home"

    @property
    def work(self) -> Path:
        """The tests' working directory: ``./runwatch-data`` and every other relative path land here."""
        assert self.folder is not None, "enter() first"
        return self.folder / "work"

    def enter(self) -> None:
        self._saved_env = dict(os.environ)
        self._saved_cwd = os.getcwd()
        _sweep(Path(tempfile.gettempdir()))
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.folder / "pid").write_text(str(os.getpid()))
        kept = _package_managers(os.environ)
        for name in list(os.environ):
            if name.startswith(SCRUBBED) and not name.startswith(HARNESS):
                del os.environ[name]
        os.environ.update(kept)
        os.environ["HOME"] = str(self.home)
        for name, under in XDG.items():
            os.environ[name] = str(self.home / under)
            (self.home / under).mkdir(parents=True, exist_ok=True)
        self.work.mkdir()
        os.chdir(self.work)

    def leave(self) -> None:
        if self.folder is None:
            return
        os.chdir(self._saved_cwd)
        os.environ.clear()
        os.environ.update(self._saved_env)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


#: The one this test session runs in (tests/conftest.py enters it when pytest starts).
SESSION = Hermetic()
