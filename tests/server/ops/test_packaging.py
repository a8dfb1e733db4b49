"""One installable package: the wheel installs beside the OpenAI Agents SDK and serves the dashboard.

The slow test builds a wheel from exactly the files ``ops/Dockerfile`` copies, installs it (not
editable) into a fresh virtual environment together with ``openai-agents`` (import name ``agents``),
and runs ``runwatch serve`` from there, outside the repository. It needs the package index (or
pip's cache) for the dependencies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from tests.conftest import ROOT, Server

DASHBOARD = ROOT / "dashboard"


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _dockerfile_sources() -> list[str]:
    """What ``ops/Dockerfile`` copies from the build context (the repository root)."""
    sources: list[str] = []
    for line in (ROOT / "ops" / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY":
            sources += words[1:-1]
    return sources


def _run(*args: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_every_package_folder_under_agents_and_api_is_listed_in_pyproject():
    tool = _setuptools()
    folders = {name: ROOT / path for name, path in tool["package-dir"].items()}
    found = {
        ".".join((name, *init.parent.relative_to(folder).parts))
        for name, folder in folders.items()
        for init in folder.rglob("__init__.py")
    }
    assert found - set(tool["packages"]) == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert {"runwatch.agents", "runwatch.api"} <= found
    for package in tool["packages"]:  # and every listed package has its folder
        top = next(name for name in folders if package == name or package.startswith(name + "."))
        assert folders[top].joinpath(*package[len(top) :].split(".")[1:]).is_dir(), package


def test_the_wheel_installs_beside_the_openai_agents_sdk_and_serves_the_dashboard(tmp_path):
    source = tmp_path / "source"
    for name in _dockerfile_sources():
        src = ROOT / name
        assert src.exists(), f"ops/Dockerfile copies {name}, which does not exist"
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(src, source / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", tmp_path / "wheels", source, cwd=elsewhere)
    (wheel,) = (tmp_path / "wheels").glob("runwatch-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=elsewhere)
    python, runwatch = venv / "bin" / "python", venv / "bin" / "runwatch"
    _run(python, "-m", "pip", "install", "--no-compile", "--quiet", wheel, "openai-agents", cwd=elsewhere)

    probe = (
        "import json, agents, runwatch.agents, runwatch.api\n"
        "from importlib.metadata import distribution\n"
        "print(json.dumps({'sdk': agents.__file__, 'agent': agents.Agent.__module__,"
        " 'runner': hasattr(agents, 'Runner'), 'dist': distribution('openai-agents').metadata['Name'],"
        " 'runwatch': runwatch.agents.__file__, 'api': runwatch.api.__file__}))"
    )
    found = json.loads(_run(python, "-c", probe, cwd=elsewhere))
    site = str(venv / "lib")
    assert found["sdk"].startswith(site) and found["sdk"].endswith("/agents/__init__.py")
    assert found["agent"].startswith("agents.") and found["runner"] and found["dist"] == "openai-agents"
    assert found["runwatch"].startswith(site) and found["api"].startswith(site)

    server = Server(tmp_path / "data", program=[str(runwatch)], cwd=elsewhere).start()
    try:
        for path, name, kind in (
            ("/", "index.html", "text/html"),
            ("/app.css", "app.css", "text/css"),
            ("/js/main.js", "js/main.js", "javascript"),
        ):
            r = httpx.get(server.url + path, timeout=10)
            assert r.status_code == 200 and kind in r.headers["content-type"], (path, r.status_code)
            assert r.content == (DASHBOARD / name).read_bytes(), path
        health = httpx.get(server.url + "/api/health", timeout=10, headers=server.auth).json()
        assert health["status"] == "ok" and health["offline"] is True
    finally:
        server.stop()
