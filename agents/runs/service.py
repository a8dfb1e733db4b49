"""The run service: the one door between the transports (REST, WebSocket, SSE) and the runtime.

Start, cancel, get, list, read events and check where a subscription may start — each transport
calls these and turns a ``RunwatchError`` into its own kind of answer. Identity, tenants and
cross-instance routing plug in here, once.

Every method a transport calls takes the caller's ``principal`` as a required keyword: a
transport that forgets it does not run (a ``TypeError``), it never falls back to somebody. With
authentication off, the middleware supplies its principal (``identity.NOBODY``).

A run an agent elsewhere executes and reports (an *external* run: ``agents/ingest``) is read like
any other; what people do to it — cancel, decide, message — goes to its ``Reported`` part instead
of the supervisor, and reaches that agent as controls. An ``agent`` principal reads nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
import structlog

from runwatch.agents.bus.base import LIFECYCLE, Positions
from runwatch.agents.errors import (
    AfterBeyondHead,
    EmptyInput,
    Forbidden,
    InputTooLarge,
    RateLimited,
    ResyncReason,
    RunwatchError,
    ThreadBusy,
    UnknownRun,
    UnknownThread,
)
from runwatch.agents.events import Published, RunStatus, decode
from runwatch.agents.identity import Actor, Principal, Role
from runwatch.agents.runs.handle import RunHandle, new_run_id
from runwatch.agents.runs.inbox import Decision, Mode, Steer
from runwatch.agents.runs.limits import Limiter, MemoryLimiter
from runwatch.agents.runs.supervising import Supervising
from runwatch.agents.runs.threads import IfBusy
from runwatch.agents.store import RunPage, RunQuery, RunSummary, Store
from runwatch.agents.store.aggregates import Figures, InstanceLoad, Window

#: Runs whose tenant the runs feed's filter remembers (``tenant_of``); past this, it starts afresh.
TENANT_CACHE = 50_000

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a subscription starts. With ``resync`` set, the client's position is no good here: it
    must drop what it holds of the stream and subscribe again from ``after`` in ``epoch``."""

    after: int
    epoch: str
    resync: ResyncReason | None = None


class Reported(Protocol):
    """Runs that agents elsewhere execute and report (``agents/ingest``): people's cancels,
    decisions and messages reach those agents as controls. Each raises as ``Supervising``'s does,
    and ``NotSupported`` for a control the run's agent did not declare it takes."""

    async def cancel(self, run_id: str, by: Actor | None) -> RunStatus: ...

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision: ...

    async def message(self, run_id: str, steer: Steer) -> None: ...


