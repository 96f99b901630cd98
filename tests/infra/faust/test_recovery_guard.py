"""RecoveryGuard: a table recovery that waits for good is fetched again or told what is gone.

The Recovery and consumer below carry only the attributes of Faust's that the guard reads;
the e2e tests run it inside real workers (tests/e2e/test_scaleout_workers.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from infra.faust.recovery_guard import RecoveryGuard, Remedy, remedy


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


A, B = TP("app-senders-changelog", 0), TP("app-senders-changelog", 1)


@dataclass
class Recovery:
    in_recovery: bool = True
    _recovery_started_at: float = 0.0
    active_highwaters: Counter = field(default_factory=Counter)
    active_offsets: Counter = field(default_factory=Counter)
    _active_events_received_at: dict = field(default_factory=dict)


@dataclass
class Consumer:
    _paused_partitions: set = field(default_factory=set)
    seeks: list = field(default_factory=list)
    resumed: list = field(default_factory=list)

    def resume_partitions(self, tps) -> None:
        self.resumed.extend(tps)
        self._paused_partitions.difference_update(tps)

    async def seek_wait(self, offsets) -> None:
        self.seeks.extend(offsets.items())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guard_for(recovery: Recovery, ends: dict, consumer: Consumer | None = None):
    consumer = consumer or Consumer()
    clock = Clock()
    asked: list = []

    async def end_offsets(tps):
        asked.append(list(tps))
        return {(tp.topic, tp.partition): ends[tp] for tp in tps if tp in ends}

    return RecoveryGuard(recovery, lambda: consumer, end_offsets, stall_s=10, clock=clock), \
        consumer, clock, asked


def test_remedy_fetches_again_what_the_broker_holds_and_lowers_what_it_lost():
    assert remedy(read=4, highwater=9, end=10) == Remedy(None, 5)  # all there, not coming
    assert remedy(read=-1, highwater=9, end=10) == Remedy(None, 0)
    assert remedy(read=None, highwater=3, end=4) == Remedy(None, 0)
    assert remedy(read=4, highwater=9, end=5) == Remedy(4, None)  # 5..9 gone: done at 4
    assert remedy(read=4, highwater=9, end=7) == Remedy(6, 5)  # 5, 6 there; 7..9 gone
    assert remedy(read=-1, highwater=9, end=0) == Remedy(-1, None)  # the partition is empty
    assert remedy(read=9, highwater=9, end=10) is None  # read up to the highwater: done
    assert remedy(read=4, highwater=9, end=None) is None  # the broker did not say


def test_a_partition_that_receives_records_is_left_alone_a_quiet_one_fetched_again():
    rec = Recovery(active_highwaters=Counter({A: 9, B: 5}),
                   active_offsets=Counter({A: -1, B: -1}))
    guard, consumer, clock, asked = guard_for(rec, {A: 10, B: 6})
    clock.now = 9.0
    assert guard.stalled() == [] and asyncio.run(guard.check()) == 0 and asked == []
    rec._active_events_received_at[A] = 8.0  # A is being read
    rec.active_offsets[A] = 3
    clock.now = 12.0
    assert guard.stalled() == [B]
    consumer._paused_partitions.add(B)
    assert asyncio.run(guard.check()) == 1
    assert consumer.seeks == [(B, 0)] and consumer.resumed == [B]
    assert guard.health()["fetched_again"] == 1 and rec.active_highwaters[B] == 5
    # Not again before another stall_s without a record.
    clock.now = 21.0
    assert guard.stalled() == [A]  # A: quiet since 8.0
    clock.now = 22.5
    assert sorted(guard.stalled(), key=lambda tp: tp.partition) == [A, B]


def test_a_highwater_the_broker_no_longer_reaches_is_lowered_so_recovery_can_end():
    rec = Recovery(active_highwaters=Counter({A: 41}), active_offsets=Counter({A: 37}))
    rec._active_events_received_at[A] = 1.0
    guard, consumer, clock, _ = guard_for(rec, {A: 38})  # the broker came back ending at 37
    clock.now = 11.5
    assert asyncio.run(guard.check()) == 1
    assert rec.active_highwaters[A] == 37 and consumer.seeks == []
    assert rec.active_highwaters[A] - rec.active_offsets[A] == 0  # nothing left to wait for
    health = guard.health()
    assert health["highwaters_lowered"] == 1 and health["records_gone"] == 4
    assert health["stalled"] == 0


def test_nothing_is_watched_outside_a_recovery_and_the_times_are_forgotten():
    rec = Recovery(in_recovery=False, active_highwaters=Counter({A: 9}),
                   active_offsets=Counter({A: -1}))
    guard, consumer, clock, asked = guard_for(rec, {A: 10})
    guard.remedied_at[A] = 3.0
    clock.now = 100.0
    assert asyncio.run(guard.check()) == 0 and asked == [] and guard.remedied_at == {}
    # A new recovery: counted from its own start.
    rec.in_recovery, rec._recovery_started_at = True, 95.0
    assert guard.stalled() == []
    clock.now = 105.0
    assert guard.stalled() == [A]
