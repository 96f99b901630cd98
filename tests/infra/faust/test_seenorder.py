"""The send stage's offset-order guard, with fake records (tests/infra/faust/test_inorder.py
covers the other stages' guard)."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from types import SimpleNamespace

from infra.faust.seenorder import SeenOrder

TP = namedtuple("TP", "topic partition")("sms-outbound", 0)


def record(offset, tp=TP):
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))


def test_hole_in_sms_outbound_records_dropped_before_the_send_agent_are_fetched_again():
    # Issue 13 item 7: only the inbound and request topics had an offset-order guard; a
    # SendReply Faust dropped was stepped over by its commit, and the paid reply lost.
    seeks = []

    async def first_offset(tp):
        return 3  # where the assignment started: 3 and 4 never came

    async def seek(tp, offset):
        seeks.append(offset)

    async def scenario():
        guard = SeenOrder("sms-outbound", first_offset, seek)
        guard.see(record(5))
        guard.see(record(6))
        await guard.settled()
        assert seeks == [3]
        guard.see(record(9))  # 7 and 8 dropped
        await guard.settled()
        assert seeks == [3, 7]
        for offset in (3, 4, 5, 6, 7, 8, 9):  # fetched again after the seeks: no new hole
            guard.see(record(offset))
        guard.see(record(10))
        await guard.settled()
        assert seeks == [3, 7] and guard.holes == 2
        guard.reset()  # a rebalance: checked against the start again
        guard.see(record(3))
        await guard.settled()
        assert seeks == [3, 7]

    asyncio.run(scenario())


def test_a_seek_back_undone_by_the_fetch_loop_is_made_again_until_the_hole_comes():
    # Faust's fetch loop can drop the records fetched again (its read offset was set past
    # them after the seek): nothing of the hole comes, so the guard seeks again.
    seeks = []

    async def first_offset(tp):
        return 0

    async def seek(tp, offset):
        seeks.append(offset)

    async def scenario():
        guard = SeenOrder("sms-outbound", first_offset, seek, retry_s=0.01, max_retry_s=0.01)
        guard.see(record(0))
        guard.see(record(4))  # 1..3 dropped
        await guard.settled()
        while len(seeks) < 3:
            await asyncio.sleep(0.01)
        assert set(seeks) == {1} and guard.reseeks >= 2 and guard.holes == 1
        guard.see(record(5))  # later records go on meanwhile (the send stage's actors)
        guard.see(record(1))  # the hole, at last
        count = len(seeks)
        await asyncio.sleep(0.05)
        assert len(seeks) == count

    asyncio.run(scenario())
