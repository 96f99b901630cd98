"""Read the journal topic from Kafka: the whole history, or follow it live.

Used at start-up (campaign shards rebuild their state from the decisions), by
``antirelou journal`` and by the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_auth import client_options
from schemas import codec


async def _consumer(bootstrap: str, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        request_timeout_ms=15_000, **client_options(),  # this process's Kafka user
    )
    try:
        await consumer.start()
        await consumer.topics()  # fetches the cluster's metadata for all topics
    except Exception:
        await consumer.stop()  # what start() left half open (the broker is away)
        raise
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.stop()
        return consumer, []
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def iter_records(
    bootstrap: str, topic: str, follow: bool = False, start: dict[int, int] | None = None
) -> AsyncIterator[tuple[int, int, bytes | None, bytes]]:
    """Yield (partition, offset, key, value) from ``start`` offsets (default: the beginning);
    stop at the end unless following."""
    consumer, tps = await _consumer(bootstrap, topic)
    if not tps:
        return
    try:
        for tp in tps:
            if start and start.get(tp.partition):
                consumer.seek(tp, start[tp.partition])
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > (start or {}).get(tp.partition, 0)}
        while follow or remaining:
            batches = await consumer.getmany(*tps, timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    yield tp.partition, r.offset, r.key, r.value
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()


async def iter_journal(
    bootstrap: str, topic: str, follow: bool = False, start: dict[int, int] | None = None
) -> AsyncIterator[tuple[int, int, Any]]:
    """Yield (partition, offset, event) from ``start`` (default: the beginning)."""
    async for partition, offset, _, value in iter_records(bootstrap, topic, follow, start):
        yield partition, offset, codec.decode(value)


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer, tps = await _consumer(bootstrap, topic)
    if not tps:
        return {}
    try:
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def latest_by_key(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The last value of every key (what a compacted topic converges to)."""
    return {key: value async for _, _, key, value in iter_records(bootstrap, topic)
            if key is not None}


async def read_journal_async(bootstrap: str, topic: str) -> list[Any]:
    return [event async for _, _, event in iter_journal(bootstrap, topic)]


def read_journal(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(read_journal_async(bootstrap, topic))


@dataclass(frozen=True)
class KafkaJournal:
    """The journal and snapshot topics of one cluster, as the campaign shards recover from
    them (``actors.remote.JournalSource``; picklable, for Ray)."""

    kafka: str

    def events(self, topic: str, start: dict[int, int] | None = None
               ) -> AsyncIterator[tuple[int, int, Any]]:
        return iter_journal(self.kafka, topic, start=start)

    async def latest_by_key(self, topic: str) -> dict[bytes, bytes]:
        return await latest_by_key(self.kafka, topic)
