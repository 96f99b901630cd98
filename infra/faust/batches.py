"""The send stage's batches: records wait in one queue until a free batch takes them.

Faust's ``take_events`` keeps draining its actor's stream while that actor's batch is being
handled: the next record waits inside the busy actor (in ``add_to_buffer``) until the batch
ends. In the send stage a batch can last as long as its slowest reply (a provider answering
40 s late, a reply in backoff), so a reply that arrived right after it waited for it too,
however many other actors were free (found with the batch-kill test of
tests/e2e/test_send_faults.py: under load the five replies of one write went out together,
40 s late). Here one actor only takes records from the stream and puts them in a bounded
queue; ``workers`` tasks each take what is waiting (up to ``size``, for at most ``window``
seconds after the first) and handle it. A busy batch holds no record.

A record is acknowledged only once its batch was handled. A batch whose handling raised
(e.g. the broker went away while its attempts were written) is not acknowledged: it is
reported to ``on_failure`` with its records, which the send stage fetches again (it sends a
reply at most once whatever it is given: streams.rules.sendstate).

Upstream: no issue filed (``Stream.take_events``' buffering, by design); checked against
faust-streaming 0.15.3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("antirelou")

Handle = Callable[[Sequence[Any]], Awaitable[None]]


class BatchWorkers:
    def __init__(self, handle: Handle, ack: Callable[[Any], Awaitable[Any]], *,
                 workers: int, size: int, window: float,
                 on_failure: Callable[[Sequence[Any], BaseException], Awaitable[None]]
                 ) -> None:
        if workers < 1 or size < 1 or window < 0:
            raise ValueError("need workers >= 1, size >= 1, window >= 0")
        self._handle = handle
        self._ack = ack
        self._on_failure = on_failure
        self.size = size
        self.window = window
        # Bounded: the stream is read no further ahead than every worker's next batch.
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=workers * size)
        self._count = workers
        self._tasks: list[asyncio.Task[None]] = []
        self.busy = 0  # batches being handled now (tests)
        self.failures = 0  # batches handed back (tests)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._work()) for _ in range(self._count)]

    async def put(self, record: Any) -> None:
        """Queue one record (waits while every worker has a full batch waiting)."""
        self.start()
        await self._queue.put(record)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def take(self) -> list[Any]:
        """The next batch: the first record waiting, then what follows within the window."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.window
        while len(batch) < self.size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self.take()
            self.busy += 1
            try:
                await self._handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the batch is fetched again
                self.failures += 1
                try:
                    await self._on_failure(batch, exc)
                except Exception as again:  # noqa: BLE001 - the worker must go on
                    log.error("a failed batch of %d record(s) could not be fetched again: "
                              "%s", len(batch), type(again).__name__)
                continue
            finally:
                self.busy -= 1
            for record in batch:
                await self._ack(record)
