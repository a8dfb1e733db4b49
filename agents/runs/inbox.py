"""People in a running run's loop: approvals it waits for, messages sent to it, interrupts.

One ``Inbox`` per run, on the instance executing it. Its guarantees:

* **First decision wins.** ``decide`` checks and resolves in one synchronous step, so of two
  decisions (or a decision and the expiry timer) exactly one takes effect; the others get
  ``AlreadyDecided``. Edited arguments are validated against the tool's schema first.
* **Waiting is not running.** While any approval is open the run's status is ``waiting``. While
  every tool call of the step in flight waits for a person (the run is *idle*), its timeout is
  paused (``deadline``) and its slot is lent out (``lend``); before anything runs again it takes a
  slot back (``go_on``, awaited) and only then resumes the timeout. An approval expires after
  ``approval_timeout`` as denied.
* **Messages keep their order** and are bounded (``MAX_INBOX``, ``MAX_INBOX_BYTES``): past that
  a sender is refused (``RateLimited``), never queued without end. They reach the model at the
  next step boundary; ``interrupt`` cuts the model's stream first (within one event-loop turn of
  the stream's next read).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import structlog

from runwatch.agents.errors import AlreadyDecided, InvalidArguments, RateLimited, Unavailable, UnknownApproval
from runwatch.agents.events import ApprovalRequested, ApprovalResolved, Emit, MessageReceived
from runwatch.agents.identity import Actor
from runwatch.agents.loop.tools import Tool, ToolError

log = structlog.get_logger()

#: How a message reaches the model: ``interrupt`` cuts the answer being streamed; ``queue`` waits
#: for the current step to end.
Mode = Literal["interrupt", "queue"]

#: Messages one run may hold undelivered, and their bytes; past either a sender is refused.
MAX_INBOX = 50
MAX_INBOX_BYTES = 1024 * 1024
#: Approvals a run remembers having decided (to answer ``already_decided``, not ``unknown``).
MAX_DECIDED = 1_000


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    """A person's decision on an approval, as it travels (also between instances)."""

    approve: bool
    #: Edited arguments (a JSON object) to call the tool with instead of the model's.
    arguments: Any = msgspec.UNSET
    #: A denial's message: what the model gets as the tool's result.
    message: str | None = None
    by: Actor | None = None


class Steer(msgspec.Struct, kw_only=True, frozen=True):
    """A person's message to a running run."""

    text: str
    mode: Mode = "queue"
    by: Actor | None = None


def new_approval_id() -> str:
    return "ap_" + secrets.token_hex(8)


@dataclass
class _Open:
    request: ApprovalRequested
    tool: Tool
    future: asyncio.Future[Decision | None]  # None: expired


