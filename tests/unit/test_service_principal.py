"""Fail closed: every ``RunService`` method a transport calls takes the caller's principal as a
required keyword, so a transport that forgets it does not run instead of acting as somebody."""

from __future__ import annotations

import inspect

import pytest

from runwatch.agents.runs.service import RunService

#: Public methods that act for no caller: the runtime's recovery at start, and the runs feed's
#: filter (``tenant_of`` tells a connection's filter whose an event is; the filter holds the principal).
NOT_FOR_A_CALLER = {"recover", "tenant_of"}
FOR_A_CALLER = sorted(
    name
    for name, member in inspect.getmembers(RunService, inspect.iscoroutinefunction)
    if not name.startswith("_") and name not in NOT_FOR_A_CALLER
)


def test_the_service_has_the_methods_the_transports_call():
    assert {"start", "get", "list", "events", "cancel", "decide", "message", "resume"} <= set(FOR_A_CALLER)


@pytest.mark.parametrize("name", FOR_A_CALLER)
def test_a_call_without_a_principal_does_not_run(name):
    principal = inspect.signature(getattr(RunService, name)).parameters.get("principal")
    assert principal is not None, f"RunService.{name} takes no principal"
    assert principal.default is inspect.Parameter.empty, f"RunService.{name} falls back to a principal"
    assert principal.kind is inspect.Parameter.KEYWORD_ONLY, f"RunService.{name}: principal by keyword only"
