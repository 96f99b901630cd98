"""The producer's partitioner gives aiokafka's default partitions; the runtime asks Faust
for its producer once while it runs."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner

from infra.partitioner import MemoPartitioner
from streams.stages.runtime import Runtime


def test_memo_partitioner_gives_the_default_partition_for_any_key():
    memo, default, rng = MemoPartitioner(max_keys=50), DefaultPartitioner(), random.Random(7)
    keys = [rng.randbytes(rng.randint(0, 40)) for _ in range(3000)]
    keys += [f"s_{i % 80}".encode() for i in range(3000)]  # repeated: from the memo
    for key in keys:
        for n in (1, 4, 12):
            partitions = list(range(n))
            assert memo(key, partitions, partitions) == default(key, partitions, partitions)
    assert len(memo._hashes) <= 51  # bounded
    assert memo(None, [0, 1, 2], [2]) == 2  # no key: one of the available ones, as the default


def test_kafka_producer_asks_faust_once_while_its_producer_runs():
    calls = []
    faust_producer = SimpleNamespace(started=True, should_stop=False,
                                     _ensure_producer=lambda: "aiokafka producer")

    async def maybe_start_producer():
        calls.append(1)
        return faust_producer

    rt = SimpleNamespace(app=SimpleNamespace(maybe_start_producer=maybe_start_producer),
                         _started_producer=None)

    async def ask(n: int) -> list:
        return [await Runtime.kafka_producer(rt) for _ in range(n)]

    assert asyncio.run(ask(3)) == ["aiokafka producer"] * 3 and len(calls) == 1
    faust_producer.should_stop = True  # stopped or crashed: asked again
    asyncio.run(ask(2))
    assert len(calls) == 3
