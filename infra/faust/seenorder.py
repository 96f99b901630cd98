"""The send stage's offset-order guard: a hole in sms-outbound is fetched again.

The other stages admit their records through ``infra.faust.inorder.InOrder`` before they use
them. The send stage cannot: its agent runs several concurrent actors on one stream (a
reply being retried holds up only its own batch), so one actor sees every other offset.
What all actors share is the moment each record is taken from the agent's queue, in
offset order per partition: a stream processor (synchronous: nothing runs in between)
calls ``SeenOrder.see(event)`` there. A record past the next expected offset means the
ones between were dropped before reaching the agent (faust-streaming #596/#606, the
reason for InOrder): the partition is sought back to the first missing offset, and what
comes again is processed again (the send stage sends a reply at most once whatever it is
given: streams.rules.sendstate). The first record of a partition after an assignment is checked
against where the assignment started (the committed offset, else the log's first), as
InOrder does; that check needs the broker, so it runs as a task.

A seek back can be undone by Faust's fetch loop (infra/faust/inorder.py says how): the records
fetched again are dropped once more and the hole stays. So the seek is made again (after
0.25 s, doubling up to 2 s) until one of the missing records comes.

Upstream: faust-streaming #596, #606; checked against faust-streaming 0.15.3.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from infra.faust.inorder import MAX_RETRY_S, RETRY_S, STALL_S, batch_starts

log = logging.getLogger("antirelou.inorder")


class SeenOrder:
    def __init__(self, name: str, first_offset: Callable[[Any], Awaitable[int | None]],
                 seek: Callable[[Any, int], Awaitable[None]], *, retry_s: float = RETRY_S,
                 max_retry_s: float = MAX_RETRY_S) -> None:
        self.name = name
        self._first_offset = first_offset
        self._seek = seek
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self._expected: dict[Any, int] = {}
        # Partition -> its holes sought back, each (first missing offset, the offset past
        # it), waiting for one of their records to come.
        self._waits: dict[Any, set[tuple[int, int]]] = {}
        self.holes = 0  # times records were found dropped (/health, tests)
        self.reseeks = 0  # seeks made again because the first did not hold
        self._tasks: set[asyncio.Task[None]] = set()
        self._chases: set[asyncio.Task[None]] = set()  # seeks made again (not settled())

    def reset(self) -> None:
        """After a rebalance: each partition starts again from its committed offset."""
        self._expected.clear()
        self._waits.clear()
        for chase in list(self._chases):
            chase.cancel()

    def see(self, event: Any) -> None:
        """One record taken from the agent's queue (in offset order per partition)."""
        if event is None:
            return
        tp, offset = event.message.tp, event.message.offset
        waits = self._waits.get(tp)
        if waits:  # a hole being fetched again
            waits.difference_update([w for w in waits if w[0] <= offset < w[1]])
        expected = self._expected.get(tp)
        if expected is None:
            self._spawn(self._check_start(tp, offset))
        elif offset > expected:
            self._hole(tp, expected, offset)
        if expected is None or offset >= expected:
            self._expected[tp] = offset + 1

    async def _check_start(self, tp: Any, offset: int) -> None:
        try:
            start = await self._first_offset(tp)
        except Exception as exc:  # noqa: BLE001 - the broker is away: as Faust does
            log.warning("%s: where partition %d starts is unknown (%s)", self.name,
                        tp.partition, type(exc).__name__)
            return
        if start is not None and offset > start:
            await self._seek_back(tp, start, offset)

    def _hole(self, tp: Any, expected: int, offset: int) -> None:
        self._spawn(self._seek_back(tp, expected, offset))

    async def fetch_again(self, events: Sequence[Any]) -> None:
        """A batch the stage could not process (never acknowledged: ``BatchWorkers``): each
        of its partitions fetched again from the batch's first offset, the seek chased
        until one of its records comes (as for a hole)."""
        for tp, (first, end) in batch_starts(events).items():
            await self._fetch(tp, first, end)

    async def _seek_back(self, tp: Any, expected: int, offset: int) -> None:
        self.holes += 1
        log.warning("%s: records %d..%d of partition %d were dropped before reaching the "
                    "agent; fetching them again", self.name, expected, offset - 1,
                    tp.partition)
        await self._fetch(tp, expected, offset)

    async def _fetch(self, tp: Any, expected: int, offset: int) -> None:
        wait = (expected, offset)
        self._waits.setdefault(tp, set()).add(wait)
        await self._seek_once(tp, expected)
        chase = asyncio.ensure_future(self._chase(tp, wait))
        self._chases.add(chase)
        chase.add_done_callback(self._chases.discard)

    async def _seek_once(self, tp: Any, offset: int) -> None:
        try:
            await self._seek(tp, offset)
        except Exception as exc:  # noqa: BLE001 - e.g. revoked meanwhile: the rebalance
            log.warning("%s: could not seek partition %d back (%s)", self.name,  # restarts
                        tp.partition, type(exc).__name__)                     # from commit

    async def _chase(self, tp: Any, wait: tuple[int, int]) -> None:
        """Seek again until one of the missing records comes (the module docstring)."""
        delay, since = self._retry_s, time.monotonic()
        said = since
        while True:
            await asyncio.sleep(delay)
            if wait not in self._waits.get(tp, ()):
                return
            self.reseeks += 1
            if time.monotonic() - said >= STALL_S:
                said = time.monotonic()
                log.error("*** %s partition %d: records %d..%d still not fetched again "
                          "after %.0f s; seeking again ***", self.name, tp.partition,
                          wait[0], wait[1] - 1, said - since)
            await self._seek_once(tp, wait[0])
            delay = min(delay * 2, self._max_retry_s)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the checks and seeks under way (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
