"""The send stage's offset-order guard: a hole in sms-outbound is fetched again.

The other stages admit their records through ``streams.inorder.InOrder`` before they use
them. The send stage cannot: its agent runs several concurrent actors on one stream (a
reply being retried holds up only its own batch), so one actor sees every other offset.
What all actors share is the moment each record is taken from the agent's queue, in
offset order per partition: a stream processor (synchronous: nothing runs in between)
calls ``SeenOrder.see(event)`` there. A record past the next expected offset means the
ones between were dropped before reaching the agent (faust-streaming #596/#606, the
reason for InOrder): the partition is sought back to the first missing offset, and what
comes again is processed again (the send stage sends a reply at most once whatever it is
given: streams.sendstate). The first record of a partition after an assignment is checked
against where the assignment started (the committed offset, else the log's first), as
InOrder does; that check needs the broker, so it runs as a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("antirelou.inorder")


class SeenOrder:
    def __init__(self, name: str, first_offset: Callable[[Any], Awaitable[int | None]],
                 seek: Callable[[Any, int], Awaitable[None]]) -> None:
        self.name = name
        self._first_offset = first_offset
        self._seek = seek
        self._expected: dict[Any, int] = {}
        self.holes = 0  # times records were found dropped (/health, tests)
        self._tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        """After a rebalance: each partition starts again from its committed offset."""
        self._expected.clear()

    def see(self, event: Any) -> None:
        """One record taken from the agent's queue (in offset order per partition)."""
        if event is None:
            return
        tp, offset = event.message.tp, event.message.offset
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

    async def _seek_back(self, tp: Any, expected: int, offset: int) -> None:
        self.holes += 1
        log.warning("%s: records %d..%d of partition %d were dropped before reaching the "
                    "agent; fetching them again", self.name, expected, offset - 1,
                    tp.partition)
        try:
            await self._seek(tp, expected)
        except Exception as exc:  # noqa: BLE001 - e.g. revoked meanwhile: the rebalance
            log.warning("%s: could not seek partition %d back (%s)", self.name,  # restarts
                        tp.partition, type(exc).__name__)                     # from commit

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the checks and seeks under way (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
