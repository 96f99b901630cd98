"""The send stage's second look, for replies whose ``attempting`` mark may have been lost.

The reply stage sends at most once per message id because ``replies_by_message`` (a table
with a changelog on the broker) says where each reply got to. Two things can take a mark
away while the journal, or this worker's memory, still knows: the embedded broker killed
(it comes back with the state of its last snapshot: the changelog's last second is gone),
and a rebalance that moves a partition away and back (the table is rebuilt from that
changelog). A ``SendReply`` given again then finds no mark and would be sent twice.

So a reply that finds no mark is checked before it is sent, when it is *suspect*: its
record is older than this worker's start or than the broker's last restart (a reply that
arrives fresh, in normal running, is never checked and costs nothing):

* :class:`RecentOutcomes`: what this worker itself did with each reply (bounded, in
  memory); it outlives a changelog's loss and a rebalance, not a restart of the worker;
* :class:`JournalIndex`: what the journal says (``ReplyAttempted``, ``ReplySent``,
  ``ReplyFailed``, ``ReplyUncertain`` of that message id), read from the record's time on.
  A reply the journal saw attempted, with no outcome, is uncertain (never sent again);
  one it saw sent is not sent again.

What neither can know: a reply whose call went out in the very last second before the
broker was killed, when the worker was restarted too (its memory gone) and the journal
lost the attempt with the mark. MessageBird's classic API has no idempotency key and no
look-up by ``reference``: that reply can go out twice (README, "Reliability").

Upstream: noida-db losing its last second (no issue filed) and Faust rebuilding a table from
its changelog after a rebalance; checked against noida-db 0.2.3, faust-streaming 0.15.3.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from infra.kafka_auth import client_options
from schemas import codec
from schemas.events import ReplyAttempted, ReplyFailed, ReplySent, ReplyUncertain

log = logging.getLogger("antirelou.send_guard")

__all__ = ["JournalIndex", "RecentOutcomes", "outcome_of"]

_KINDS = {ReplyAttempted: "attempting", ReplySent: "sent", ReplyFailed: "failed",
          ReplyUncertain: "uncertain"}
_RANK = {"attempting": 0, "failed": 1, "uncertain": 2, "sent": 3}


def outcome_of(current: str | None, event: Any) -> str | None:
    """Fold one journal event into what is known of its reply (pure): an outcome beats an
    attempt; "sent" beats everything."""
    kind = _KINDS.get(type(event))
    if kind is None:
        return current
    if current is None or _RANK[kind] >= _RANK[current]:
        return kind
    return current


class RecentOutcomes:
    """This worker's own marks, by message id: the last ``capacity`` replies."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._marks: OrderedDict[str, str] = OrderedDict()

    def put(self, message_id: str, mark: str) -> None:
        self._marks[message_id] = mark
        self._marks.move_to_end(message_id)
        if len(self._marks) > self._capacity:
            self._marks.popitem(last=False)

    def get(self, message_id: str) -> str | None:
        return self._marks.get(message_id)

    def forget(self, message_id: str) -> None:
        self._marks.pop(message_id, None)


class JournalIndex:
    """What the journal says of replies, read on demand from a point in time on.

    ``lookup(ids, since_ms)`` reads the journal from the first record at or after
    ``since_ms`` (Kafka's time index) up to its end now, once: later look-ups go on from
    where the last one stopped, unless they ask for an earlier time."""

    def __init__(self, kafka: str, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.known: dict[str, str] = {}
        self.from_ms: int | None = None
        self.read_to: dict[int, int] = {}  # partition -> next offset to read
        self.records_read = 0

    async def lookup(self, message_ids: Iterable[str], since_ms: int) -> dict[str, str]:
        wanted = list(message_ids)
        if self.from_ms is None or since_ms < self.from_ms:
            self.known.clear()
            self.read_to = {}
            self.from_ms = since_ms
        await self._read()
        return {m: self.known[m] for m in wanted if m in self.known}

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None, **client_options(),
                                    enable_auto_commit=False, request_timeout_ms=10_000)
        await consumer.start()
        try:
            await consumer.topics()
            tps = [TopicPartition(self.topic, p)
                   for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
            if not tps:
                return
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            todo = [tp for tp in tps if tp.partition not in self.read_to]
            if todo:
                found = await consumer.offsets_for_times({tp: self.from_ms for tp in todo})
                for tp in todo:
                    at = found.get(tp)
                    self.read_to[tp.partition] = at.offset if at is not None else ends[tp]
            remaining = set()
            for tp in tps:
                start = min(self.read_to[tp.partition], ends[tp])
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    remaining.add(tp)
                else:
                    self.read_to[tp.partition] = ends[tp]
            known = self.known
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batches.items():
                    for r in records:
                        self.records_read += 1
                        if b"Reply" in r.value:  # cheap: most journal events are others
                            try:
                                event = codec.decode(r.value)
                            except codec.CodecError:
                                continue
                            mid = getattr(event, "message_id", None)
                            if mid is not None:
                                kind = outcome_of(known.get(mid), event)
                                if kind is not None:
                                    known[mid] = kind
                        self.read_to[tp.partition] = r.offset + 1
                        if r.offset + 1 >= ends[tp]:
                            remaining.discard(tp)
        finally:
            await consumer.stop()
