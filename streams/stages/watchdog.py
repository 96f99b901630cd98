"""The watchdog timers: ``redeliver_dropped_records`` fetches again records Faust took from
aiokafka but never handed to an agent; ``snapshot_campaigns`` (leader) writes each changed
campaign's snapshot with the journal's end offsets. Both ask the broker for end offsets
through one long-lived client (``EndOffsets``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.faust.lost_tail import resume_at_end
from infra.faust.recovery_guard import RecoveryGuard
from infra.kafka_auth import client_options
from schemas import codec
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


class EndOffsets:
    """One long-lived client for the broker's end offsets (a client per call would connect
    and fetch metadata every time); a new one after any error."""

    def __init__(self, kafka: str, timeout_s: float = 5.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self.client: AIOKafkaConsumer | None = None

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.stop()

    async def of(self, topic: str | None = None,
                 tps: Sequence[Any] = ()) -> dict[tuple[str, int], int]:
        """End offsets of ``tps``, or of every partition of ``topic``; by (topic, partition)."""
        if self.client is None:
            self.client = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None, **client_options(),
                                           enable_auto_commit=False)
            try:
                await self.client.start()
            except Exception:
                await self.close()  # stop what start() left half open
                raise
        client = self.client
        try:
            # Bounded: a request sent while the broker was down otherwise waits for the
            # client's 40 s request timeout, and the checks that need it wait with it.
            if topic is not None:
                await asyncio.wait_for(client.topics(), self.timeout_s)  # fresh metadata
                tps = [TopicPartition(topic, p)
                       for p in sorted(client.partitions_for_topic(topic) or ())]
            ends = await asyncio.wait_for(client.end_offsets(
                [TopicPartition(tp.topic, tp.partition) for tp in tps]),
                self.timeout_s) if tps else {}
        except Exception:
            await self.close()  # a new client next time
            raise
        return {(tp.topic, tp.partition): o for tp, o in ends.items()}


def register_watchdog(rt: Runtime) -> None:
    app, settings = rt.app, rt.settings
    end_offsets = EndOffsets(settings.kafka)
    refetch = Refetch(rt, end_offsets)
    recovery = rt.recovery_guard = RecoveryGuard(
        app.tables.recovery, lambda: app.consumer, lambda tps: end_offsets.of(tps=tps))
    snapshot_seqs: dict[str, int] = {}

    @app.on_before_shutdown.connect
    async def on_shutdown_close_offsets_client(app: faust.App, **kwargs: Any) -> None:
        await end_offsets.close()

    @app.timer(interval=settings.redelivery_check_s)
    async def redeliver_dropped_records() -> None:
        try:
            await refetch.check()
        except Exception as exc:  # noqa: BLE001 - e.g. the broker is down; try again later
            log.info("check for undelivered records skipped: %s", type(exc).__name__)
            refetch.suspects.clear()

    @app.timer(interval=2.0)
    async def unstick_table_recovery() -> None:
        try:
            await recovery.check()
        except Exception as exc:  # noqa: BLE001 - e.g. the broker is down; try again later
            log.info("check of the table recovery skipped: %s", type(exc).__name__)

    if rt.deciders is None:  # the send role: no campaign shard to snapshot
        return

    @app.timer(interval=settings.snapshot_interval_s, on_leader=True)
    async def snapshot_campaigns() -> None:
        try:
            await take_snapshots(rt, end_offsets, snapshot_seqs)
        except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker
            log.warning("campaign snapshot skipped (%s: %s); next try in %g s",
                        type(exc).__name__, exc, settings.snapshot_interval_s)


async def take_snapshots(rt: Runtime, end_offsets: EndOffsets,
                         snapshot_seqs: dict[str, int]) -> None:
    # Offsets first, states second: every event after the snapshot lies after them. The
    # shards give only states the journal holds (a batch decided and not yet journaled is
    # not in them: actors/remote.py JournalShard.snapshot).
    offsets = {p: o for (_, p), o in (await end_offsets.of(rt.names["journal"])).items()}
    for campaign_id, seq, record in await rt.deciders.snapshot(offsets, dict(snapshot_seqs)):
        await rt.acknowledged(rt.topics.snapshots.send(key=campaign_id.encode(), value=record))
        snapshot_seqs[campaign_id] = seq


async def resume_after_loss(rt: Runtime, tp: Any, ahead: int, end: int, found: str) -> bool:
    """``tp`` ends at ``end`` but this worker had read or committed up to ``ahead``: a
    RecordsLost fact (logged loudly, journaled, counted for /health) and the partition read
    again from ``end`` (infra/faust/lost_tail.py). False if nothing was lost."""
    fact = rt.tail_guard.check(tp.topic, tp.partition, ahead, end, found, rt.now_ms())
    if fact is None:
        return False
    await resume_at_end(rt.app.consumer, tp, end)
    rt.app.monitor.tp_read_offsets.pop(tp, None)
    try:
        await rt.acknowledged(rt.produce(rt.topics.journal, tp.topic.encode(),
                                         codec.encode(fact)))
    except Exception as exc:  # noqa: BLE001 - said in the log already; go on
        log.error("RecordsLost not journaled: %s", type(exc).__name__)
    return True


class Refetch:
    """Faust 0.15.3 sometimes drops records it has already taken from aiokafka (seen after a
    worker restart on an existing group: aiokafka's position moves past a text that no agent
    ever gets, and nothing fetches it again until the next rebalance), and after a broker
    restart a partition may not be fetched again at all. ``check`` compares, for each source
    partition, the broker's end offset with what Faust handed to the agents; when records
    are waiting, nothing of the partition is pending in the agents, and the picture has not
    moved for two checks, it seeks the partition back to the first undelivered offset.
    Redelivery is harmless: every agent is idempotent."""

    def __init__(self, rt: Runtime, end_offsets: EndOffsets) -> None:
        self.rt = rt
        self.end_offsets = end_offsets
        names = rt.names
        self.sources = {names["inbound"], names["requests"], names["outbound"],
                        names["control"]}
        self.suspects: dict[Any, tuple[int, int]] = {}

    async def check(self) -> None:
        app, suspects = self.rt.app, self.suspects
        consumer = app.consumer
        if app.rebalancing or not consumer.flow_active:
            suspects.clear()
            return
        pending = {message.tp for message in consumer.unacked}
        watched = [tp for tp in consumer.assignment() if tp.topic in self.sources]
        if not watched:
            return
        # Where the worker is, taken before the broker is asked for its end offsets: the
        # consumer goes on reading while the answer is awaited, and a position read after
        # it may lie past that (older) end, which looked like acknowledged records lost
        # (measured: a RecordsLost and a seek back every few seconds at 100 texts/s).
        read_offsets = app.monitor.tp_read_offsets
        positions = {tp: (read_offsets.get(tp), consumer._read_offset.get(tp)) for tp in watched}
        ends = await self.end_offsets.of(tps=watched)
        for tp in watched:
            end = ends.get((tp.topic, tp.partition))
            if end is None:
                suspects.pop(tp, None)
                continue
            # The last offset handed to the agents (Faust's monitor, not moved by seeks),
            # else where this assignment started: the committed offset or the beginning.
            last, read_from = positions[tp]
            expected = last + 1 if last is not None else await self.rt.start_offset(tp)
            # Faust drops what it fetches below its read offset (the last record read, or
            # the committed offset after a rebalance): read_from.
            ahead = max(x for x in (expected, read_from, -1) if x is not None)
            if end < ahead:
                # The broker lost records this worker had read or committed: waiting for
                # them would leave every new record unread. Said, and read from the end.
                await resume_after_loss(self.rt, tp, ahead, end,
                                        "position" if last is not None else "committed")
                suspects.pop(tp, None)
                continue
            if tp in pending or expected is None or end <= expected:
                suspects.pop(tp, None)
                continue
            if suspects.get(tp) != (end, expected):
                suspects[tp] = (end, expected)
                continue
            log.warning("%s: records %d..%d are waiting but were never delivered; fetching "
                        "them again", tp, expected, end - 1)
            await consumer.seek_wait({tp: expected})
            suspects.pop(tp, None)
            self.rt.redelivered += end - expected
