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
    attempted = ReplyAttempted("m", "c", "s", 1, 1)
    sent = ReplySent("m", "c", "s", "p", None, False, 2)
    failed = ReplyFailed("m", "c", "s", "e", True, 2, 3)
    uncertain = ReplyUncertain("m", "c", "s", "timeout", 2)
    assert outcome_of(None, attempted) == "attempting"
    assert outcome_of("attempting", failed) == "failed"
    assert outcome_of("failed", attempted) == "failed"  # a later attempt of a retried reply
    assert outcome_of("uncertain", sent) == "sent" and outcome_of("sent", uncertain) == "sent"
    assert outcome_of("sent", TextReceived("m", "c", "s", "b", 1, "mobile", "FR", "")) == "sent"


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
        await write([ReplyAttempted("a", "c", "s1", 1, 1), ReplySent("a", "c", "s1", "p", None,
                                                                      False, 2),
                     ReplyAttempted("b", "c", "s2", 1, 1)])
        first = await index.lookup(["a", "b", "z"], before - 1000)
        # Later writes are read on the next look-up, from where the last one stopped.
        await write([ReplyUncertain("b", "c", "s2", "timeout", 3)])
        read_before = index.records_read
        second = await index.lookup(["b"], before)
        return first, second, index.records_read - read_before, \
            await JournalIndex(kafka, topic).lookup(["a"], int(time.time() * 1000) + 60_000)

    first, second, newly_read, too_late = asyncio.run(scenario())
    assert first == {"a": "sent", "b": "attempting"}
    assert second == {"b": "uncertain"} and newly_read == 1
    assert too_late == {}  # nothing written after that time
