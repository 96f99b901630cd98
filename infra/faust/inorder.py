"""Records of each partition processed in offset order, or fetched again: never skipped.

faust-streaming 0.15.3 can drop records it has already fetched. A rebalance clears the
agents' queues and seeks each partition back to its committed offset, but a partition with
nothing committed yet (a new deployment, or offset 0, which Faust reads as "none") is not
sought back (faust-streaming #596): its later records reach the agent, the dropped ones
never do, and Faust's commit then steps over them (#606). Seen here as acknowledged texts
that were never screened (a hole of 11 records in one partition, 2 runs in 35 of the
kill -9 fault test). The same happens after a crash of the embedded broker that lost the
group's committed offsets: the rebalance that follows seeks nothing, and the partition
goes on from where the fetcher was, past records Faust fetched while the flow was
suspended and never delivered.

``InOrder.admit(events)`` keeps, per partition, the next offset expected: the first record
a partition gives after an assignment must be its committed offset (else the log's first
offset), and each next one the offset after. A record past the expected offset means the
ones between were dropped: the partition is sought back to the expected offset, and its
records are held out (marked done for Faust without being acknowledged, so no commit
passes them) until the expected one comes again. A record before the expected offset is
a redelivery (a seek back, a rebalance) and is processed again: every agent is
idempotent.

**The seek back is chased until it holds.** Faust's fetch loop sets its read offset (below
which it drops what it fetches) *after* it handed a record to the agent; a seek made by
the agent for that very record (or for one of the batch the loop is still handing out) is
then undone: the records fetched again are dropped once more, silently. Measured in the
broker-fault test (2 runs in 7): the guard waited for ever for a record that had been
dropped twice, holding out every later text (screening stopped), or, when the record that
had started the seek came again, took it for "no records between" and stepped over them.
So while a partition waits, the seek is made again (after 0.25 s, then doubling, at most
every 2 s) until the expected record comes; only the log's own start past the expected
offset (the records deleted: retention) ends the wait without it, said loudly
(``on_gone``: the stage journals a ``RecordsLost`` fact) and counted in ``gone``. A wait
longer than ``stall_s`` is logged as an error every ``stall_s``; ``waiting()`` says which
partitions wait and since when (``/health``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("antirelou.inorder")

RETRY_S = 0.25  # the first seek again, doubling up to MAX_RETRY_S
MAX_RETRY_S = 2.0
STALL_S = 10.0  # a wait this long is an error in the log (and again every STALL_S)


@dataclass(eq=False)
class _Wait:
    """A partition sought back to ``offset`` and waiting for it."""

    offset: int
    since: float
    tries: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def batch_starts(events: Sequence[Any]) -> dict[Any, tuple[int, int]]:
    """Each partition of a batch: (its first offset, the offset past its last)."""
    span: dict[Any, tuple[int, int]] = {}
    for event in events:
        tp, offset = event.message.tp, event.message.offset
        first, end = span.get(tp, (offset, offset + 1))
        span[tp] = (min(first, offset), max(end, offset + 1))
    return span


def not_acknowledged(events: Sequence[Any]) -> None:
    """Mark a batch's records done for Faust without acknowledging them: ``take_events``
    acknowledges its batch in a ``finally``, also when the agent's body failed, and the
    commit then passes the batch (faust-streaming 0.15.3). Marked so, no commit passes them
    until they are processed when they come again."""
    for event in events:
        event.message.acked = True


class InOrder:
    def __init__(self, name: str, first_offset: Callable[[Any], Awaitable[int]],
                 seek: Callable[[Any, int], Awaitable[None]], *,
                 log_start: Callable[[Any], Awaitable[int | None]] | None = None,
                 on_gone: Callable[[Any, int, int], Awaitable[None]] | None = None,
                 retry_s: float = RETRY_S, max_retry_s: float = MAX_RETRY_S,
                 stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        """``first_offset(tp)``: where a partition starts after an assignment (committed
        offset, else the log's first); ``seek(tp, offset)``: fetch from there again;
        ``log_start(tp)``: the log's first offset now (None: unknown); ``on_gone(tp, from,
        to)``: records ``from``..``to - 1`` are gone from the log for good."""
        self.name = name
        self._first_offset = first_offset
        self._seek = seek
        self._log_start = log_start
        self._on_gone = on_gone
        self._retry_s, self._max_retry_s, self._stall_s = retry_s, max_retry_s, stall_s
        self._clock = clock
        self._expected: dict[Any, int] = {}
        self._waits: dict[Any, _Wait] = {}  # partitions sought back, waiting
        self.holes = 0  # times records were found dropped (for /health and tests)
        self.reseeks = 0  # seeks made again because the first did not hold
        self.gone = 0  # records given up on: deleted from the log before they came

    def reset(self) -> None:
        """After a rebalance: each partition starts again from its committed offset."""
        self._expected.clear()
        for wait in self._waits.values():
            if wait.task is not None:
                wait.task.cancel()
        self._waits.clear()

    def waiting(self) -> list[dict[str, Any]]:
        """The partitions waiting for a record they were sought back to (``/health``)."""
        now = self._clock()
        return [{"partition": tp.partition, "offset": w.offset, "tries": w.tries,
                 "for_s": round(now - w.since, 1)} for tp, w in self._waits.items()]

    async def admit(self, events: Sequence[Any]) -> list[Any]:
        """The events to process, in order; the others are held out (see the module)."""
        admitted = []
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            expected = self._expected.get(tp)
            if expected is None:
                try:
                    expected = self._expected[tp] = await self._first_offset(tp)
                except Exception as exc:  # noqa: BLE001 - the broker is away: as Faust does
                    log.warning("%s: where partition %d starts is unknown (%s); taking its "
                                "records as they come", self.name, tp.partition,
                                type(exc).__name__)
                    expected = offset
            if offset > expected:
                wait = self._waits.get(tp)
                if wait is None or wait.offset != expected:
                    await self._hole(tp, expected, offset)
                # Left in the queue before the seek, or fetched again past the hole (the
                # seek undone): held out, never acknowledged, so no commit passes them.
                message.acked = True
                continue
            wait = self._waits.get(tp)
            if wait is not None and offset >= wait.offset:
                self._end_wait(tp, wait)
            # The next one, or a redelivery (processed again: idempotent).
            self._expected[tp] = offset + 1
            admitted.append(event)
        return admitted

    async def fetch_again(self, events: Sequence[Any]) -> None:
        """A batch the stage could not process: not acknowledged, and each of its partitions
        fetched again from the batch's first offset, as a hole is (the seek chased until it
        holds; the records after it held out meanwhile)."""
        not_acknowledged(events)
        for tp, (first, _) in batch_starts(events).items():
            self._expected[tp] = first
            await self._wait_for(tp, first)

    async def _hole(self, tp: Any, expected: int, offset: int) -> None:
        self.holes += 1
        log.warning("%s: records %d..%d of partition %d were dropped before reaching the "
                    "agent; fetching them again", self.name, expected, offset - 1,
                    tp.partition)
        await self._wait_for(tp, expected)

    async def _wait_for(self, tp: Any, expected: int) -> None:
        old = self._waits.get(tp)
        if old is not None:
            self._end_wait(tp, old, came=False)
        wait = self._waits[tp] = _Wait(expected, self._clock())
        await self._seek_once(tp, expected)
        wait.task = asyncio.ensure_future(self._chase(tp, wait))

    def _end_wait(self, tp: Any, wait: _Wait, came: bool = True) -> None:
        if self._waits.get(tp) is wait:
            del self._waits[tp]
        if wait.task is not None and wait.task is not asyncio.current_task():
            wait.task.cancel()
        if came and wait.tries:
            log.warning("%s: partition %d got offset %d again after %d more seek(s), "
                        "%.1f s", self.name, tp.partition, wait.offset, wait.tries,
                        self._clock() - wait.since)

    async def _seek_once(self, tp: Any, offset: int) -> None:
        try:
            await self._seek(tp, offset)
        except Exception as exc:  # noqa: BLE001 - e.g. revoked meanwhile
            # Held out all the same, never acknowledged: after the rebalance Faust starts
            # again from the committed offset, before the hole.
            log.warning("%s: could not seek partition %d back (%s)", self.name,
                        tp.partition, type(exc).__name__)

    async def _chase(self, tp: Any, wait: _Wait) -> None:
        """Seek again until the awaited record comes (see the module docstring)."""
        delay, said = self._retry_s, wait.since
        while True:
            await asyncio.sleep(delay)
            if self._waits.get(tp) is not wait:
                return
            if await self._gone(tp, wait):
                return
            wait.tries += 1
            self.reseeks += 1
            now = self._clock()
            if now - said >= self._stall_s:
                said = now
                log.error("*** %s partition %d: waiting %.0f s for offset %d (sought %d "
                          "times); its later records are held back until it comes ***",
                          self.name, tp.partition, now - wait.since, wait.offset,
                          wait.tries + 1)
            else:
                log.info("%s: partition %d: offset %d has not come back; seeking again",
                         self.name, tp.partition, wait.offset)
            await self._seek_once(tp, wait.offset)
            delay = min(delay * 2, self._max_retry_s)

    async def _gone(self, tp: Any, wait: _Wait) -> bool:
        """The log now starts past the awaited offset: those records will never come.
        Said loudly, reported, and the partition read from the log's start."""
        if self._log_start is None:
            return False
        try:
            start = await self._log_start(tp)
        except Exception:  # noqa: BLE001 - the broker is away: ask again next time
            return False
        if start is None or start <= wait.offset:
            return False
        log.error("*** RECORDS LOST: %s partition %d starts at offset %d now; records "
                  "%d..%d were deleted before this worker read them. Going on from "
                  "offset %d ***", self.name, tp.partition, start, wait.offset, start - 1,
                  start)
        self.gone += start - wait.offset
        self._end_wait(tp, wait, came=False)
        self._expected[tp] = start
        await self._seek_once(tp, start)
        if self._on_gone is not None:
            try:
                await self._on_gone(tp, wait.offset, start)
            except Exception as exc:  # noqa: BLE001 - said in the log already
                log.error("%s: records lost not reported: %s", self.name,
                          type(exc).__name__)
        return True
