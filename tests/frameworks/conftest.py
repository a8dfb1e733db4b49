"""Fixtures of the framework adapters' tests: the client's (an agent key of a fresh tenant on the
shared server, and the sync and async clients holding it).

The OpenAI Agents SDK's package is called ``agents``, as is this checkout's runtime folder
(runwatch.agents' source): ``python -m pytest`` puts the checkout's root on ``sys.path`` first, where
``import agents`` would find the folder. The SDK is imported here, once, from where pip installed it,
before any test module imports it; runwatch itself always imports ``runwatch.agents``.
"""

from __future__ import annotations

import importlib
import sys

from tests.client.conftest import arw, key, rw, tenant
from tests.conftest import ROOT

__all__ = ["arw", "key", "rw", "tenant"]


def _import_the_agents_sdk() -> None:
    checkout = {str(ROOT), str(ROOT.resolve()), "", "."}
    kept = sys.path[:]
    sys.path[:] = [p for p in kept if p not in checkout]
    try:
        if "agents" in sys.modules and not hasattr(sys.modules["agents"], "Runner"):
            del sys.modules["agents"]
        importlib.import_module("agents")
    finally:
        sys.path[:] = kept


_import_the_agents_sdk()
