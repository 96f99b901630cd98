"""Faust's table recovery waits, for each active changelog partition, until it has read up to
the highwater it took when the recovery began; streams are paused until then, so a worker
whose recovery waits for good screens, decides and sends nothing. On noida-db that was seen
(CI, 2026-12-02, the two-worker test: three changelog partitions taken over from the worker
that left, not one record received in 2 minutes, Faust logging "No event received for active
tp ... since recovery start" every 5 s and nothing else). Two ways it can happen, both known
from the source partitions (infra/faust/inorder.py, stages/watchdog.Refetch): the records are on
the broker but are not delivered (Faust drops what it fetches below its read offset, or
while its flow is suspended, and the fetcher's position has moved on); or the highwater
names records the broker no longer has (it lost its last second in a restart).

``RecoveryGuard.check`` (a timer, every few seconds) looks at each active changelog
partition with records still to read and none received for ``stall_s``:

- the broker holds records past what was read: the partition is resumed and sought back to
  the first record not read (a seek also resets Faust's read offset), said loudly;
- the broker's end lies before the highwater: the highwater is lowered to the broker's last
  record, said loudly (those records are gone; waiting would stop the worker for good).
  Recovery then ends on Faust's next check (every 5 s) once everything that exists was read.

``remedy`` decides; it is pure. The guard only touches a partition nothing arrived on for
``stall_s``, and again ``stall_s`` after its last remedy at the earliest.

Upstream: faust-streaming #596 (records dropped below the read offset) and noida-db losing
its last second (no issue filed); checked against faust-streaming 0.15.3, noida-db 0.2.3."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("antirelou")

STALL_S = 10.0  # no changelog record for this long while some are due: a stall


@dataclass(frozen=True)
class Remedy:
    """What to do for a stalled partition: the highwater lowered to ``lower_to`` (None: it
    stands) and the partition fetched again from ``fetch_from`` (None: nothing to fetch)."""

    lower_to: int | None
    fetch_from: int | None


def remedy(read: int | None, highwater: int | None, end: int | None) -> Remedy | None:
    """``read``: the last changelog offset recovery applied (-1 or None: none);
    ``highwater``: the last offset it waits for; ``end``: the broker's end offset now (the
    next offset it would write). None when nothing is to be done."""
    read = -1 if read is None else read
    if highwater is None or end is None or highwater <= read:
        return None
    last = end - 1  # the last record the broker holds
    lower_to = last if last < highwater else None
    fetch_from = read + 1 if last > read else None
    if lower_to is None and fetch_from is None:
        return None
    return Remedy(lower_to, fetch_from)


EndOffsetsOf = Callable[[Sequence[Any]], Awaitable[dict[tuple[str, int], int]]]


class RecoveryGuard:
    """``recovery``: Faust's table Recovery service (app.tables.recovery); ``consumer``:
    Faust's consumer; ``end_offsets(tps)``: the broker's end offsets by (topic, partition);
    ``clock``: monotonic seconds (Faust's recovery times are monotonic too)."""

    def __init__(self, recovery: Any, consumer: Callable[[], Any], end_offsets: EndOffsetsOf,
                 stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.recovery = recovery
        self.consumer = consumer
        self.end_offsets = end_offsets
        self.stall_s = stall_s
        self.clock = clock
        self.remedied_at: dict[Any, float] = {}
        self.fetched_again = 0  # times a partition was sought back (for /health)
        self.lowered = 0  # times a highwater was lowered to what the broker holds
        self.records_gone = 0  # changelog records named by a highwater the broker lost

    def stalled(self) -> list[Any]:
        """Active changelog partitions with records due and none received for stall_s."""
        rec = self.recovery
        if not rec.in_recovery:
            return []
        now = self.clock()
        started = rec._recovery_started_at
        if started is None:
            started = now
        received = rec._active_events_received_at
        out = []
        for tp, highwater in list(rec.active_highwaters.items()):
            read = rec.active_offsets.get(tp)
            if highwater is None or highwater <= (-1 if read is None else read):
                continue
            last = received.get(tp)
            quiet_since = max(started, self.remedied_at.get(tp, started),
                              started if last is None else last)
            if now - quiet_since >= self.stall_s:
                out.append(tp)
        return out

    async def check(self) -> int:
        """Remedies what is stalled; the number of partitions remedied."""
        if not self.recovery.in_recovery:
            self.remedied_at.clear()  # the next recovery counts from its own start
            return 0
        stalled = self.stalled()
        if not stalled:
            return 0
        ends = await self.end_offsets(stalled)
        rec, consumer, done = self.recovery, self.consumer(), 0
        for tp in stalled:
            read, highwater = rec.active_offsets.get(tp), rec.active_highwaters.get(tp)
            fix = remedy(read, highwater, ends.get((tp.topic, tp.partition)))
            self.remedied_at[tp] = self.clock()
            if fix is None:
                continue
            done += 1
            if fix.lower_to is not None:
                log.warning("%s partition %d: table recovery waited for records up to offset "
                            "%d, but the broker holds none past %d (lost in a restart); "
                            "recovering what exists", tp.topic, tp.partition, highwater,
                            fix.lower_to)
                rec.active_highwaters[tp] = fix.lower_to
                self.lowered += 1
                self.records_gone += highwater - fix.lower_to
            if fix.fetch_from is not None:
                log.warning("%s partition %d: table recovery received nothing for %g s though "
                            "records from offset %d are on the broker; fetching them again",
                            tp.topic, tp.partition, self.stall_s, fix.fetch_from)
                if tp in getattr(consumer, "_paused_partitions", ()):
                    consumer.resume_partitions([tp])
                await consumer.seek_wait({tp: fix.fetch_from})
                self.fetched_again += 1
        return done

    def health(self) -> dict[str, int]:
        return {"stalled": len(self.stalled()), "fetched_again": self.fetched_again,
                "highwaters_lowered": self.lowered, "records_gone": self.records_gone}
