"""When the broker loses its last writes: see it in the worker, account for it in the audit.

noida-db (`antirelou up`'s embedded broker) keeps its state in memory and writes it to disk
about once a second; killed (kill -9, out of memory, a crash), it comes back with the state
of its last snapshot, so every topic loses the same last second: texts acknowledged to
MessageBird, verdicts, campaign decisions, ``ReplySent`` facts, committed offsets. A
replicated Kafka does not lose acknowledged writes; the embedded broker can.

In the worker (:class:`TailGuard`, used by the watchdog that compares each source
partition's end offset with what the agents were given): a worker that was given records
up to offset N of a partition whose log now ends at E < N, or whose committed offset is
past E, would wait for offset N while new texts are written at E, E+1, ...: they would be
stored and never screened. The guard says so loudly (an error in the log, ``/health``'s
``records_lost``, a :class:`~schemas.events.RecordsLost` fact in the journal) and the
partition is read again from E, the log's end: what exists.

In the audit: ``streams.audit.losses`` says what such a journal is missing and from where.

Upstream: noida-db's snapshot about once a second, no issue filed (a replicated Kafka does
not lose acknowledged writes); checked against noida-db 0.2.3.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from schemas.events import (
    RecordsLost,
)

log = logging.getLogger("antirelou.lost_tail")

__all__ = ["AckWindow", "TailGuard", "resume_at_end"]


# ------------------------------------------------------------------- in the worker


class TailGuard:
    """Finds a worker ahead of a partition's log end; keeps the count for ``/health``."""

    def __init__(self, keep: int = 20) -> None:
        self.records_lost = 0
        self.incidents: list[dict[str, Any]] = []
        self._keep = keep

    def check(self, topic: str, partition: int, expected: int, end: int, found: str,
              now_ms: int) -> RecordsLost | None:
        """``expected``: the next offset the worker would take (what it was given, plus
        one; or the committed offset); ``end``: the log's end offset on the broker now. A
        :class:`RecordsLost` fact (to journal) when ``end < expected``, else None."""
        if end >= expected:
            return None
        fact = RecordsLost(topic=topic, partition=partition, from_offset=end,
                           to_offset=expected, found=found, occurred_at=now_ms)
        self.records_lost += expected - end
        self.incidents.append({"topic": topic, "partition": partition, "from_offset": end,
                               "to_offset": expected, "found": found, "at": now_ms})
        del self.incidents[:-self._keep]
        log.error("*** RECORDS LOST: %s partition %d ends at offset %d but this worker had "
                  "%s up to %d: the broker lost %d record(s) it had acknowledged (a crash "
                  "of the embedded broker loses about its last second). Going on from "
                  "offset %d; `antirelou audit` accounts for what is missing ***",
                  topic, partition, end, "read" if found == "position" else "committed",
                  expected - 1, expected - end, end)
        return fact

    def deleted(self, topic: str, partition: int, first: int, start: int,
                now_ms: int) -> RecordsLost:
        """Records ``first``..``start - 1`` a worker waited for are deleted from the log
        (it starts at ``start`` now; infra/faust/inorder.py): the fact to journal, counted.
        The guard that found them logged it loudly already."""
        fact = RecordsLost(topic=topic, partition=partition, from_offset=first,
                           to_offset=start, found="log_start", occurred_at=now_ms)
        self.records_lost += start - first
        self.incidents.append({"topic": topic, "partition": partition, "from_offset": first,
                               "to_offset": start, "found": "log_start", "at": now_ms})
        del self.incidents[:-self._keep]
        return fact

    def health(self) -> dict[str, Any]:
        return {"records": self.records_lost, "incidents": list(self.incidents[-5:])}


async def resume_at_end(consumer: Any, tp: Any, end: int) -> None:
    """Read ``tp`` of a Faust consumer from ``end`` again: seek there (Consumer.seek also
    moves Faust's read offset, below which it drops what it fetches) and forget what it
    had acknowledged or committed past it, or it would never commit below that again."""
    await consumer.seek(tp, end)
    committed = consumer._committed_offset.get(tp)
    if committed is not None and committed > end:
        consumer._committed_offset[tp] = end or None
    acked = consumer._acked.get(tp)
    if acked:
        acked[:] = [offset for offset in acked if offset < end]
    gap = consumer._gap.get(tp)
    if gap:  # an intervaltree of offsets Faust waits for: those past the end never come
        gap.chop(end, max(end + 1, gap.end()))


class AckWindow:
    """The texts the webhook acknowledged in the last ``seconds``, to write again when the
    embedded broker comes back from a crash: the broker may have lost them (about its last
    second), MessageBird will not send them again (it got its 200), and the screening takes
    a text given twice once (its verdict again, journaled as a restatement). Only while
    the same process lives (``up`` restarts its broker under a running worker)."""

    def __init__(self, seconds: float = 5.0, clock: Any = None) -> None:
        import time

        self.seconds = seconds
        self._clock = clock or time.time
        self._items: deque[tuple[float, bytes, bytes]] = deque()
        self._restarts_seen = 0
        self.rewritten = 0

    def remember(self, key: bytes, value: bytes) -> None:
        now = self._clock()
        items = self._items
        items.append((now, key, value))
        horizon = now - self.seconds
        while items and items[0][0] < horizon:
            items.popleft()

    def to_rewrite(self, status: Any) -> list[tuple[bytes, bytes]]:
        """After a restart not seen yet (``status``: infra.supervisor.BrokerStatus): the texts
        acknowledged within ``seconds`` before the broker died; else nothing."""
        if status is None or not status.up or status.restarts <= self._restarts_seen:
            return []
        self._restarts_seen = status.restarts
        died_at = (status.back_at or self._clock()) - (status.last_outage_s or 0.0)
        chosen = [(k, v) for t, k, v in self._items if died_at - self.seconds <= t <= died_at]
        self.rewritten += len(chosen)
        return chosen

    def retry_later(self, count: int) -> None:
        """The texts from :meth:`to_rewrite` could not be written: offer them again."""
        self._restarts_seen -= 1
        self.rewritten -= count
