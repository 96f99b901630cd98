"""The webhooks' writes to the broker (``Ingest.store``): every record a request stores (its
text on sms-received, a TextRejected or TextTimeClamped in the journal, a delivery report
and its SettleReply, a Bird event) waits in its partition's lane, and the records waiting
in a lane go to the producer together, as one record batch (``send_batch``: one future per
batch, not one per record; profiled: aiokafka's ``send`` and its future per record were
about 10% of a webhook's CPU). Each request still waits for the broker's acknowledgement
(acks=all) of its own batch before its 200, and gets that batch's error if it fails.

Which records go together: in each partition, those queued while the lane's previous batch
was being handed to the producer (``send_batch`` waits until the partition's batch before
it is taken by a produce request), and at least all those queued in one turn of the event
loop (a lane takes its records in a later turn). One task per partition hands its batches
over in order, so a key's records (one partition) keep the order in which their requests
stored them, and a partition whose leader is away holds up its own lane only. A record
whose request gave up (its ack timeout, the client gone) before its batch was taken is not
sent: that request answered 503 and the text was not stored.

Errors: ``store`` raises what the producer raised for the batch (aiokafka's errors, e.g.
``KafkaTimeoutError``, ``ProducerClosed``, ``UnknownTopicOrPartitionError``); the caller
bounds the wait (``asyncio.timeout``) and answers 503 (MessageBird retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("antirelou")


class Lane:
    """One partition's records waiting for their batch, and the task that sends them."""

    __slots__ = ("topic", "partition", "waiting", "wake", "task")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.waiting: list[tuple[bytes, bytes, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None


class Ingest:
    """``await store(topic, key, value)``: stored (acknowledged) once it returns.

    ``producer()`` gives the aiokafka producer to write with (None: not available; then
    ``fallback(topic, key, value)`` queues one record the ordinary way and returns its ack
    future)."""

    def __init__(self, producer: Callable[[], Awaitable[Any]],
                 fallback: Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]] | None = None
                 ) -> None:
        self._producer = producer
        self._fallback = fallback
        self._lanes: dict[tuple[str, int], Lane] = {}
        self._known: set[str] = set()  # topics whose metadata the producer holds
        # What was handed to the producer: records, record batches, records failed (/health).
        self.records = 0
        self.batches = 0
        self.failed = 0

    def stats(self) -> dict[str, int]:
        return {"records": self.records, "batches": self.batches, "failed": self.failed}

    async def store(self, topic: str, key: bytes, value: bytes) -> None:
        kafka = await self._producer()
        if kafka is None:  # another transport: one record at a time, its own future
            if self._fallback is None:
                raise ConnectionError("no producer to store the record with")
            acked = await self._fallback(topic, key, value)
            self.records += 1
            self.batches += 1
            await acked
            return
        if topic not in self._known:
            await kafka.partitions_for(topic)  # the topic's metadata, as send() waits for it
            self._known.add(topic)
        # The partition ``send`` would give the key (the producer's partitioner).
        partition = kafka._partition(topic, None, None, None, key, value)
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = Lane(topic, partition)
        done = asyncio.get_running_loop().create_future()
        lane.waiting.append((key, value, done))
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._run(lane))
        lane.wake.set()
        await done

    async def close(self) -> None:
        """Stop the lanes; a request still waiting gets an error (the server is stopping)."""
        lanes = list(self._lanes.values())
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        for lane in lanes:
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
            self._fail([done for *_, done in lane.waiting],
                       ConnectionError("the web server is stopping"))
            lane.waiting.clear()

    async def _run(self, lane: Lane) -> None:
        """The lane's batches, one after the other: each takes every record waiting."""
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            waiting, lane.waiting = lane.waiting, []
            waiting = [item for item in waiting if not item[2].done()]  # not given up on
            if not waiting:
                continue
            try:
                await self._send(lane, waiting)
            except asyncio.CancelledError:
                self._fail([done for *_, done in waiting],
                           ConnectionError("the web server is stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - its requests get it; the lane goes on
                self._fail([done for *_, done in waiting], exc)

    async def _send(self, lane: Lane, waiting: list[tuple[bytes, bytes, asyncio.Future]]
                    ) -> None:
        kafka = await self._producer()
        if kafka is None:
            raise ConnectionError("the producer is not available")
        # Mostly one batch; a full one goes before the next (aiokafka's batch size).
        batches: list[tuple[Any, list[asyncio.Future]]] = [(kafka.create_batch(), [])]
        for key, value, done in waiting:
            batch, futures = batches[-1]
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch, futures = kafka.create_batch(), []
                batches.append((batch, futures))
                batch.append(key=key, value=value, timestamp=None)
            futures.append(done)
        for batch, futures in batches:
            if all(done.done() for done in futures):  # every request gave up meanwhile
                continue
            try:
                acked = await kafka.send_batch(batch, lane.topic, partition=lane.partition)
            except Exception as exc:  # noqa: BLE001 - this batch's requests get the error
                self._fail(futures, exc)
                continue
            self.records += len(futures)
            self.batches += 1
            acked.add_done_callback(lambda f, futures=futures: self._settle(f, futures))

    def _settle(self, acked: asyncio.Future, futures: list[asyncio.Future]) -> None:
        if acked.cancelled():
            self._fail(futures, ConnectionError("the record batch was cancelled"))
            return
        exc = acked.exception()
        if exc is not None:
            log.error("webhook records not stored (a record batch of %d): %s", len(futures),
                      type(exc).__name__)
            self._fail(futures, exc)
            return
        for done in futures:
            if not done.done():
                done.set_result(None)

    def _fail(self, futures: list[asyncio.Future], exc: BaseException) -> None:
        for done in futures:
            if not done.done():
                self.failed += 1
                done.set_exception(exc)
