"""The decide stage's shell around the shards, with fakes for the shards and the journal
(the stage against a real broker is in tests/e2e)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from infra.privacy import Privacy, PrivacyError
from schemas import codec
from schemas.commands import RequestReply, SendReply, SettleReply, Tick
from schemas.events import ReplyApproved, ReplyFailed
from streams.stages.decide import decide_batch


class FakeTable(dict):
    """The deferred reply-to table: a dict with the batch write of TextPartitionedTable."""

    async def put_many(self, items):
        for key, value, _partition in items:
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value


class FakeRuntime:
    """What decide_batch uses of the Runtime: the shards answer a released reply."""

    def __init__(self, decisions):
        self.decisions = decisions
        self.privacy = Privacy(b"k" * 32)
        self.journal, self.settled, self.produced = [], [], []
        self.tables = SimpleNamespace(deferred_reply_to=FakeTable())
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

    def saw_policy(self, campaign_id, version):
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


def outbound_fails_once(rt: FakeRuntime) -> None:
    """The batch's first write to sms-outbound fails (the broker away), the next ones work."""
    writes = rt.send_records
    failures = iter([OSError("broker away")])

    async def send_records(topic, records):
        if topic == "sms-outbound":
            failure = next(failures, None)
            if failure is not None:
                raise failure
        return await writes(topic, records)

    rt.send_records = send_records


def test_hole_in_sms_outbound_a_charged_reply_whose_reply_to_is_lost_fails_and_is_refunded():
    # Issue 13 item 7: a released reply whose reply-to was no longer in the table was
    # charged and only logged ("not sent"): the money was gone, nothing said so.
    released = ReplyApproved(message_id="m1", campaign_id="paris", sender="s_a", segments=1, encoding="GSM-7",
                             cost_micros=80_000, balance_after_micros=920_000, seq=3, occurred_at=4_000,
                             policy_version=1, prefix="33-6", send_at=4_000, deferred_at=1_000)
    rt = FakeRuntime([released])
    event = SimpleNamespace(value=codec.encode(Tick(campaign_id="paris", occurred_at=4_000)),
                            message=SimpleNamespace(partition=0))
    asyncio.run(decide_batch(rt, [event]))
    assert rt.produced == []  # nothing to send it to
    (failed,) = [e for e in rt.journal if isinstance(e, ReplyFailed)]
    assert (failed.message_id, failed.retryable, failed.attempts) == ("m1", False, 0)
    assert failed.error.startswith("reply_to_lost") and failed.reason == "reply_to_lost"
    assert rt.settled == [SettleReply(message_id="m1", campaign_id="paris", sender="s_a", outcome="failed",
                                      price_micros=None, occurred_at=5_000)]


def approval(mid: str, sender: str) -> ReplyApproved:
    return ReplyApproved(message_id=mid, campaign_id="paris", sender=sender, segments=1,
                         encoding="GSM-7", cost_micros=80_000, balance_after_micros=920_000, seq=1,
                         occurred_at=4_000, policy_version=1, prefix="33-6", send_at=4_000,
                         deferred_at=None)


def test_an_approved_reply_goes_out_with_a_reply_to_sealed_for_that_approval_only():
    # Issue 31: the send stage opened the request's token (bound to campaign and sender
    # only), so one copied from sms-received into a SendReply bought an unpaid SMS. The
    # decide stage now seals the number again for the approved message id.
    rt = FakeRuntime([approval("m1", "s_a")])
    token = rt.privacy.seal("33612345678", campaign_id="paris", sender="s_a")
    request = RequestReply(message_id="m1", campaign_id="paris", sender="s_a", occurred_at=4_000,
                           reply_to=token)
    asyncio.run(decide_batch(rt, [SimpleNamespace(value=codec.encode(request),
                                                    message=SimpleNamespace(partition=0))]))
    ((topic, send),) = [(t, v) for t, v in rt.produced if isinstance(v, SendReply)]
    assert topic == "sms-outbound" and send.reply_to != token
    assert rt.privacy.open_reply(send.reply_to, campaign_id="paris", sender="s_a",
                                 message_id="m1") == "33612345678"
    for mid, sender in (("m2", "s_a"), ("m1", "s_b")):  # another request's record
        with pytest.raises(PrivacyError):
            rt.privacy.open_reply(send.reply_to, campaign_id="paris", sender=sender,
                                  message_id=mid)
    with pytest.raises(PrivacyError):  # and the request's own token opens no reply
        rt.privacy.open_reply(token, campaign_id="paris", sender="s_a", message_id="m1")


