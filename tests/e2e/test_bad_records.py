"""A bad record in a stage's topic, against a real worker: logged, counted on /health,
skipped; the records after it go through.

(Only the worker writes these topics; a bad record there is a bug, another version of the
software, or a hand-made record: it must not stop the stage. Its batch was never
acknowledged and came back for ever.)
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from schemas import codec
from schemas.commands import SendReply, Tick
from tests.e2e.conftest import new_sender, of

pytestmark = pytest.mark.services


def produce(worker, records: list[tuple[str, bytes, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=worker.kafka, acks="all")
        await producer.start()
        try:
            for role, key, value in records:
                await producer.send_and_wait(f"{worker.app_id}.{role}", value, key=key)
        finally:
            await producer.stop()

    asyncio.run(run())


def test_bad_record_in_decide_send_and_policy_stages_is_counted_and_skipped(worker):
    # Issue 13 item 9: codec.decode was unguarded in the decide, send and policy-follow
    # stages. The bad records go to the partitions of paris (the topics are keyed by
    # campaign), where the next text's request and reply must still get through.
    now = int(time.time() * 1000)
    produce(worker, [
        ("reply-requests", b"paris", b"not json"),
        ("reply-requests", b"paris", codec.encode(SendReply(message_id="x1", campaign_id="paris",
                                                            sender="s_x", occurred_at=now, reply_to="x"))),
        ("sms-outbound", b"paris", b"\x00garbage"),
        ("sms-outbound", b"paris", codec.encode(Tick(campaign_id="paris", occurred_at=now))),
        ("policies", b"lyon", b"{}"),
    ])
    changed = worker.cli("policy", "set", "lyon", "cooldown_days=30", operator="alice")
    assert changed.returncode == 0, changed.stderr
    deadline = time.monotonic() + 60
    while True:  # the policy follower read on past the bad record
        lyon = worker.post(sender=new_sender(), campaign="lyon")
        events = worker.wait_for(lambda ev, mid=lyon.message_id: of(ev, mid, "SenderScreened"))
        (screened,) = of(events, lyon.message_id, "SenderScreened")
        if screened.policy_version == 2:
            break
        assert time.monotonic() < deadline, "the policy change never reached the screening"
        time.sleep(1)
    paris = worker.post(sender=new_sender(), campaign="paris")
    worker.wait_for(lambda ev: of(ev, paris.message_id, "ReplySent"), timeout=60)
    health = worker.admin_get("/health").json()
    assert health["bad_records"] == {"requests": 2, "outbound": 2, "policies": 1}
    assert "bad record skipped" in worker.log_path.read_text()
