"""Records of each partition processed in offset order, or fetched again: never skipped.

faust-streaming 0.15.3 can drop records it has already fetched. A rebalance clears the
agents' queues and seeks each partition back to its committed offset, but a partition with
nothing committed yet (a new deployment, or offset 0, which Faust reads as "none") is not
sought back (faust-streaming #596): its later records reach the agent, the dropped ones
never do, and Faust's commit then steps over them (#606). Seen here as acknowledged texts
that were never screened (a hole of 11 records in one partition, 2 runs in 35 of the
kill -9 fault test).

``InOrder.admit(events)`` keeps, per partition, the next offset expected: the first record
a partition gives after an assignment must be its committed offset (else the log's first
offset), and each next one the offset after. A record past the expected offset means the
ones between were dropped: the partition is sought back to the expected offset, and its
records are held out (marked done for Faust without being acknowledged, so no commit
passes them) until the expected one comes again. A record before the expected offset is
a redelivery (a seek back, a rebalance) and is processed again: every agent is
idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("antirelou.inorder")


class InOrder:
    def __init__(self, name: str, first_offset: Callable[[Any], Awaitable[int]],
                 seek: Callable[[Any, int], Awaitable[None]]) -> None:
        """``first_offset(tp)``: where a partition starts after an assignment (committed
        offset, else the log's first); ``seek(tp, offset)``: fetch from there again."""
        self.name = name
        self._first_offset = first_offset
        self._seek = seek
        self._expected: dict[Any, int] = {}
        # Seeks under way: partition -> (offset sought, first offset seen past it).
        self._sought: dict[Any, tuple[int, int]] = {}
        self.holes = 0  # times records were found dropped (for /health and tests)

    def reset(self) -> None:
        """After a rebalance: each partition starts again from its committed offset."""
        self._expected.clear()
        self._sought.clear()

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
                sought = self._sought.get(tp)
                if sought == (expected, offset):
                    # The same record again after the seek: there are no records between
                    # (offsets a log may skip, e.g. compaction): go on from it.
                    del self._sought[tp]
                elif sought is not None and sought[0] == expected:
                    message.acked = True  # left in the queue before the seek: held out
                    continue
                else:
                    self._sought[tp] = (expected, offset)
                    self.holes += 1
                    log.warning("%s: records %d..%d of partition %d were dropped before "
                                "reaching the agent; fetching them again", self.name,
                                expected, offset - 1, tp.partition)
                    try:
                        await self._seek(tp, expected)
                    except Exception as exc:  # noqa: BLE001 - e.g. revoked meanwhile
                        # Held out all the same, never acknowledged: after the rebalance
                        # Faust starts again from the committed offset, before the hole.
                        log.warning("%s: could not seek partition %d back (%s)", self.name,
                                    tp.partition, type(exc).__name__)
                    # Done for Faust, never acknowledged: no commit passes it.
                    message.acked = True
                    continue
            else:
                self._sought.pop(tp, None)
            # The next one, or a redelivery (processed again: idempotent).
            self._expected[tp] = offset + 1
            admitted.append(event)
        return admitted