def test_an_approval_whose_request_token_is_not_this_records_fails_and_is_refunded():
    rt = FakeRuntime([approval("m1", "s_a")])
    other = rt.privacy.seal("33612345678", campaign_id="paris", sender="s_b")  # s_b's token
    request = RequestReply(message_id="m1", campaign_id="paris", sender="s_a", occurred_at=4_000,
                           reply_to=other)
    asyncio.run(decide_batch(rt, [SimpleNamespace(value=codec.encode(request),
                                                    message=SimpleNamespace(partition=0))]))
    assert not [v for _, v in rt.produced if isinstance(v, SendReply)]
    (failed,) = [e for e in rt.journal if isinstance(e, ReplyFailed)]
    assert (failed.message_id, failed.reason) == ("m1", "reply_to_unverified")
    assert [c.outcome for c in rt.settled] == ["failed"]


def test_a_batch_failing_once_its_decisions_are_journaled_sends_its_releases_when_asked_again():
    # A batch that raised after its decisions were journaled (a surge's start among them
    # raised, then the sends' write failed) was asked again one by one: the shard had been
    # told they were journaled and answered nothing new, and the release's reply-to entry was
    # gone: charged, journaled as approved, never sent. Now the shards hear of a batch's
    # decisions and the released reply-tos are dropped only once its sends are written.
    from schemas.events import SurgeStarted

    released = ReplyApproved(message_id="m1", campaign_id="paris", sender="s_a", segments=1,
                             encoding="GSM-7", cost_micros=80_000, balance_after_micros=920_000,
                             seq=3, occurred_at=4_000, policy_version=1, prefix="33-6",
                             send_at=4_000, deferred_at=1_000)
    surge = SurgeStarted(campaign_id="paris", first_texts=40, baseline_texts=3,
                         baseline_minutes=30, seq=4, occurred_at=4_000, policy_version=1)
    rt = FakeRuntime([released, surge])
    rt.tables.deferred_reply_to["m1"] = rt.privacy.seal("33612345678", campaign_id="paris",
                                                        sender="s_a")
    told = []
    rt.journaled = lambda events: told.append(list(events))
    outbound_fails_once(rt)
    event = SimpleNamespace(value=codec.encode(Tick(campaign_id="paris", occurred_at=4_000)),
                            message=SimpleNamespace(partition=0))
    with pytest.raises(OSError):
        asyncio.run(decide_batch(rt, [event]))
    assert told == [] and "m1" in rt.tables.deferred_reply_to  # not said, still held
    asyncio.run(decide_batch(rt, [event]))  # asked again: the same answer
    ((topic, send),) = [(t, v) for t, v in rt.produced if isinstance(v, SendReply)]
    assert (topic, send.message_id) == ("sms-outbound", "m1")
    assert rt.privacy.open_reply(send.reply_to, campaign_id="paris", sender="s_a",
                                 message_id="m1") == "33612345678"
    assert told == [[released, surge]] and "m1" not in rt.tables.deferred_reply_to
    assert not [e for e in rt.journal if isinstance(e, ReplyFailed)]


def test_a_reply_that_cannot_be_sent_fails_once_though_its_batch_is_asked_again():
    # A reply whose reply-to was lost was journaled failed and refunded inside the loop,
    # before the batch's sends were written: a batch failing there and asked again journaled
    # the failure (and asked the refund) once per attempt.
    lost = ReplyApproved(message_id="m1", campaign_id="paris", sender="s_a", segments=1,
                         encoding="GSM-7", cost_micros=80_000, balance_after_micros=920_000,
                         seq=3, occurred_at=4_000, policy_version=1, prefix="33-6",
                         send_at=4_000, deferred_at=1_000)
    other = approval("m2", "s_b")
    rt = FakeRuntime([lost, other])
    outbound_fails_once(rt)
    event = SimpleNamespace(
        value=codec.encode(RequestReply(message_id="m2", campaign_id="paris", sender="s_b",
                                        reply_to=rt.privacy.seal("33698765432", campaign_id="paris",
                                                                 sender="s_b"),
                                        occurred_at=4_000)),
        message=SimpleNamespace(partition=0))
    with pytest.raises(OSError):
        asyncio.run(decide_batch(rt, [event]))
    assert not [e for e in rt.journal if isinstance(e, ReplyFailed)] and rt.settled == []
    asyncio.run(decide_batch(rt, [event]))  # asked again: the same answer
    assert [e.message_id for e in rt.journal if isinstance(e, ReplyFailed)] == ["m1"]
    assert [s.message_id for s in rt.settled] == ["m1"]
    assert [v.message_id for t, v in rt.produced if isinstance(v, SendReply)] == ["m2"]
