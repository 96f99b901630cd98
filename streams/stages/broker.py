"""Under `antirelou up`, after its embedded broker died and was restarted (infra/supervisor.py):
each source partition this worker had read past the end the broker came back with is read
again from that end (RecordsLost, said loudly), and the texts the webhook acknowledged in
the seconds before the death are written again (the screening takes a text given twice
once). See infra/faust/lost_tail.py; the README's "Reliability"."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from infra.faust.lost_tail import AckWindow, resume_at_end
from streams.stages.runtime import Runtime
from streams.stages.watchdog import resume_after_loss

log = logging.getLogger("antirelou")

RESEEK_WINDOW_S = 60.0  # after a restart, assignments completed this soon are checked


def register_broker_recovery(rt: Runtime) -> None:
    if rt.settings.broker_status is None:  # a broker this process does not run
        return
    window = rt.ack_window = AckWindow()
    sources = {rt.names["inbound"], rt.names["requests"], rt.names["outbound"],
               rt.names["control"]}
    restarts_seen = [0]
    # (topic, partition) -> the end the broker came back with. Every record past it was
    # written after the restart; in the rebalance that follows, Faust can fetch some of
    # them while its flow is suspended, drop them undelivered, and even acknowledge and
    # commit them (measured: texts rewritten after the restart, offsets 3..10 of a
    # partition, never screened, the group's commit at 41); or seek a partition back to
    # offsets committed past that end. So each assignment completed within
    # RESEEK_WINDOW_S of the restart reads every source partition that is past its kept
    # end from that end again (redelivery is harmless: every stage is idempotent).
    kept_ends: dict[tuple[str, int], int] = {}
    restarted_at = [0.0]
    assigned = [False]

    def ahead_of(consumer, tp, position: int | None) -> int:
        read = consumer._read_offset.get(tp)
        return max(read + 1 if read is not None else -1,
                   consumer._committed_offset.get(tp) or -1, position or -1)

    async def resume_what_the_broker_kept(ends: Mapping[tuple[str, int], int]) -> None:
        consumer = rt.app.consumer
        kept_ends.clear()
        kept_ends.update({tp: end for tp, end in ends.items() if tp[0] in sources})
        restarted_at[0] = time.monotonic()
        assigned[0] = True  # check the current assignment too, once the flow is back
        for tp in list(consumer.assignment()):
            end = ends.get((tp.topic, tp.partition))
            if tp.topic not in sources or end is None:
                continue
            ahead = ahead_of(consumer, tp, await consumer.position(tp))
            await resume_after_loss(rt, tp, ahead, end, "position")

    @rt.app.on_partitions_assigned.connect
    async def on_assigned_check_again(app, assigned_: object = None, **kwargs: object) -> None:
        assigned[0] = True

    async def after_the_rebalance() -> None:
        assigned[0] = False
        consumer = rt.app.consumer
        for tp in list(consumer.assignment()):
            end = kept_ends.get((tp.topic, tp.partition))
            if end is None:
                continue
            at = ahead_of(consumer, tp, await consumer.position(tp))
            if at > end:
                log.warning("%s partition %d: read again from offset %d, the end the broker "
                            "came back with (this worker was at %d after the rebalance that "
                            "followed its restart)", tp.topic, tp.partition, end, at)
                await resume_at_end(consumer, tp, end)
                rt.app.monitor.tp_read_offsets.pop(tp, None)

    @rt.app.timer(interval=0.2)
    async def recover_from_a_broker_crash() -> None:
        status = rt.broker_status()
        if not status.up:
            return
        if (assigned[0] and kept_ends and not rt.app.rebalancing
                and rt.app.consumer.flow_active
                and time.monotonic() - restarted_at[0] < RESEEK_WINDOW_S):
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
        await _write_again_what_was_acknowledged(rt, window, status)


async def _write_again_what_was_acknowledged(rt: Runtime, window: AckWindow, status) -> None:
    """The texts the webhook acknowledged just before the broker died, written again."""
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
