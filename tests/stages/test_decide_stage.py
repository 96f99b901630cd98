"""The decide stage's shell around the shards, with fakes for the shards and the journal
(the stage against a real broker is in tests/e2e)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from schemas import codec
from schemas.commands import SettleReply, Tick
from schemas.events import ReplyApproved, ReplyFailed
from streams.stages.decide import decide_batch


class FakeRuntime:
    """What decide_batch uses of the Runtime: the shards answer a released reply."""

    def __init__(self, decisions):
        self.decisions = decisions
        self.journal, self.settled, self.produced = [], [], []
        self.tables = SimpleNamespace(deferred_reply_to={})
        self.topics = SimpleNamespace(outbound="sms-outbound")
        self.names = {"inbound": "sms-received", "outbound": "sms-outbound"}

        async def decide(batch):
            return self.decisions

        self.deciders = SimpleNamespace(decide=decide)

    def decode_or_skip(self, role, value, types):
        return codec.decode(value)

    async def record(self, events, acked=False):
        self.journal.extend(events)

    def journaled(self, events):
        pass

    async def settle(self, command):
        self.settled.append(command)

    async def produce(self, topic, key, value):
        self.produced.append((topic, codec.decode(value)))

    async def send_records(self, topic, records):
        self.produced.extend((topic, codec.decode(value)) for _, value in records)
        return []

    def now_ms(self):
        return 5_000


def test_hole_in_sms_outbound_a_charged_reply_whose_reply_to_is_lost_fails_and_is_refunded():
    # Issue 13 item 7: a released reply whose reply-to was no longer in the table was
    # charged and only logged ("not sent"): the money was gone, nothing said so.
    released = ReplyApproved(message_id="m1", campaign_id="paris", sender="s_a", segments=1, encoding="GSM-7",
                             cost_micros=80_000, balance_after_micros=920_000, seq=3, occurred_at=4_000,
                             policy_version=1, prefix="33-6", send_at=4_000, deferred_at=1_000)
    rt = FakeRuntime([released])
    event = SimpleNamespace(value=codec.encode(Tick(campaign_id="paris", occurred_at=4_000)))
    asyncio.run(decide_batch(rt, [event]))
    assert rt.produced == []  # nothing to send it to
    (failed,) = [e for e in rt.journal if isinstance(e, ReplyFailed)]
    assert (failed.message_id, failed.retryable, failed.attempts) == ("m1", False, 0)
    assert failed.error.startswith("reply_to_lost") and failed.reason == "reply_to_lost"
    assert rt.settled == [SettleReply(message_id="m1", campaign_id="paris", sender="s_a", outcome="failed",
                                      price_micros=None, occurred_at=5_000)]
