"""The send stage's batches (infra/faust/batches.py), with plain records: a busy batch holds no
record, a record is acknowledged only after its batch, a failed batch is not."""

from __future__ import annotations

import asyncio

import pytest

from infra.faust.batches import BatchWorkers


class Recorder:
    def __init__(self, slow: set[int] = frozenset(), failing: set[int] = frozenset()):
        self.slow = slow
        self.failing = failing
        self.release = asyncio.Event()
        self.batches: list[list[int]] = []
        self.acked: list[int] = []
        self.failed: list[tuple[list[int], str]] = []

    async def handle(self, batch):
        self.batches.append(list(batch))
        if self.slow & set(batch):
            await self.release.wait()
        if self.failing & set(batch):
            raise ConnectionError("broker away")

    async def ack(self, record):
        self.acked.append(record)

    async def on_failure(self, batch, exc):
        self.failed.append((list(batch), type(exc).__name__))


async def until(condition, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_records_after_a_slow_batch_go_to_the_free_workers_not_behind_it():
    # The bug this replaces (Faust's take_events): the record after a slow batch waited in
    # the busy actor until that batch ended (40 s for a provider answering late).
    async def scenario():
        r = Recorder(slow={1})
        workers = BatchWorkers(r.handle, r.ack, workers=4, size=64, window=0.01,
                               on_failure=r.on_failure)
        await workers.put(1)
        await until(lambda: r.batches == [[1]])
        for record in (2, 3, 4, 5):
            await workers.put(record)
        await until(lambda: sorted(r.acked) == [2, 3, 4, 5])
        assert 1 not in r.acked and workers.busy == 1  # the slow one: not acknowledged yet
        r.release.set()
        await until(lambda: 1 in r.acked)
        await workers.stop()

    asyncio.run(scenario())


def test_a_batch_takes_what_waits_up_to_its_size_and_is_acknowledged_after_it_is_handled():
    async def scenario():
        r = Recorder()
        workers = BatchWorkers(r.handle, r.ack, workers=1, size=3, window=0.05,
                               on_failure=r.on_failure)
        for record in range(7):
            await workers.put(record)
        await until(lambda: len(r.acked) == 7)
        assert [len(b) for b in r.batches] == [3, 3, 1]
        assert sorted(sum(r.batches, [])) == list(range(7))
        assert r.acked == sum(r.batches, [])  # each record after its own batch
        await workers.stop()

    asyncio.run(scenario())


def test_a_failed_batch_is_not_acknowledged_and_is_handed_back_the_others_are():
    async def scenario():
        r = Recorder(failing={2})
        workers = BatchWorkers(r.handle, r.ack, workers=1, size=1, window=0,
                               on_failure=r.on_failure)
        for record in (1, 2, 3):
            await workers.put(record)
        await until(lambda: len(r.acked) == 2)
        assert r.acked == [1, 3]
        assert r.failed == [([2], "ConnectionError")] and workers.failures == 1
        await workers.stop()

    asyncio.run(scenario())


def test_the_queue_is_bounded_by_every_worker_s_next_batch():
    async def scenario():
        r = Recorder(slow={0})
        workers = BatchWorkers(r.handle, r.ack, workers=1, size=2, window=0,
                               on_failure=r.on_failure)
        await workers.put(0)
        await until(lambda: r.batches == [[0]])
        await workers.put(1)
        await workers.put(2)  # the queue holds 2 (1 worker x 2)
        put = asyncio.ensure_future(workers.put(3))
        await asyncio.sleep(0.05)
        assert not put.done()  # the stream is read no further ahead
        r.release.set()
        await asyncio.wait_for(put, 5)
        await until(lambda: sorted(r.acked) == [0, 1, 2, 3])
        await workers.stop()

    asyncio.run(scenario())


def test_bad_settings_are_refused():
    async def noop(*_):
        return None

    with pytest.raises(ValueError, match="workers >= 1"):
        BatchWorkers(noop, noop, workers=0, size=1, window=0, on_failure=noop)
