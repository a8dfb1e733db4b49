"""The adapters are optional: importing runwatch.client or an adapter's package imports no framework;
using an adapter without its framework says which extra to install, and a folder that shadows the
framework's package (the Agents SDK's is called ``agents``) is named, not mistaken for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FRAMEWORKS = ("agents", "langchain", "langchain_core", "langgraph")

BLOCK = f"""
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FRAMEWORKS!r}:
            raise ImportError("no " + name)
        return None

sys.meta_path.insert(0, Refuse())
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_importing_the_adapters_packages_imports_no_framework(tmp_path: Path):
    code = f"""
import sys
import runwatch.client, runwatch.client.openai_agents, runwatch.client.langchain
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FRAMEWORKS!r})
assert not loaded, loaded
print("ok")
"""
    result = _python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_an_adapters_first_used_name_imports_its_framework(tmp_path: Path):
    code = """
import sys
import runwatch.client.openai_agents as adapter
assert "agents" not in sys.modules, "imported the SDK up front"
adapter.RunwatchProcessor
assert hasattr(sys.modules["agents"], "Runner"), "the SDK on first use"
print("ok")
"""
    result = _python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_an_adapter_without_its_framework_names_the_extra_to_install(tmp_path: Path):
    for module, name, extra in (
        ("openai_agents", "RunwatchProcessor", "openai-agents"),
        ("langchain", "RunwatchCallbackHandler", "langchain"),
    ):
        code = (
            BLOCK
            + f"""
from runwatch.client.optional import MissingFramework
try:
    from runwatch.client.{module} import {name}
except MissingFramework as e:
    print(e)
"""
        )
        result = _python(code, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f'pip install "runwatch[{extra}]"' in result.stdout, result.stdout


def test_a_folder_named_agents_is_not_taken_for_the_agents_sdk(tmp_path: Path):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "__init__.py").write_text("")
    code = """
from runwatch.client.optional import MissingFramework
try:
    from runwatch.client.openai_agents import run_streamed
except MissingFramework as e:
    print(e)
"""
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(tmp_path / "agents") in result.stdout and "is not the framework" in result.stdout, result.stdout