class RunService:
    def __init__(
        self,
        *,
        bus: Positions,
        store: Store,
        supervisor: Supervising,
        max_input_bytes: int = 256 * 1024,
        limiter: Limiter | None = None,
        runs_per_minute: float = 60.0,
        tenant_max_active: int = 100,
        external: Reported | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.supervisor = supervisor
        self.max_input_bytes = max_input_bytes
        self.limiter: Limiter = limiter or MemoryLimiter()
        self.runs_per_minute = runs_per_minute
        self.tenant_max_active = tenant_max_active
        #: Where people's input to external runs goes (None: this process takes no external runs).
        self.external = external
        #: Called with the kind of limit (``runs_per_minute``, ``tenant_active``) each time one refuses.
        self.on_limited: list[Callable[[str], None]] = []
        self._tenants: dict[str, str] = {}

    # -- commands ---------------------------------------------------------------------------------

    async def start(
        self,
        agent: str,
        user_input: str,
        *,
        principal: Principal,
        thread: str | None = None,
        if_busy: IfBusy = "reject",
    ) -> RunHandle:
        """Admit a run for ``principal``'s tenant, in ``thread`` (a new one if None). Returns once
        its ``run.queued`` is durable, so it can be read at once.

        A thread with an active run: ``if_busy`` ``reject`` raises ``ThreadBusy``; ``queue`` admits
        the run to start once the active ones finish; ``interrupt`` also cancels them.

        Raises ``EmptyInput``, ``InputTooLarge``, ``UnknownAgent``, ``UnknownThread``,
        ``ThreadBusy``, ``RateLimited``, ``QueueFull``, ``ShuttingDown``.
        """
        self.supervisor.agent(agent)  # an unknown agent is the first thing to say
        self._check_text(user_input, "input", "say what the agent should do")
        tenant, active = principal.tenant, []
        if thread is not None:  # a thread stays its tenant's, whoever continues it (an admin may)
            tenant = (await self.thread(thread, principal=principal, limit=1))[0].tenant
            active = await self.store.thread_live(thread)
        if active and if_busy == "reject":
            raise ThreadBusy(
                f"thread {thread} has an active run ({active[0]}); wait for it, or start with "
                '"if_busy": "queue" (run after it) or "interrupt" (cancel it)'
            )
        run_id = new_run_id()
        await self._check_limits(principal, tenant, run_id)
        by = principal.attribution
        try:
            handle = await self.supervisor.start(
                agent, user_input, tenant=tenant, by=by, thread=thread or "", run_id=run_id
            )
        except BaseException:
            await self._unadmit(run_id)
            raise
        await self.store.flush()
        if if_busy == "interrupt":
            for earlier in active:
                try:
                    await self.supervisor.cancel(earlier, by)
                except RunwatchError as exc:  # it ended meanwhile, or cannot be reached: ours waits for it
                    log.info("thread.interrupt_skipped", run_id=earlier, reason=exc.code)
        return handle

    async def _unadmit(self, run_id: str) -> None:
        """A run admitted but not started: its place is the tenant's again (a no-op once its
        ``run.queued`` was written: its row counts instead). Failing, it frees itself in a minute."""
        try:
            await self.store.unadmit(run_id)
        except Exception as exc:
            log.warning("run.unadmit_failed", run_id=run_id, error=repr(exc))

    def _check_text(self, text: str, what: str, hint: str) -> None:
        if not text.strip():
            raise EmptyInput(f"{what} is empty: {hint}")
        size = len(text.encode())
        if size > self.max_input_bytes:
            raise InputTooLarge(
                f"{what} is {size} bytes; the limit is {self.max_input_bytes} bytes (RUNWATCH_MAX_INPUT_BYTES)"
            )

    async def thread(self, thread: str, *, principal: Principal, limit: int = 100) -> list[RunSummary]:
        """A thread's last ``limit`` runs, oldest first; ``UnknownThread`` if there is none that
        ``principal`` may see (the same answer for another tenant's: no existence oracle)."""
        runs = [r for r in await self.store.thread_runs(thread, limit) if principal.sees(r.tenant)] if thread else []
        if not runs:
            raise UnknownThread(f"no thread {thread!r}")
        return runs

    async def decide(self, run_id: str, approval_id: str, decision: Decision, *, principal: Principal) -> Decision:
        """Approve or deny an open approval of a run; the first decision wins.

        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``UnknownApproval``, ``AlreadyDecided``,
        ``InvalidArguments``, ``Unavailable``.
        """
        summary = await self.get(run_id, principal=principal)
        if decision.message is not None and not decision.message.strip():
            decision = msgspec.structs.replace(decision, message=None)  # (a blank reason is no reason)
        if decision.message is not None:
            self._check_text(decision.message, "the message", "say why, or leave it out")
        by = principal.attribution
        return await self._executes(summary).decide(run_id, approval_id, msgspec.structs.replace(decision, by=by))

    async def message(self, run_id: str, text: str, mode: Mode, *, principal: Principal) -> None:
        """Send a running run a message (``interrupt``: cut its current answer; ``queue``: after
        the current step). Raises ``UnknownRun``, ``RunAlreadyFinished``, ``NotStarted``,
        ``EmptyInput``, ``InputTooLarge``, ``RateLimited``, ``Unavailable``."""
        summary = await self.get(run_id, principal=principal)
        self._check_text(text, "the message", "say something to the agent")
        by = principal.attribution
        await self._executes(summary).message(run_id, Steer(text=text, mode=mode, by=by))

    def _executes(self, summary: RunSummary) -> Supervising | Reported:
        """Where people's input to the run goes: its agent elsewhere's controls, or the supervisor."""
        return self.external if summary.external and self.external is not None else self.supervisor

    async def admit(self, run_id: str, user_input: str, *, principal: Principal) -> None:
        """Admit a run that an agent elsewhere executes (``agents/ingest``) for ``principal``'s
        tenant: its input checked, its place taken in the rate and the tenant's quota, as ``start``
        does. Raises ``EmptyInput``, ``InputTooLarge``, ``RateLimited``; ``Store.unadmit`` gives the
        place back if the run is not published after all."""
        self._check_text(user_input, "input", "say what the agent was asked to do")
        await self._check_limits(principal, principal.tenant, run_id)

    async def _check_limits(self, principal: Principal, tenant: str, run_id: str) -> None:
        """The principal's start rate, then the tenant's quota, which admits ``run_id`` atomically
        (see ``Store.admit``): concurrent starts on any instance never pass it together."""
        if principal.source != "off":
            wait = await self.limiter.take_run(principal.id, self.runs_per_minute)
            if wait > 0:
                self._limited("runs_per_minute")
                raise RateLimited(
                    f"at most {self.runs_per_minute:g} runs a minute may be started by {principal.id}; "
                    f"try again in {wait:.1f} s",
                    retry_after=wait,
                    kind="runs_per_minute",
                )
        active = await self.store.admit(run_id, tenant, self.tenant_max_active)
        if active >= self.tenant_max_active:
            self._limited("tenant_active")
            raise RateLimited(
                f"tenant {tenant!r} has {active} runs queued, running or waiting, its limit "
                f"(RUNWATCH_TENANT_MAX_ACTIVE); wait for some to finish",
                retry_after=5,
                kind="tenant_active",
            )

    def _limited(self, kind: str) -> None:
        for callback in self.on_limited:
            callback(kind)

    async def cancel(self, run_id: str, *, principal: Principal) -> RunStatus:
        """``RUNNING``/``QUEUED`` (cancelling now) or ``CANCELLED`` (it already was): see ``Supervising.cancel``.
        A run of another tenant is an ``UnknownRun``."""
        summary = await self.get(run_id, principal=principal)
        return await self._executes(summary).cancel(run_id, principal.attribution)

    # -- reads ------------------------------------------------------------------------------------

    @staticmethod
    def _reader(principal: Principal) -> None:
        """Lists, figures and the runs feed are for readers: an ``agent`` principal is refused."""
        if not principal.can(Role.VIEWER):
            raise Forbidden(f"this needs the viewer role; {principal.id} is {principal.role.value}")

    async def get(self, run_id: str, *, principal: Principal) -> RunSummary:
        """The run's summary; ``UnknownRun`` if there is none, or it is of a tenant ``principal``
        may not see (the same answer, word for word: no existence oracle)."""
        summary = await self.store.get_run(run_id)
        if summary is None or not principal.sees(summary.tenant):
            raise UnknownRun(f"no run {run_id!r}")
        self._remember(run_id, summary.tenant)
        return summary

    def _remember(self, run_id: str, tenant: str) -> None:
        if len(self._tenants) >= TENANT_CACHE:
            self._tenants.clear()
        self._tenants[run_id] = tenant

    async def tenant_of(self, p: Published) -> str | None:
        """The tenant of the run a runs-feed entry is about (None if the run is gone)."""
        tenant = self._tenants.get(p.run_id)
        if tenant is None:
            if p.type == "run.queued":
                event = p.event if p.event is not None else decode(p.data)
                tenant = event.tenant
            else:
                summary = await self.store.get_run(p.run_id)
                if summary is None:
                    return None
                tenant = summary.tenant
            self._remember(p.run_id, tenant)
        return tenant

    async def overview(self, window: Window, *, principal: Principal) -> tuple[Figures, list[InstanceLoad]]:
        """The window's figures, from the store, and every instance's capacity now; only the
        principal's tenant's runs unless it is an admin."""
        self._reader(principal)
        if principal.scope is not None:
            window = msgspec.structs.replace(window, tenant=principal.scope)
        return await self.store.overview(window), await self.supervisor.loads()

    async def list(self, query: RunQuery, *, principal: Principal) -> RunPage:
        """A page of runs as ``query`` asks, with the runs-feed position it is valid at; only the
        principal's tenant's runs unless it is an admin.

        The position is read before the store: anything that becomes visible later is after it.
        """
        self._reader(principal)
        if principal.scope is not None:
            query = msgspec.structs.replace(query, tenant=principal.scope)
        feed = self.bus.head(LIFECYCLE)
        page = await self.store.list_runs(query)
        page.feed = feed
        page.feed_epoch = self.bus.feed_epoch
        return page

    async def visible(self, run_id: str, *, principal: Principal) -> bool:
        """The run exists and ``principal`` may see it."""
        tenant = self._tenants.get(run_id)
        if tenant is None:
            summary = await self.store.get_run(run_id)
            if summary is None:
                return False
            tenant = summary.tenant
            self._remember(run_id, tenant)
        return principal.sees(tenant)

    async def events(self, run_id: str, after: int, limit: int, *, principal: Principal) -> list[Published]:
        """Up to ``limit`` events of a run after ``after``, gap-free; fewer only once they reach the
        run's durable head (what the store holds). ``UnknownRun`` if there is none.

        The runs feed is not a run: it is followed over the WebSocket only (``subscribe "*"``).
        """
        if run_id == LIFECYCLE:
            raise UnknownRun('"*" is the runs feed: follow it over the WebSocket; list runs with GET /api/runs')
        if not await self.visible(run_id, principal=principal):
            raise UnknownRun(f"no run {run_id!r}")
        return await self.bus.replay(run_id, after, limit)

    async def resume_run(self, run_id: str, after: int, *, principal: Principal) -> int:
        """Where a replay of a run (SSE) starts: ``after``, checked. Raises ``UnknownRun``, ``AfterBeyondHead``."""
        if run_id == LIFECYCLE:
            raise UnknownRun('"*" is the runs feed: follow it over the WebSocket; list runs with GET /api/runs')
        return (await self.resume(run_id, after, principal=principal)).after

    async def resume(self, stream: str, after: int, epoch: str | None = None, *, principal: Principal) -> Resume:
        """Check where a subscription to a run (or the runs feed ``"*"``) may start.

        Raises ``UnknownRun`` or ``AfterBeyondHead``; returns a ``Resume`` with ``resync`` when the
        client's ``epoch`` is not the log's, or the feed no longer holds its position.
        """
        if stream == LIFECYCLE:
            self._reader(principal)
            return self._resume_feed(after, epoch)
        if not await self.visible(stream, principal=principal):
            raise UnknownRun(f"no run {stream!r}")
        if epoch is not None and epoch != self.bus.epoch:
            return Resume(0, self.bus.epoch, ResyncReason.EPOCH_CHANGED)
        head = self.bus.head(stream)
        if after > head or head == 0:
            head = await self.bus.position(stream)
            if head == 0:
                raise UnknownRun(f"no run {stream!r}")
            if after > head:
                raise AfterBeyondHead(f"run {stream} has {head} events; subscribe with after between 0 and {head}")
        return Resume(after, self.bus.epoch)

    def _resume_feed(self, after: int, epoch: str | None) -> Resume:
        head = self.bus.head(LIFECYCLE)
        current = self.bus.feed_epoch
        if epoch is not None and epoch != current:
            return Resume(head, current, ResyncReason.EPOCH_CHANGED)
        if after > head:
            raise AfterBeyondHead(f"the runs feed is at {head}; subscribe with after between 0 and {head}")
        if after + 1 < self.bus.first(LIFECYCLE):
            return Resume(head, current, ResyncReason.FEED_TRIMMED)
        return Resume(after, current)
