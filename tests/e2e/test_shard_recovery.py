"""A restarted campaign shard and the journal it recovers from: real Ray, real broker.

What must hold: a shard that Ray restarted never hands out a ``seq`` (and a balance) that a
decision of its previous life already took, even when it read the journal before the
worker's write of that decision landed.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import ray
from aiokafka import AIOKafkaProducer

from actors.remote import CampaignShards
from infra.broker import ensure_topics
from infra.journal import KafkaJournal, read_journal
from schemas import codec
from schemas.commands import RequestReply
from schemas.events import ReplyApproved
from tests import factories

pytestmark = pytest.mark.services

PARIS = factories.campaign(reply_text="Non c'est non.", budget_micros=1_000_000, ends_at=10**13,
                           pacing=False)


def journal(kafka: str, topic: str, events: list) -> None:
    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(topic, codec.encode(e), key=e.sender.encode())
        finally:
            await producer.stop()

    asyncio.run(produce())


def test_shard_recovery_race_a_restarted_shard_catches_up_before_deciding(kafka, ray_address,
                                                                          stop_at_end):
    # Issue 13 item 6: the shard decides, returns and dies; Ray restarts it and it reads the
    # journal before the worker's write of that decision lands; the next request then got
    # the same seq and was paid from the same balance.
    app = "shard-" + uuid.uuid4().hex[:8]
    topics = {f"{app}.journal": 2, f"{app}.snapshots": 1}
    ensure_topics(kafka, topics)
    shards = CampaignShards([PARIS], journal=KafkaJournal(kafka), journal_topic=f"{app}.journal",
                            snapshot_topic=f"{app}.snapshots", namespace=app)
    stop_at_end(shards, lambda: [ray.kill(actor, no_restart=True) for actor in shards._actors])
    first = asyncio.run(shards.decide([RequestReply(message_id="m1", campaign_id="paris", sender="s_a",
                                                    occurred_at=1_000, reply_to="x")]))
    (approved,) = first
    assert isinstance(approved, ReplyApproved) and approved.seq == 1
    # The actor dies before the worker's write lands; its successor reads an empty log.
    pid = shards.info_now()[0]["pid"]
    ray.kill(shards._actors[0], no_restart=False)
    deadline = time.monotonic() + 60
    while True:  # until the successor answers (its constructor has read the journal)
        try:
            info = shards.info_now()[0]
            if info["pid"] != pid:
                break
        except ray.exceptions.RayActorError:
            pass
        assert time.monotonic() < deadline, "Ray did not restart the shard"
        time.sleep(0.2)
    assert info["recovered"] == 0
    journal(kafka, f"{app}.journal", first)  # the worker's write lands now
    shards.journaled(first)
    (second,) = asyncio.run(shards.decide([RequestReply(message_id="m2", campaign_id="paris",
                                                        sender="s_b", occurred_at=2_000, reply_to="x")]))
    assert isinstance(second, ReplyApproved)
    assert second.seq == 2  # not 1 again
    assert second.balance_after_micros == approved.balance_after_micros - second.cost_micros
    journal(kafka, f"{app}.journal", [second])
    seqs = [e.seq for e in read_journal(kafka, f"{app}.journal")]
    assert sorted(seqs) == [1, 2]