class Inbox:
    def __init__(self, run_id: str, emit: Emit, *, approval_timeout: float = 3600.0) -> None:
        self.run_id = run_id
        self._emit = emit
        self.approval_timeout = approval_timeout
        self._open: dict[str, _Open] = {}
        self._decided: dict[str, str] = {}
        self._inbox: deque[Steer] = deque()
        self._inbox_bytes = 0
        self._task: asyncio.Task[Any] | None = None
        #: The run's ``asyncio.timeout``: paused while the run waits for a person.
        self.deadline: asyncio.Timeout | None = None
        self._paused: float | None = None
        #: Approvals open now, and tool calls of the current step not finished (``calls_begin``).
        self._waiters = 0
        self._in_flight = 0
        self._idle = False
        self._going_on = asyncio.Lock()
        #: Called with True when the run starts waiting for approvals, False when none is open.
        self.on_waiting: Callable[[bool], None] | None = None
        #: Called when the run becomes idle (nothing but approvals in flight): it lends its slot out.
        self.lend: Callable[[], None] | None = None
        #: Awaited before anything runs again after being idle: it takes a slot back.
        self.go_on: Callable[[], Awaitable[None]] | None = None
        #: True while the model's stream is read (set by the runner): only then does ``interrupt`` cut it.
        self.streaming = False
        self._interrupting = False
        #: Approvals of a run being continued elsewhere, by call id: reopened, not asked again.
        self.restored: dict[str, tuple[ApprovalRequested, ApprovalResolved | None]] = {}

    def bind(self, task: asyncio.Task[Any]) -> None:
        """The task executing the run (``interrupt`` cancels its model stream)."""
        self._task = task

    # -- approvals -------------------------------------------------------------------------------

    async def approval(self, call_id: str, tool: Tool, arguments: Any, reason: str) -> ApprovalResolved:
        """Ask for a decision on one tool call (``approval.requested``), wait for it, say what it
        was (``approval.resolved``). A call restored from a run continued elsewhere waits on its
        approval as it was, without asking again (or takes the decision already published)."""
        restored = self.restored.pop(call_id, None)
        if restored is not None and restored[1] is not None:
            return restored[1]
        if restored is not None:
            request = restored[0]
        else:
            request = ApprovalRequested(
                run_id=self.run_id,
                approval_id=new_approval_id(),
                call_id=call_id,
                tool=tool.name,
                arguments=arguments,
                reason=reason,
                expires_at=round(time.time() + self.approval_timeout, 3),
            )
        decision = await self._decision(request, tool, ask=restored is None)
        resolved = self._resolved(request, decision)
        try:
            await self._emit(resolved)
        finally:
            await self._go_on()
        log.info("approval.resolved", run_id=self.run_id, approval_id=request.approval_id, decision=resolved.decision)
        return resolved

    async def _decision(self, request: ApprovalRequested, tool: Tool, *, ask: bool) -> Decision | None:
        """Open ``request`` (published first if ``ask``) and wait for its decision; None: it expired.
        The run is ``waiting`` meanwhile, and idle once nothing but approvals is in flight."""
        loop = asyncio.get_running_loop()
        opened = _Open(request, tool, loop.create_future())
        self._open[request.approval_id] = opened
        self._waiters += 1
        if self._waiters == 1 and self.on_waiting is not None:
            self.on_waiting(True)
        self._maybe_idle()
        timer = loop.call_later(max(0.0, request.expires_at - time.time()), self._expire, opened)
        failed = False
        try:
            if ask:
                await self._emit(request)
            log.info("approval.requested", run_id=self.run_id, approval_id=request.approval_id, tool=tool.name)
            return await opened.future
        except Exception:
            failed = True  # (publishing failed: the call fails, the run goes on, with its slot)
            raise
        finally:
            timer.cancel()
            del self._open[request.approval_id]
            if opened.future.done():
                self._remember(request.approval_id, opened)
            self._waiters -= 1
            if self._waiters == 0 and self.on_waiting is not None:
                self.on_waiting(False)
            if failed:
                await self._go_on()

    def _resolved(self, request: ApprovalRequested, decision: Decision | None) -> ApprovalResolved:
        """What ``approval.resolved`` says of ``decision`` (None: expired, so denied)."""
        if decision is None:
            return ApprovalResolved(
                run_id=self.run_id,
                approval_id=request.approval_id,
                decision="expired",
                arguments=request.arguments,
                message=f"nobody approved this call within {self.approval_timeout:g} s, so it was not made",
                waiting=bool(self._open),
            )
        edited = decision.arguments is not msgspec.UNSET
        return ApprovalResolved(
            run_id=self.run_id,
            approval_id=request.approval_id,
            decision="approved" if decision.approve else "denied",
            by=decision.by,
            arguments=decision.arguments if edited and decision.approve else request.arguments,
            message=None if decision.approve else (decision.message or "the user denied this call"),
            waiting=bool(self._open),
        )

    def _remember(self, approval_id: str, opened: _Open) -> None:
        if len(self._decided) >= MAX_DECIDED:
            self._decided.pop(next(iter(self._decided)))
        result = opened.future.result()
        self._decided[approval_id] = "expired" if result is None else "approved" if result.approve else "denied"

    @staticmethod
    def _expire(opened: _Open) -> None:
        if not opened.future.done():
            opened.future.set_result(None)

    def decide(self, approval_id: str, decision: Decision) -> Decision:
        """Resolve an open approval with ``decision`` (arguments validated); the first one wins.

        Raises ``UnknownApproval``, ``AlreadyDecided`` or ``InvalidArguments``.
        """
        decision = self.check(approval_id, decision)
        self._open[approval_id].future.set_result(decision)
        return decision

    def check(self, approval_id: str, decision: Decision) -> Decision:
        """What ``decide`` would do, without doing it: the decision with its arguments validated."""
        opened = self._open.get(approval_id)
        if opened is None and any(r.approval_id == approval_id for r, _ in self.restored.values()):
            raise Unavailable(f"run {self.run_id} is being continued here; send the decision again in a moment")
        if opened is None or opened.future.done():
            if opened is not None or approval_id in self._decided:
                raise AlreadyDecided(f"approval {approval_id} of run {self.run_id} was already decided")
            raise UnknownApproval.of(self.run_id, approval_id)
        if decision.approve and decision.arguments is not msgspec.UNSET:
            if not isinstance(decision.arguments, dict):
                raise InvalidArguments("arguments must be a JSON object of the tool's parameters")
            try:
                opened.tool.decode_arguments(msgspec.json.encode(decision.arguments).decode())
            except ToolError as exc:
                raise InvalidArguments(str(exc)) from None
        return decision

    def calls_begin(self, count: int) -> None:
        """A step is about to make ``count`` tool calls (all counted before any may wait)."""
        self._in_flight += count

    def call_ended(self) -> None:
        """One of them is over (made, denied or failed)."""
        self._in_flight -= 1
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        """Nothing but approvals in flight: pause the timeout and lend the slot out."""
        if self._idle or not self._waiters or self._waiters < self._in_flight:
            return
        self._idle = True
        deadline = self.deadline
        if deadline is not None and (when := deadline.when()) is not None:
            try:
                deadline.reschedule(None)
                self._paused = when - asyncio.get_running_loop().time()
            except RuntimeError:  # it is expiring right now: the run times out as it would have
                pass
        if self.lend is not None:
            self.lend()

    async def _go_on(self) -> None:
        """Something may run again: take a slot back (waiting for one), then resume the timeout.
        Under a lock, so that two calls decided at once both go on only once the slot is back."""
        async with self._going_on:
            if not self._idle or (self._waiters and self._waiters >= self._in_flight):
                return
            if self.go_on is not None:
                await self.go_on()
            self._idle = False
            if self.deadline is not None and self._paused is not None:
                try:
                    self.deadline.reschedule(asyncio.get_running_loop().time() + self._paused)
                except RuntimeError:
                    pass
                self._paused = None

    # -- messages and interrupts -----------------------------------------------------------------

    def post(self, steer: Steer) -> None:
        """Take a message for the run's next step; ``interrupt`` also cuts the current stream.
        Raises ``RateLimited`` when the run already holds ``MAX_INBOX`` messages (or bytes)."""
        size = len(steer.text.encode())
        if len(self._inbox) >= MAX_INBOX or self._inbox_bytes + size > MAX_INBOX_BYTES:
            raise RateLimited(
                f"run {self.run_id} already holds {len(self._inbox)} undelivered messages; wait for it to take them",
                retry_after=1.0,
                kind="messages",
            )
        self._inbox.append(steer)
        self._inbox_bytes += size
        if steer.mode == "interrupt":
            self.interrupt()

    @property
    def has_messages(self) -> bool:
        return bool(self._inbox)

    @property
    def interrupt_waiting(self) -> bool:
        """A message asking to interrupt is waiting (it came while no stream could be cut)."""
        return any(steer.mode == "interrupt" for steer in self._inbox)

    async def deliver(self) -> list[dict[str, Any]]:
        """The waiting messages as the model's user turns, each published (``message.received``) first."""
        turns = []
        while self._inbox:
            steer = self._inbox[0]
            await self._emit(MessageReceived(run_id=self.run_id, text=steer.text, by=steer.by, mode=steer.mode))
            self._inbox.popleft()
            self._inbox_bytes -= len(steer.text.encode())
            turns.append({"role": "user", "content": steer.text})
        return turns

    def interrupt(self) -> None:
        """Cut the model's stream: cancel the run's task, once, and only while ``streaming`` (the
        runner sets it around the stream, so the cancel lands there and ``interrupted`` takes it
        back). Otherwise nothing: the message waits for the next step boundary."""
        if self.streaming and not self._interrupting and self._task is not None:
            self._interrupting = True
            self._task.cancel()

    def interrupted(self) -> bool:
        """Inside ``except CancelledError`` around the stream: True if the cancel was only an
        interrupt (then taken back: the run goes on); False if the run itself is cancelled."""
        if not self._interrupting or self._task is None:
            return False
        self._interrupting = False
        self._task.uncancel()
        return self._task.cancelling() == 0
