"""The producer's partitioner: aiokafka's default (Kafka's murmur2 of the key), each key's
hash kept.

aiokafka computes murmur2 in pure Python on every keyed send: 5% of the worker's CPU while
it answered webhooks (py-spy), for keys that repeat (sender pseudonyms, campaign ids).
``MemoPartitioner`` gives exactly the partition ``DefaultPartitioner`` gives (same hash,
same mask and modulo; no key: the same random choice), keeping up to ``max_keys`` hashes,
oldest dropped first. Keys are what the records already carry (pseudonyms, ids; never a
number in clear).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2

MAX_KEYS = 65_536


class MemoPartitioner:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max = max_keys
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: Sequence[int],
                 available: Sequence[int]) -> int:
        if type(key) is not bytes:  # None (random), or a key type not worth keeping
            return self._default(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
            if len(self._hashes) > self._max:
                del self._hashes[next(iter(self._hashes))]
        return all_partitions[hashed % len(all_partitions)]
