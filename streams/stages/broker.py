"""Under `antirelou up`, after its embedded broker died and was restarted (infra/supervisor.py):
each source partition this worker had read past the end the broker came back with is read
again from that end (RecordsLost, said loudly), and the texts the webhook acknowledged in
the seconds before the death are written again (the screening takes a text given twice
once). See streams/lost_tail.py; the README's "Reliability"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from streams.lost_tail import AckWindow, resume_at_end
from streams.stages.runtime import Runtime
from streams.stages.watchdog import resume_after_loss

log = logging.getLogger("antirelou")


def register_broker_recovery(rt: Runtime) -> None:
    if rt.settings.broker_status is None:  # a broker this process does not run
        return
    window = rt.ack_window = AckWindow()
    sources = {rt.names["inbound"], rt.names["requests"], rt.names["outbound"],
               rt.names["control"]}
    restarts_seen = [0]
    # (topic, partition) -> (end the broker came back with, where this worker was): the
    # rebalance that follows a restart can seek a partition back to offsets this worker
    # committed before it (Faust commits on revoke), past the end: read from the end again.
    lost: dict[tuple[str, int], tuple[int, int]] = {}
    assigned = [False]

    def ahead_of(consumer, tp, position: int | None) -> int:
        read = consumer._read_offset.get(tp)
        return max(read + 1 if read is not None else -1,
                   consumer._committed_offset.get(tp) or -1, position or -1)

    async def resume_what_the_broker_kept(ends: Mapping[tuple[str, int], int]) -> None:
        consumer = rt.app.consumer
        lost.clear()
        for tp in list(consumer.assignment()):
            end = ends.get((tp.topic, tp.partition))
            if tp.topic not in sources or end is None:
                continue
            ahead = ahead_of(consumer, tp, await consumer.position(tp))
            if await resume_after_loss(rt, tp, ahead, end, "position"):
                lost[(tp.topic, tp.partition)] = (end, ahead)

    @rt.app.on_partitions_assigned.connect
    async def on_assigned_check_again(app, assigned_: object = None, **kwargs: object) -> None:
        assigned[0] = True

    async def after_the_rebalance() -> None:
        assigned[0] = False
        consumer = rt.app.consumer
        for tp in list(consumer.assignment()):
            span = lost.get((tp.topic, tp.partition))
            if span is None:
                continue
            end, ahead = span
            at = ahead_of(consumer, tp, await consumer.position(tp))
            if end < at <= ahead:
                log.warning("%s partition %d: sought to offset %d again after the rebalance "
                            "(the group had committed %d, past what the broker kept)",
                            tp.topic, tp.partition, end, at)
                await resume_at_end(consumer, tp, end)

    @rt.app.timer(interval=0.2)
    async def recover_from_a_broker_crash() -> None:
        status = rt.broker_status()
        if not status.up:
            return
        if assigned[0] and lost and not rt.app.rebalancing:
            try:
                await after_the_rebalance()
            except Exception as exc:  # noqa: BLE001
                log.error("after the rebalance: %s", type(exc).__name__)
        if status.restarts > restarts_seen[0]:
            try:
                await resume_what_the_broker_kept(status.ends_at_restart or {})
            except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker
                log.error("after the broker's restart: %s; trying again", type(exc).__name__)
                return
            restarts_seen[0] = status.restarts
        again = window.to_rewrite(status)
        if not again:
            return
        try:
            futures = [await rt.produce(rt.topics.inbound, k, v) for k, v in again]
            await asyncio.gather(*futures)
        except Exception as exc:  # noqa: BLE001
            log.error("could not write again %d text(s) acknowledged before the broker "
                      "died: %s; trying again", len(again), type(exc).__name__)
            window.retry_later(len(again))
            return
        log.warning("wrote again the %d text(s) acknowledged in the %g s before the broker "
                    "died (it keeps about its last second only); the screening takes a text "
                    "given twice once", len(again), window.seconds)
