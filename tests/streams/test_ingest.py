"""The webhooks' writer (streams/stages/ingest.py ``Ingest``) against the real broker and a
real aiokafka producer (acks=all): what is stored in one turn of the event loop goes as one
record batch per partition, each store returns once its batch is acknowledged, a key's
records keep their order, a failure reaches every request of its batch, and a request that
gave up before its round is not written."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.broker import ensure_topics
from infra.partitioner import MemoPartitioner
from streams.stages.ingest import Ingest

pytestmark = pytest.mark.services

PARTITIONS = 3


def new_topic(kafka: str) -> str:
    topic = f"ingest-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, {topic: PARTITIONS})
    return topic


async def read_all(kafka: str, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition] += [(r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


async def started_producer(kafka: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all",
                                partitioner=MemoPartitioner())
    await producer.start()
    return producer


def test_records_stored_in_one_turn_go_as_one_batch_per_partition_in_order(kafka):
    topic = new_topic(kafka)

    async def run() -> tuple[Ingest, dict]:
        producer = await started_producer(kafka)

        async def get() -> AIOKafkaProducer:
            return producer

        ingest = Ingest(get)
        try:
            await ingest.store(topic, b"s_0", b"first")  # the topic's metadata, fetched once
            before = ingest.stats()
            # 60 requests at once (one turn), 6 senders, each sender's texts numbered.
            keys = [f"s_{i % 6}".encode() for i in range(60)]
            await asyncio.gather(*(ingest.store(topic, k, b"%s:%d" % (k, i))
                                   for i, k in enumerate(keys)))
            stats = {k: v - before[k] for k, v in ingest.stats().items()}
            # A later turn: one more record per sender, after the first ones.
            await asyncio.gather(*(ingest.store(topic, f"s_{i}".encode(), b"s_%d:late" % i)
                                   for i in range(6)))
        finally:
            await ingest.close()
            await producer.stop()
        return ingest, stats

    ingest, first = asyncio.run(run())
    stored = asyncio.run(read_all(kafka, topic))
    assert sum(len(v) for v in stored.values()) == 67
    used = [p for p in range(PARTITIONS) if stored[p]]
    assert len(used) > 1  # six keys over three partitions
    # One record batch per partition for the 60 of one turn.
    assert first == {"records": 60, "batches": len(used), "failed": 0}
    assert ingest.stats()["records"] == 67 and ingest.stats()["failed"] == 0
    for records in stored.values():
        by_key: dict[bytes, list[bytes]] = defaultdict(list)
        for key, value in records:
            by_key[key].append(value)
        for key, values in by_key.items():
            i = int(key[2:])
            # Each sender's records in the order they were stored, the late one last.
            assert values == [b"first"] * (i == 0) + [
                b"%s:%d" % (key, n) for n in range(i, 60, 6)] + [b"%s:late" % key]


def test_a_failed_batch_fails_every_request_in_it(kafka):
    topic = new_topic(kafka)

    async def run() -> list:
        producer = await started_producer(kafka)

        async def get() -> AIOKafkaProducer:
            return producer

        ingest = Ingest(get)
        await ingest.store(topic, b"s_ok", b"before")  # the producer works
        await producer.stop()  # from now on every batch is refused (ProducerClosed)
        results = await asyncio.gather(*(ingest.store(topic, b"s_%d" % i, b"after")
                                         for i in range(10)), return_exceptions=True)
        # The writer goes on after a failed round: a new producer takes the next one.
        producer = await started_producer(kafka)
        try:
            await ingest.store(topic, b"s_ok", b"again")
        finally:
            await ingest.close()
            await producer.stop()
        return results

    results = asyncio.run(run())
    assert len(results) == 10 and all(isinstance(r, Exception) for r in results), results
    stored = [v for records in asyncio.run(read_all(kafka, topic)).values()
              for _, v in records]
    assert sorted(stored) == [b"again", b"before"]


def test_a_request_that_gave_up_before_its_round_is_not_written(kafka):
    topic = new_topic(kafka)

    async def run() -> dict:
        producer = await started_producer(kafka)

        async def get() -> AIOKafkaProducer:
            return producer

        ingest = Ingest(get)
        try:
            gave_up = asyncio.create_task(ingest.store(topic, b"s_1", b"given up"))
            kept = asyncio.create_task(ingest.store(topic, b"s_2", b"kept"))
            await asyncio.sleep(0)  # both queued, their round not yet taken
            gave_up.cancel()  # as the ack timeout does
            await kept
            with pytest.raises(asyncio.CancelledError):
                await gave_up
            return ingest.stats()
        finally:
            await ingest.close()
            await producer.stop()

    assert asyncio.run(run())["records"] == 1
    stored = [v for records in asyncio.run(read_all(kafka, topic)).values()
              for _, v in records]
    assert stored == [b"kept"]
