"""The send stage's second look (infra/faust/send_guard.py): what the journal and this worker's
memory know of a reply whose mark is gone."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from infra.broker import ensure_topics
from infra.faust.send_guard import JournalIndex, RecentOutcomes, outcome_of
from schemas import codec
from schemas.events import ReplyAttempted, ReplyFailed, ReplySent, ReplyUncertain, TextReceived


def test_an_outcome_beats_an_attempt_and_sent_beats_everything():
    attempted = ReplyAttempted(message_id="m", campaign_id="c", sender="s", attempt=1, occurred_at=1)
    sent = ReplySent(message_id="m", campaign_id="c", sender="s", provider_message_id="p", price_micros=None,
                     dry_run=False, occurred_at=2)
    failed = ReplyFailed(message_id="m", campaign_id="c", sender="s", error="e", retryable=True,
                         occurred_at=2, attempts=3, reason="provider_unavailable")
    uncertain = ReplyUncertain(message_id="m", campaign_id="c", sender="s", reason="timeout", occurred_at=2)
    assert outcome_of(None, attempted) == "attempting"
    assert outcome_of("attempting", failed) == "failed"
    assert outcome_of("failed", attempted) == "failed"  # a later attempt of a retried reply
    assert outcome_of("uncertain", sent) == "sent" and outcome_of("sent", uncertain) == "sent"
    assert outcome_of("sent", TextReceived(
        message_id="m", campaign_id="c", sender="s", body="b", occurred_at=1, number_kind="mobile",
        country="FR", prefix="",
    )) == "sent"


def test_recent_outcomes_forget_the_oldest_beyond_capacity():
    marks = RecentOutcomes(capacity=2)
    marks.put("a", "attempting")
    marks.put("b", "sent")
    marks.put("a", "sent")  # refreshed: b is now the oldest
    marks.put("c", "failed")
    assert (marks.get("a"), marks.get("b"), marks.get("c")) == ("sent", None, "failed")


@pytest.mark.services
def test_the_journal_index_finds_attempts_and_outcomes_from_a_time_on(kafka):
    topic = "send-guard-" + uuid.uuid4().hex[:8]
    ensure_topics(kafka, {topic: 2})
    before = int(time.time() * 1000)

    async def write(events) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(topic, codec.encode(e), key=e.sender.encode())
        finally:
            await producer.stop()

    async def scenario():
        index = JournalIndex(kafka, topic)
        await write([
            ReplyAttempted(message_id="a", campaign_id="c", sender="s1", attempt=1, occurred_at=1),
            ReplySent(message_id="a", campaign_id="c", sender="s1", provider_message_id="p",
                      price_micros=None, dry_run=False, occurred_at=2),
            ReplyAttempted(message_id="b", campaign_id="c", sender="s2", attempt=1, occurred_at=1),
        ])
        first = await index.lookup(["a", "b", "z"], before - 1000)
        # Later writes are read on the next look-up, from where the last one stopped.
        await write([ReplyUncertain(message_id="b", campaign_id="c", sender="s2", reason="timeout",
                                    occurred_at=3)])
        read_before = index.records_read
        second = await index.lookup(["b"], before)
        return first, second, index.records_read - read_before, \
            await JournalIndex(kafka, topic).lookup(["a"], int(time.time() * 1000) + 60_000)

    first, second, newly_read, too_late = asyncio.run(scenario())
    assert first == {"a": "sent", "b": "attempting"}
    assert second == {"b": "uncertain"} and newly_read == 1
    assert too_late == {}  # nothing written after that time
