"""The webhooks' writes to the broker (``Ingest.store``): every record a request stores (its
text on sms-received, a TextRejected or TextTimeClamped in the journal, a delivery report,
a Bird event) waits here for its turn, and the records that arrive together go to the
producer together, as one record batch per partition (``send_batch``: one future per batch,
not one per record; profiled: aiokafka's ``send`` and its future per record were about 10%
of a webhook's CPU). Each request still waits for the broker's acknowledgement (acks=all)
of its own batch before its 200, and gets that batch's error when it fails.

Which records go together: those queued while the previous round was being handed to the
producer, and at least all those queued in one turn of the event loop (the round starts in
the next turn). One task hands the rounds over, in order, and a round's batches go in the
order of its records, so a key's records (one partition) keep the order in which their
requests stored them. A record whose request gave up (timeout, client gone) before its
round was taken is not sent: that request answered 503 and its text was not stored.

Errors: ``store`` raises what the producer raised for its batch (aiokafka's errors, e.g.
``KafkaTimeoutError``, ``ProducerClosed``), or ``asyncio.TimeoutError`` from the caller's
own bound; the webhook answers 503 to any of them (MessageBird retries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("antirelou")


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
        # (topic, key, value, the request's future), in the order they were stored.
        self._queue: list[tuple[str, bytes, bytes, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # What was handed to the producer: records, record batches, rounds (/health).
        self.records = 0
        self.batches = 0
        self.rounds = 0
        self.failed = 0  # records whose batch failed

    def stats(self) -> dict[str, int]:
        return {"records": self.records, "batches": self.batches, "rounds": self.rounds,
                "failed": self.failed}

    async def store(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((topic, key, value, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._hand_over())
        self._wake.set()
        await done

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for *_, done in self._queue:
            if not done.done():
                done.set_exception(ConnectionError("the web server is stopping"))
        self._queue.clear()

    async def _hand_over(self) -> None:
        """The rounds, one after the other: each takes every record queued so far."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            queue, self._queue = self._queue, []
            queue = [item for item in queue if not item[3].done()]  # not given up on
            if not queue:
                continue
            self.rounds += 1
            try:
                await self._send_round(queue)
            except asyncio.CancelledError:
                for *_, done in queue:
                    if not done.done():
                        done.set_exception(ConnectionError("the web server is stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - the requests get it, the loop goes on
                self._fail(queue, exc)

    async def _send_round(self, queue: list[tuple[str, bytes, bytes, asyncio.Future]]) -> None:
        kafka = await self._producer()
        if kafka is None:
            await self._send_one_by_one(queue)
            return
        # Batches by (topic, partition), in the order their first record came.
        batches: dict[tuple[str, int], tuple[Any, list[asyncio.Future]]] = {}
        full: list[tuple[tuple[str, int], Any, list[asyncio.Future]]] = []
        known: set[str] = set()
        partition_of = kafka._partition
        for topic, key, value, done in queue:
            if topic not in known:
                await kafka.partitions_for(topic)  # the topic's metadata, as send() waits
                known.add(topic)
            tp = (topic, partition_of(topic, None, None, None, key, value))
            open_ = batches.get(tp)
            if open_ is None:
                open_ = batches[tp] = (kafka.create_batch(), [])
            if open_[0].append(key=key, value=value, timestamp=None) is None:
                # Full: it goes before the next one of the same partition.
                full.append((tp, *open_))
                open_ = batches[tp] = (kafka.create_batch(), [])
                open_[0].append(key=key, value=value, timestamp=None)
            open_[1].append(done)
        for tp, batch, waiting in (*full, *((tp, b, w) for tp, (b, w) in batches.items())):
            try:
                acked = await kafka.send_batch(batch, tp[0], partition=tp[1])
            except Exception as exc:  # noqa: BLE001 - this batch's requests get the error
                self._fail_batch(waiting, exc)
                continue
            self.records += len(waiting)
            self.batches += 1
            acked.add_done_callback(lambda f, waiting=waiting: self._settle(f, waiting))

    async def _send_one_by_one(self, queue: list[tuple[str, bytes, bytes, asyncio.Future]]
                               ) -> None:
        if self._fallback is None:
            raise ConnectionError("no producer to store the record with")
        for topic, key, value, done in queue:
            try:
                acked = await self._fallback(topic, key, value)
            except Exception as exc:  # noqa: BLE001
                self._fail_batch([done], exc)
                continue
            self.records += 1
            self.batches += 1
            future = asyncio.ensure_future(acked)
            future.add_done_callback(lambda f, done=done: self._settle(f, [done]))

    def _settle(self, acked: asyncio.Future, waiting: list[asyncio.Future]) -> None:
        if acked.cancelled():
            self._fail_batch(waiting, ConnectionError("the record batch was cancelled"))
            return
        exc = acked.exception()
        if exc is not None:
            self._fail_batch(waiting, exc)
            return
        for done in waiting:
            if not done.done():
                done.set_result(None)

    def _fail_batch(self, waiting: list[asyncio.Future], exc: BaseException) -> None:
        self.failed += len(waiting)
        for done in waiting:
            if not done.done():
                done.set_exception(exc)

    def _fail(self, queue: list[tuple[str, bytes, bytes, asyncio.Future]],
              exc: BaseException) -> None:
        log.error("webhook records not handed to the producer: %s", type(exc).__name__)
        self._fail_batch([done for *_, done in queue], exc)
