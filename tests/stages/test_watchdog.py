"""The watchdog's check for lost records (streams/stages/watchdog.py ``Refetch``), with fakes
for the Faust app and the broker: a record the agents take while the end offsets are being
asked for is not a loss; a log that ends before what the agents were given is."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from infra.faust.lost_tail import TailGuard
from streams.stages.watchdog import Refetch

TP = TopicPartition("antirelou.sms-received", 2)


class FakeConsumer:
    def __init__(self) -> None:
        self.flow_active = True
        self.unacked: list = []
        self._read_offset: dict = {}
        self._committed_offset: dict = {}
        self._acked: dict = {}
        self._gap: dict = {}
        self.sought: list = []

    def assignment(self) -> list:
        return [TP]

    async def seek(self, tp, offset) -> None:
        self.sought.append((tp, offset))


class FakeRuntime:
    def __init__(self) -> None:
        self.app = SimpleNamespace(rebalancing=False, consumer=FakeConsumer(),
                                   monitor=SimpleNamespace(tp_read_offsets={}))
        self.names = {"inbound": TP.topic, "requests": "r", "outbound": "o", "control": "c"}
        self.tail_guard = TailGuard()
        self.topics = SimpleNamespace(journal="journal")
        self.journaled: list = []

    async def start_offset(self, tp):
        return None

    def now_ms(self) -> int:
        return 1

    def produce(self, topic, key, value):
        self.journaled.append(value)

    async def acknowledged(self, _):
        return None


class Ends:
    """The broker's end offsets; ``meanwhile`` runs while the request is out."""

    def __init__(self, end: int, meanwhile=lambda: None) -> None:
        self.end, self.meanwhile = end, meanwhile

    async def of(self, topic=None, tps=()):
        self.meanwhile()
        return {(tp.topic, tp.partition): self.end for tp in tps}


def test_a_record_taken_while_the_end_offsets_are_asked_for_is_not_a_loss():
    rt = FakeRuntime()
    rt.app.monitor.tp_read_offsets[TP] = 106
    # The broker answers 108 (records 0..107); meanwhile record 107, then 108 (written just
    # after the broker answered), reach the agents.
    taken = lambda: rt.app.monitor.tp_read_offsets.__setitem__(TP, 108)  # noqa: E731
    asyncio.run(Refetch(rt, Ends(108, taken)).check())
    assert rt.tail_guard.records_lost == 0
    assert rt.app.consumer.sought == [] and rt.journaled == []


def test_a_log_that_ends_before_what_the_agents_were_given_is_a_loss():
    rt = FakeRuntime()
    rt.app.monitor.tp_read_offsets[TP] = 119  # given up to 119; the broker now ends at 100
    asyncio.run(Refetch(rt, Ends(100)).check())
    assert rt.tail_guard.records_lost == 20
    assert rt.app.consumer.sought == [(TP, 100)] and len(rt.journaled) == 1
