"""runwatch.client imports none of the server's dependencies: an agent installs it beside its own."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = ("litestar", "uvicorn", "asyncpg", "redis", "openai", "structlog", "jsonschema", "jwt")

PROBE = f"""
import sys

BLOCKED = {SERVER_ONLY!r}


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("runwatch.client imported " + name)
        return None


sys.meta_path.insert(0, Refuse())
import runwatch.client
from runwatch.client import AsyncRunwatch, Runwatch

rw = Runwatch("http://127.0.0.1:9", "no-key")
rw.close()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("ok")
"""


def test_the_client_imports_and_starts_with_every_server_dependency_blocked():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
