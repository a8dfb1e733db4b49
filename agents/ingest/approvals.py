"""An external run's approvals: those its agent asked for and nobody decided yet, and those decided.

The first decision wins, as for runwatch's own runs (``agents/runs/inbox.py``): ``check`` and
``resolve`` run under the run's lock, so of two decisions (or a decision and the expiry) exactly
one takes effect and the others get ``AlreadyDecided``. Edited arguments must be a JSON object,
and satisfy the JSON Schema the agent sent with ``approval.requested`` when it sent one.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import msgspec

from runwatch.agents.errors import AlreadyDecided, InvalidArguments, UnknownApproval
from runwatch.agents.events import ApprovalRequested, ApprovalResolved
from runwatch.agents.runs.inbox import Decision

#: Approvals a run remembers having decided (to answer ``already_decided``, not ``unknown``).
MAX_DECIDED = 1_000


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a JSON Schema arguments can be checked against, or None."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(the top)"
        return f"its schema is not a valid JSON Schema at {where}: {exc.message}"
    return None


def _arguments_problem(schema: dict[str, Any], arguments: Any) -> str | None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"the arguments do not satisfy the tool's schema{f' at {where}' if where else ''}: {error.message}"


class Approvals:
    __slots__ = ("_decided", "calls", "open")

    def __init__(self) -> None:
        #: Open approvals by id: what the agent asked (with its schema, if any).
        self.open: dict[str, ApprovalRequested] = {}
        #: Each approval's call id, open or decided (controls carry it).
        self.calls: dict[str, str] = {}
        self._decided: dict[str, str] = {}

    def known(self, approval_id: str) -> bool:
        """The run has (or had) an approval of that id."""
        return approval_id in self.open or approval_id in self._decided

    def opened(self, request: ApprovalRequested) -> None:
        self.open[request.approval_id] = request
        self.calls[request.approval_id] = request.call_id

    def check(self, run_id: str, approval_id: str, decision: Decision) -> ApprovalRequested:
        """The open approval ``decision`` decides, its edited arguments checked. Raises
        ``UnknownApproval``, ``AlreadyDecided`` or ``InvalidArguments``."""
        request = self.open.get(approval_id)
        if request is None:
            if approval_id in self._decided:
                raise AlreadyDecided(f"approval {approval_id} of run {run_id} was already decided")
            raise UnknownApproval.of(run_id, approval_id)
        if decision.approve and decision.arguments is not msgspec.UNSET:
            if not isinstance(decision.arguments, dict):
                raise InvalidArguments("arguments must be a JSON object of the tool's parameters")
            if isinstance(request.schema, dict) and (problem := _arguments_problem(request.schema, decision.arguments)):
                raise InvalidArguments(problem)
        return request

    def resolve(self, run_id: str, approval_id: str, decision: Decision | None, message: str) -> ApprovalResolved:
        """Close the approval with ``decision`` (None: it expired; ``message`` is then the reason)
        and say so as ``approval.resolved``."""
        request = self.open.pop(approval_id)
        self._remember(approval_id, "expired" if decision is None else "approved" if decision.approve else "denied")
        if decision is None:
            return ApprovalResolved(
                run_id=run_id,
                approval_id=approval_id,
                decision="expired",
                arguments=request.arguments,
                message=message,
                waiting=bool(self.open),
            )
        edited = decision.arguments is not msgspec.UNSET
        return ApprovalResolved(
            run_id=run_id,
            approval_id=approval_id,
            decision="approved" if decision.approve else "denied",
            by=decision.by,
            arguments=decision.arguments if edited and decision.approve else request.arguments,
            message=None if decision.approve else (decision.message or "the user denied this call"),
            waiting=bool(self.open),
        )

    def resolved(self, event: ApprovalResolved) -> None:
        """An ``approval.resolved`` read back from the store (rebuilding the run)."""
        self.open.pop(event.approval_id, None)
        self._remember(event.approval_id, event.decision)

    def expired(self, now: float) -> list[str]:
        """The open approvals whose time ran out at ``now`` (epoch seconds)."""
        return [a for a, request in self.open.items() if request.expires_at <= now]

    def _remember(self, approval_id: str, decision: str) -> None:
        if len(self._decided) >= MAX_DECIDED:
            oldest = next(iter(self._decided))
            del self._decided[oldest]
            self.calls.pop(oldest, None)
        self._decided[approval_id] = decision
