"""Decisions and messages for a run another instance executes, over the deployment's control channel.

The instance a person talks to publishes an ``Ask`` (agents/cluster/channel.py); every instance
hears it, the run's owner acts on it exactly as it would on a local request (``Inbox``
decides: the first decision wins) and publishes an ``Answer`` with the outcome, which the asking
instance turns back into the same error a local request would raise. Pub/sub delivers at most
once: no answer within ``timeout`` (the owner died, or Redis hiccupped) is ``Unavailable`` — the
person sends it again, and learns ``already_decided`` if it had taken effect after all.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import structlog
from redis.exceptions import RedisError

from runwatch.agents.cluster.channel import Answer, Ask, ControlMessage
from runwatch.agents.errors import ErrorCode, RateLimited, RunwatchError, Unavailable
from runwatch.agents.runs.inbox import Decision, Steer

log = structlog.get_logger()

#: Seconds to wait for the owner's answer.
ANSWER_SECONDS = 5.0
#: Requests waiting for an answer at once, per instance; past that, ``Unavailable`` at once.
MAX_WAITING = 1_000


#: Acts on an ``Ask`` for a run executing here: True once done, False if the run is not here;
#: raises the ``RunwatchError`` to answer.
Serve = Callable[[Ask], bool]
Publish = Callable[[ControlMessage], Awaitable[object]]


class RemoteInbox:
    def __init__(self, *, instance: str, publish: Publish, serve: Serve, timeout: float = ANSWER_SECONDS) -> None:
        self._instance = instance
        self._publish = publish
        self._serve = serve
        self._timeout = timeout
        self._waiting: dict[str, asyncio.Future[Answer]] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    async def ask(
        self, run_id: str, *, approval: str = "", decision: Decision | None = None, steer: Steer | None = None
    ) -> None:
        """Have the run's owner decide ``approval`` or take ``steer``; raises what it raised, or
        ``Unavailable`` if no owner answered in time."""
        if len(self._waiting) >= MAX_WAITING:
            raise Unavailable("too many requests wait for other instances right now; try again in a moment")
        ask = Ask(
            req=secrets.token_hex(8),
            sender=self._instance,
            run=run_id,
            approval=approval,
            decision=decision,
            steer=steer,
        )
        answer = self._waiting[ask.req] = asyncio.get_running_loop().create_future()
        try:
            await self._publish(ask)
            async with asyncio.timeout(self._timeout):
                reply = await answer
        except (RedisError, OSError) as exc:
            raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        except TimeoutError:
            raise Unavailable(
                f"the instance executing run {run_id} did not answer within {self._timeout:g} s; try again"
            ) from None
        finally:
            self._waiting.pop(ask.req, None)
        if reply.retry_after is not None:
            raise RateLimited(reply.message, retry_after=reply.retry_after, kind=reply.kind)
        if reply.code:
            raise RunwatchError(reply.message, code=ErrorCode(reply.code))

    def on_answer(self, answer: Answer) -> None:
        """An owner's answer: to a request waiting here, or to another instance's (ignored)."""
        waiting = self._waiting.get(answer.req)
        if waiting is not None and not waiting.done():
            waiting.set_result(answer)

    def on_ask(self, ask: Ask) -> None:
        """Another instance's request: answered if the run executes here."""
        try:
            if not self._serve(ask):
                return  # not ours
            answer = Answer(req=ask.req, to=ask.sender)
        except RateLimited as exc:
            answer = Answer(
                req=ask.req,
                to=ask.sender,
                code=exc.code,
                message=exc.message,
                retry_after=exc.retry_after,
                kind=exc.kind,
            )
        except RunwatchError as exc:
            answer = Answer(req=ask.req, to=ask.sender, code=exc.code, message=exc.message)
        task = asyncio.get_running_loop().create_task(self._answer(answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, answer: Answer) -> None:
        try:
            await self._publish(answer)
        except Exception as exc:  # the asker times out and says so
            log.warning("control.answer_failed", error=repr(exc))
