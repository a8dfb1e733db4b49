"""``runwatch.client.openai_agents`` imports the Agents SDK only when one of its names is first used,
and a process that never uses them never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
import runwatch.client.openai_agents as adapter
assert "agents" not in sys.modules, "imported the SDK up front"
adapter.RunwatchProcessor
assert hasattr(sys.modules["agents"], "Runner"), "the SDK on first use"
"""


def test_the_adapter_imports_the_sdk_on_first_use_only(tmp_path: Path):
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
