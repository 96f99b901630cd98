"""Faust's consumer hands each fetched record to its streams without four tasks per record.

faust-streaming 0.15.3's ``Consumer._drain_messages`` delivers every record it fetched with

    await self.wait_first(callback(message), self.suspend_flow.wait())

and mode's ``Service.wait_first`` makes a task of each argument and of the service's
``stopped`` and ``crashed`` events (four tasks), waits on them with ``asyncio.wait`` and
cancels the three losers: for every record, although the callback (the conductor putting
the event in its streams' queues) nearly always finishes at once. py-spy (2026-12-02) put a
fifth of the worker's CPU in the event loop and this path at the top of Faust's share.

:func:`install_eager_delivery` gives Faust's ``Consumer`` a ``wait_first`` that, for such a
call (a coroutine, then the wait of an ``asyncio.Event`` that is not set, the consumer neither
stopped nor crashed), first runs the coroutine in place up to its first wait:

- it finishes without waiting (a queue with room): that is what ``wait_first`` would have
  returned, the coroutine the winner; no task, no ``asyncio.wait``;
- it waits (a full queue, a lock held): the rest of it goes to the original ``wait_first``,
  raced against the event as before, so a rebalance (``suspend_flow``) still interrupts a
  delivery blocked on a full stream.

Every other call, and every call while the event is set or the consumer stopping, goes to
the original unchanged. Faust is pinned (0.15.3); if its ``Consumer`` or mode's ``Service``
lacks ``wait_first`` this logs a warning and does nothing. ``ANTIRELOU_EAGER_DELIVERY=0``
turns it off (for a before/after benchmark).
"""

from __future__ import annotations

import asyncio
import logging
import os
import types
from collections.abc import Coroutine, Generator
from typing import Any

log = logging.getLogger("antirelou")

_EVENT_WAIT = asyncio.Event.wait.__code__


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """The rest of ``coro``, which was sent None once and yielded ``waiting``: what the event
    loop sends or throws goes on to it (as ``yield from`` would), its result is ours."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation included: it is the coroutine's to see
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value


async def _rest(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    return await resume(coro, waiting)


def unset_event_wait(coro: Any) -> bool:
    """``coro`` is ``asyncio.Event.wait()`` not started, of an event that is not set."""
    if getattr(coro, "cr_code", None) is not _EVENT_WAIT or coro.cr_frame is None:
        return False
    event = coro.cr_frame.f_locals.get("self")
    return isinstance(event, asyncio.Event) and not event.is_set()


def install_eager_delivery(enabled: bool | None = None, cls: Any = None) -> bool:
    """Install the eager ``wait_first`` on Faust's Consumer (``cls``: another mode Service
    class, for tests), once; True when installed."""
    if enabled is None:
        enabled = os.environ.get("ANTIRELOU_EAGER_DELIVERY", "1") != "0"
    if not enabled:
        return False
    from mode.services import WaitResults

    if cls is None:
        from faust.transport.consumer import Consumer as cls

    original = getattr(cls, "wait_first", None)
    if original is None:
        log.warning("%s has no wait_first: records are delivered as before", cls.__name__)
        return False
    if getattr(original, "antirelou_eager", False):
        return True

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
                and unset_event_wait(coros[1])
                and not self._stopped.is_set() and not self._crashed.is_set()):
            deliver, flow = coros
            try:
                waiting = deliver.send(None)
            except StopIteration as done:
                flow.close()  # never started: closing it is all it needs
                return WaitResults([deliver], [done.value], False)
            except BaseException:
                flow.close()
                raise
            return await original(self, _rest(deliver, waiting), flow)
        return await original(self, *coros, timeout=timeout)

    wait_first.antirelou_eager = True  # type: ignore[attr-defined]
    cls.wait_first = wait_first
    return True
