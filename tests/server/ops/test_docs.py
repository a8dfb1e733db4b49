"""The documents describe the code: AsyncAPI is generated from it, protocol.md names every code."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from runwatch.agents.errors import HTTP_STATUS, ResyncReason
from runwatch.agents.events import AnyEvent
from runwatch.api.ws import asyncapi
from runwatch.api.ws.protocol import CLIENT_TYPES, CloseCode, ErrorCode
from tests.conftest import ROOT, Server

DOCS = ROOT / "docs"


def test_the_committed_asyncapi_document_matches_the_code():
    committed = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert committed == asyncapi.build(), "run: python -m runwatch.api.ws.asyncapi > docs/asyncapi.yaml"


def test_the_asyncapi_document_does_not_depend_on_how_msgspec_writes_docstrings_and_optional_fields():
    # msgspec 0.18 keeps a docstring's indentation in a description and puts null first in anyOf; 0.23 does neither.
    null, actor = {"type": "null"}, {"$ref": "#/components/schemas/Actor"}
    old = {"description": "First line.\n    second line.", "properties": {"by": {"anyOf": [null, actor]}}}
    new = {"description": "First line.\nsecond line.", "properties": {"by": {"anyOf": [actor, null]}}}
    assert asyncapi._canonical(old) == asyncapi._canonical(new) == new
    assert yaml.safe_load(asyncapi.render()) == asyncapi.build()  # what the committed copy is made with


def test_protocol_md_documents_every_message_event_and_code():
    text = (DOCS / "protocol.md").read_text()
    names = [*CLIENT_TYPES, *(e.__struct_config__.tag for e in AnyEvent.__args__), *ResyncReason]
    missing = [n for n in names if f"`{n}`" not in text]
    missing += [c.value for c in ErrorCode if f"| `{c.value}`".ljust(27) + f"| {HTTP_STATUS[c]} |" not in text]
    missing += [str(int(c)) for c in CloseCode if f"| {int(c)} |" not in text]
    assert not missing, f"docs/protocol.md does not mention {missing}"


def test_the_readme_agent_example_runs_as_written(tmp_path):
    """``my_agents.py`` from the README, served by the README's command, in the folder that holds it."""
    readme = (ROOT / "README.md").read_text()
    module = re.search(r"```python\n(# my_agents\.py\n.*?)```", readme, re.DOTALL)
    assert module, "the README's my_agents.py example is gone"
    (tmp_path / "my_agents.py").write_text(module[1])
    command = next(line for line in readme.splitlines() if "RUNWATCH_AGENTS=my_agents runwatch serve" in line)
    words = shlex.split(command, comments=True)
    env = dict(word.split("=", 1) for word in words if "=" in word)
    assert [word for word in words if "=" not in word] == ["runwatch", "serve"]
    installed = Path(sys.executable).with_name("runwatch")
    runwatch = str(installed) if installed.exists() else shutil.which("runwatch")
    assert runwatch, "runwatch is not installed (pip install -e .)"
    server = Server(tmp_path / "data", env, program=[runwatch], cwd=tmp_path).start()
    try:
        agents = {a["name"]: a for a in httpx.get(server.url + "/api/agents", timeout=10, headers=server.auth).json()}
        assert agents["analyst"]["tools"] == ["fetch_report"]
        try_it = next(line for line in readme.splitlines() if "runwatch run analyst 'call fetch_report" in line)
        args = shlex.split(re.search(r"`(runwatch run analyst [^`]+)`", try_it)[1])[1:]
        # Another terminal of the same user: it finds the server's admin key by the server's port.
        env = {**os.environ, "XDG_DATA_HOME": server.env["XDG_DATA_HOME"]}
        result = subprocess.run(
            [runwatch, *args, "--url", server.url], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
        )
        assert result.returncode == 0 and '"revenue": 1234000' in result.stderr, result.stderr
    finally:
        server.stop()


def test_the_readme_approval_script_approves_a_deploy(server, tmp_path):
    """``approve.py`` from the README's "Humans in the loop", run as written against a server."""
    readme = (ROOT / "README.md").read_text()
    script = re.search(r"```python\n(# approve\.py.*?)```", readme, re.DOTALL)
    assert script, "the README's approve.py example is gone"
    (tmp_path / "approve.py").write_text(script[1])
    env = {**os.environ, "RUNWATCH_URL": server.url, "RUNWATCH_TOKEN": server.token}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "approve.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "approving deploy {'version': '2.4.1', 'environment': 'staging'}" in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("run succeeded"), result.stdout


def test_the_readme_is_a_newcomers_path_of_at_most_250_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move reference material to docs/"


#: The pages whose relative links must lead somewhere: the README, docs/ and the benchmarks' own.
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]


def _unfenced(text: str) -> str:
    """Markdown without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def _anchors(page: Path) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces made hyphens."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _unfenced(page.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        again = 0
        while (f"{slug}-{again}" if again else slug) in anchors:  # a repeated heading: -1, -2 …
            again += 1
        anchors.add(f"{slug}-{again}" if again else slug)
    return anchors


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file_and_heading_that_exist():
    broken = []
    for page in PAGES:
        text = re.sub(r"`[^`\n]*`", "", _unfenced(page.read_text()))  # code is not a link
        targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"""(?:src|href)="([^"]+)\"""", text)
        for target in targets:
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
