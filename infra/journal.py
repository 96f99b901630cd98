"""Read the journal topic from Kafka: the whole history, or follow it live.

Used at start-up (campaign shards rebuild their state from the decisions), by
``antirelou journal`` and by the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import codec


async def _consumer(bootstrap: str, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        request_timeout_ms=15_000,
    )
    await consumer.start()
    await consumer.topics()  # fetches the cluster's metadata for all topics
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.stop()
        return consumer, []
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def iter_journal(
    bootstrap: str, topic: str, follow: bool = False
) -> AsyncIterator[tuple[int, int, Any]]:
    """Yield (partition, offset, event) from the beginning; stop at the end unless following."""
    consumer, tps = await _consumer(bootstrap, topic)
    if not tps:
        return
    try:
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while follow or remaining:
            batches = await consumer.getmany(*tps, timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    yield tp.partition, r.offset, codec.decode(r.value)
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_journal_async(bootstrap: str, topic: str) -> list[Any]:
    return [event async for _, _, event in iter_journal(bootstrap, topic)]


def read_journal(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(read_journal_async(bootstrap, topic))
