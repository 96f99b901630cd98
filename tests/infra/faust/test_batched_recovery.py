"""The batched table recovery (infra/faust/patches.py) on Faust's own Recovery, Table and
in-memory store: the changelog records in the queue are applied in offset order (a value,
then a newer one, a tombstone), records at or below the offset seen are not applied again,
a record of a partition the worker does not hold is skipped, recovery is said to end once
every active partition is read to its highwater, and Faust's service still finds the task."""

from __future__ import annotations

import asyncio
from collections import Counter

import faust
import orjson
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message

from infra.faust.patches import batched_slurp_changelogs, install_batched_recovery


def changelog_event(app: faust.App, tp: TP, offset: int, key: str, value: bytes | None) -> Event:
    message = Message(tp.topic, tp.partition, offset, 0.0, 0, [], orjson.dumps(key), value,
                      None)
    return Event(app, key, value, {}, message)  # as decoded by the changelog topic


def test_installed_as_the_recovery_services_task() -> None:
    from faust.tables.recovery import Recovery

    assert install_batched_recovery(True)
    assert install_batched_recovery(True)  # once
    app = faust.App("recovery-task-test", store="memory://")
    tasks = list(app.tables.recovery._get_tasks())  # what mode starts: asserted ServiceTasks
    assert any(task.fun is batched_slurp_changelogs for task in tasks)
    assert Recovery._slurp_changelogs.fun is batched_slurp_changelogs
    assert install_batched_recovery(False) is False


def test_changelog_applied_in_order_until_the_highwater() -> None:
    app = faust.App("recovery-loop-test", store="memory://")
    table = app.Table("senders", default=None, partitions=2, value_type=bytes)
    recovery = app.tables.recovery
    topic = table.changelog_topic.get_topic_name()
    tp0, tp1, elsewhere = TP(topic, 0), TP(topic, 1), TP("other-changelog", 0)
    recovery.active_tps = {tp0, tp1}
    recovery.tp_to_table = {tp0: table, tp1: table}
    recovery.active_highwaters = Counter({tp0: 3, tp1: 0})
    recovery.active_offsets = Counter({tp0: -1, tp1: -1})
    recovery._set_recovery_started()  # as Faust does before reading
    events = [
        changelog_event(app, tp0, 0, "a", b"1"),
        changelog_event(app, tp0, 1, "b", b"2"),
        changelog_event(app, elsewhere, 5, "x", b"9"),  # no partition of ours: skipped
        changelog_event(app, tp1, 0, "c", b"3"),
        changelog_event(app, tp0, 2, "a", b"4"),  # newer value of a
        changelog_event(app, tp0, 2, "a", b"stale"),  # an offset seen (fetched again): skipped
        changelog_event(app, tp0, 3, "b", None),  # tombstone of b
    ]

    async def run() -> None:
        queue = app.tables.changelog_queue
        for event in events:
            queue.put_nowait(event)
        # Waiting before the loop starts, as Faust's recovery does: each pass clears it.
        ended = asyncio.ensure_future(recovery.signal_recovery_end.wait())
        task = asyncio.ensure_future(batched_slurp_changelogs(recovery))
        try:
            await asyncio.wait_for(ended, 10)
        finally:
            task.cancel()

    asyncio.run(run())
    assert dict(table.data.items()) == {"a": b"4", "c": b"3"}
    assert recovery.active_offsets == Counter({tp0: 3, tp1: 0})
    assert recovery.in_recovery is False


def test_recovery_does_not_end_before_the_highwater() -> None:
    app = faust.App("recovery-wait-test", store="memory://")
    table = app.Table("senders", default=None, partitions=1, value_type=bytes)
    recovery = app.tables.recovery
    tp = TP(table.changelog_topic.get_topic_name(), 0)
    recovery.active_tps, recovery.tp_to_table = {tp}, {tp: table}
    recovery.active_highwaters = Counter({tp: 5})
    recovery.active_offsets = Counter({tp: -1})
    recovery._set_recovery_started()  # as Faust does before reading

    async def run() -> bool:
        queue = app.tables.changelog_queue
        for offset in range(3):  # offsets 0-2 of 0-5
            queue.put_nowait(changelog_event(app, tp, offset, f"k{offset}", b"v"))
        task = asyncio.ensure_future(batched_slurp_changelogs(recovery))
        try:
            await asyncio.sleep(0.3)
            return recovery.signal_recovery_end.is_set()
        finally:
            task.cancel()

    assert asyncio.run(run()) is False
    assert recovery.in_recovery is True
    assert recovery.active_offsets[tp] == 2
