"""The producer's partitioner gives aiokafka's default partitions."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from infra.partitioner import MemoPartitioner


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
