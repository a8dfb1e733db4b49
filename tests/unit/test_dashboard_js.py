"""The dashboard's JavaScript, checked by the README's test command: node's own tests of its pure
modules (``tests/unit/js/*.test.mjs``), and TypeScript's check of its JSDoc types.

The dashboard has no build step: its modules are served as written, so the type check reads them
as they are (``--allowJs --checkJs``). TypeScript is pinned in ``tests/axe/package-lock.json``
beside axe-core; ``.ci/run`` installs both, and a first run here installs them when missing.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT

JS = ROOT / "dashboard" / "js"
NODE_TESTS = ROOT / "tests" / "unit" / "js"
NPM_DIR = ROOT / "tests" / "axe"
TSC = NPM_DIR / "node_modules" / "typescript" / "bin" / "tsc"

#: The modules that hold the dashboard's model (no DOM): checked with ``--strict`` too.
STRICT = [
    "protocol.js",
    "close-terms.js",
    "connection.js",
    "markdown.js",
    "run-figures.js",
    "run-model.js",
    "runs-query.js",
]

#: How the browser runs them: ES modules of ES2023, with the DOM.
OPTIONS = [
    "--noEmit",
    "--allowJs",
    "--checkJs",
    "--skipLibCheck",
    "--pretty",
    "false",
    "--target",
    "es2023",
    "--module",
    "es2022",
    "--moduleResolution",
    "bundler",
    "--lib",
    "es2023,dom,dom.iterable",
]


def _tsc() -> Path:
    """TypeScript's compiler, installed first (once, under axe's install lock) if needed."""
    if not TSC.exists():
        with open(NPM_DIR / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not TSC.exists():
                done = subprocess.run(
                    ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert done.returncode == 0, f"npm ci in {NPM_DIR} failed (Node.js installed?): {done.stderr[-2000:]}"
    return TSC


def _type_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(_tsc()), *OPTIONS, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_dashboards_pure_modules_pass_their_node_tests():
    # (the spec reporter ends with the failing tests and why, which the assertion shows)
    command = ["node", "--test", "--test-reporter=spec", str(NODE_TESTS.relative_to(ROOT)) + "/"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"node --test failed:\n{done.stdout[-12_000:]}\n{done.stderr[-2000:]}"
    ran = re.search(r"^\N{INFORMATION SOURCE} pass (\d+)$", done.stdout, re.MULTILINE)
    assert ran and int(ran[1]) > 0, f"node --test ran no test:\n{done.stdout[-2000:]}"


def test_every_dashboard_module_asks_for_its_type_check():
    unchecked = [m.name for m in sorted(JS.glob("*.js")) if m.read_text().splitlines()[:1] != ["// @ts-check"]]
    assert not unchecked, f"these modules do not start with // @ts-check: {unchecked}"


def test_the_dashboard_type_checks():
    done = _type_check(*(str(m.relative_to(ROOT)) for m in sorted(JS.glob("*.js"))))
    assert done.returncode == 0, f"tsc found errors:\n{done.stdout[-12_000:]}{done.stderr[-2000:]}"


def test_the_dashboards_model_modules_type_check_strictly():
    assert {m.name for m in JS.glob("*.js")} >= set(STRICT)
    done = _type_check("--strict", *(str((JS / name).relative_to(ROOT)) for name in STRICT))
    assert done.returncode == 0, f"tsc --strict found errors:\n{done.stdout[-12_000:]}{done.stderr[-2000:]}"
