"""Accessibility checks: axe-core (npm, pinned in ``tests/axe/package.json``) run inside real Chromium.

``serious_violations(page)`` injects axe into the page and returns its serious and critical
violations, each as ``rule: target, …`` lines ready for an assertion message. The first call
installs axe-core with ``npm ci`` when ``tests/axe/node_modules`` is missing.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

from playwright.sync_api import Page

AXE_DIR = Path(__file__).resolve().parent.parent / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"

#: The impacts that fail a test (axe's four are minor, moderate, serious, critical).
FAILING = ("serious", "critical")


def axe_script() -> Path:
    """The path of axe.min.js, installing it first (once, under a lock) if needed."""
    if not AXE_JS.exists():
        with open(AXE_DIR / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not AXE_JS.exists():
                done = subprocess.run(
                    ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"npm ci in {AXE_DIR} failed (is Node.js installed?): {done.stderr[-2000:]}")
    return AXE_JS


def serious_violations(page: Page, *, exclude: list[str] | None = None) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.x A and AA rules)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script()))
    results = page.evaluate(
        """async (exclude) => {
            const context = exclude.length ? { exclude: exclude.map((s) => [s]) } : document;
            const r = await axe.run(context, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
                resultTypes: ["violations"],
            });
            return r.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }""",
        exclude or [],
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {', '.join(v['targets'])}" for v in results if v["impact"] in FAILING
    ]
