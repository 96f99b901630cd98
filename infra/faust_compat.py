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

:func:`install_batched_recovery` (below) does the like for the tables' recovery: Faust's
loop reading the changelogs back takes the records in passes, not one task per record.
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


def switched_on(enabled: bool | None, variable: str) -> bool:
    """``enabled`` if given, else the environment ``variable`` is not "0"."""
    return os.environ.get(variable, "1") != "0" if enabled is None else enabled


def install_eager_delivery(enabled: bool | None = None, cls: Any = None) -> bool:
    """Install the eager ``wait_first`` on Faust's Consumer (``cls``: another mode Service
    class, for tests), once; True when installed."""
    if not switched_on(enabled, "ANTIRELOU_EAGER_DELIVERY"):
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


# ------------------------------------------------------------------ the tables' recovery

RECOVERY_BATCH = 1000  # changelog events taken from the queue at most per pass


def install_batched_recovery(enabled: bool | None = None, cls: Any = None) -> bool:
    """Give Faust's table ``Recovery`` a ``_slurp_changelogs`` that takes what the changelog
    queue holds in one pass (up to :data:`RECOVERY_BATCH` events) instead of one event per
    ``asyncio.wait_for`` (a task each in Python 3.11), and asks whether recovery is done
    (every active changelog partition's remaining count) once per pass, not per event.

    faust-streaming 0.15.3's loop did both for every changelog record, and formatted two
    debug f-strings each time: a worker given a table of 50,000-200,000 senders read them
    back at 5,000-6,800 records/s (130-180 µs of CPU each), this loop at 11,600-16,100 (about
    50 µs), while a bare consumer reads that changelog at 160,000 and more
    (tests/benchmarks/README.md, "the tables' recovery"). The queue filled, so each
    record's delivery also took mode's four-task ``wait_first``.

    What each event does is Faust's: the offset kept if newer than the one seen, the event
    buffered and its table's ``on_changelog_event`` awaited, a full buffer applied, the
    processing-time samples Faust's estimate of the time left reads. One change: an event
    of a partition neither active nor standby is skipped with a warning (Faust's loop fell
    through and appended it to the previous event's table). ``ANTIRELOU_BATCHED_RECOVERY=0``
    turns it off (before/after benchmarks)."""
    if not switched_on(enabled, "ANTIRELOU_BATCHED_RECOVERY"):
        return False
    if cls is None:
        from faust.tables.recovery import Recovery as cls

    from mode.services import ServiceTask

    original = getattr(cls, "_slurp_changelogs", None)
    if not isinstance(original, ServiceTask):  # a service's background task, by name
        log.warning("%s has no _slurp_changelogs task: table recovery is Faust's",
                    cls.__name__)
        return False
    if getattr(original.fun, "antirelou_batched", False):
        return True
    cls._slurp_changelogs = ServiceTask(_slurp_changelogs)
    return True


async def _slurp_changelogs(self: Any) -> None:  # noqa: C901  (Faust's loop, batched)
    from time import monotonic

    changelog_queue = self.tables.changelog_queue
    tp_to_table = self.tp_to_table
    active_tps, standby_tps = self.active_tps, self.standby_tps
    active_offsets, standby_offsets = self.active_offsets, self.standby_offsets
    active_events_received_at = self._active_events_received_at
    standby_events_received_at = self._standby_events_received_at
    buffers, buffer_sizes = self.buffers, self.buffer_sizes
    processing_times = self._processing_times

    async def maybe_signal_recovery_end(timeout: bool = False, timeout_count: int = 0) -> None:
        # As Faust: after two empty waits in a transaction, the aborted transactions' tail.
        if timeout and self.app.in_transaction and timeout_count > 1:
            await detect_aborted_tx()
        if self.in_recovery and not self.need_recovery():
            self.flush_buffers()  # apply what is left in the buffers
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            self.signal_recovery_end.set()

    async def detect_aborted_tx() -> None:
        offsets = self.active_offsets
        for tp, highwater in self.active_highwaters.items():
            if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
                position = await self.app.consumer.position(tp)
                if position is not None and position >= highwater:
                    log.info("aborted transactions until the highwater of %s", tp)
                    offsets[tp] = highwater

    timeout_count = 0
    while not self.should_stop:
        try:
            self.signal_recovery_end.clear()
            if changelog_queue.empty():
                try:
                    events = [await asyncio.wait_for(changelog_queue.get(), timeout=5.0)]
                except TimeoutError:
                    timeout_count += 1
                    if self.should_stop:
                        return
                    await maybe_signal_recovery_end(timeout=True, timeout_count=timeout_count)
                    continue
            else:
                events = []
                while len(events) < RECOVERY_BATCH and not changelog_queue.empty():
                    events.append(changelog_queue.get_nowait())
            timeout_count = 0
            for event in events:
                now = monotonic()
                message = event.message
                tp, offset = message.tp, message.offset
                bufsize = buffer_sizes.get(tp)
                is_active = tp in active_tps
                if is_active:
                    table = tp_to_table[tp]
                    offsets = active_offsets
                    if bufsize is None:
                        bufsize = buffer_sizes[tp] = table.recovery_buffer_size
                    active_events_received_at[tp] = now
                elif tp in standby_tps:
                    table = tp_to_table[tp]
                    offsets = standby_offsets
                    if bufsize is None:
                        bufsize = buffer_sizes[tp] = table.standby_buffer_size
                        standby_events_received_at[tp] = now
                else:
                    log.warning("table recovery: a record of %s, neither active nor standby: "
                                "skipped", tp)
                    continue
                seen_offset = offsets.get(tp, None)
                if seen_offset is None or offset > seen_offset:
                    offsets[tp] = offset
                    buf = buffers[table]
                    buf.append(event)
                    await table.on_changelog_event(event)
                    if len(buf) >= bufsize:
                        table.apply_changelog_batch(buf)
                        buf.clear()
                        self._last_flush_at = now
                    if is_active:
                        now_after = monotonic()
                        last_processed_at = self._last_active_event_processed_at
                        if last_processed_at is not None:
                            processing_times.append(now_after - last_processed_at)
                            if len(processing_times) > self.num_samples_required_for_estimate:
                                processing_times.popleft()
                        self._last_active_event_processed_at = now_after
            await maybe_signal_recovery_end()
            standby_ready = self._standbys_span is None and self.tables.standbys_ready
            if not standby_ready and not self.standby_remaining_total():
                if self._standbys_span:
                    from faust.utils.tracing import finish_span

                    finish_span(self._standbys_span)
                    self._standbys_span = None
                self.tables.on_standbys_ready()
        except Exception as ex:  # as Faust's loop: said, and the loop goes on
            log.warning("Error in recovery %s", ex)


_slurp_changelogs.antirelou_batched = True  # type: ignore[attr-defined]
