"""A surge queue of 20,000 deferred requests survives a worker restart with every reply-to
(issue 29 item 6): each reply-to is its own table entry, not one record per campaign (which
passed the broker's 1 MB limit at about 11,300 requests and was lost)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from infra.privacy import Privacy
from schemas import codec
from schemas.commands import RequestReply, Tick
from tests.e2e.conftest import CONFIG as E2E_CONFIG
from tests.e2e.conftest import SECRET, stop_worker

pytestmark = pytest.mark.services

QUEUED = 20_000
# Paris of the e2e deployment, rich enough for 20,000 replies, each request waiting its
# safety delay (30 minutes, the default) in the queue, then released (no surge mode).
CONFIG = (E2E_CONFIG.replace('budget_eur = "100.00"', 'budget_eur = "5000.00"', 1)
          .replace('policy = { surge_multiple = "off", reply_delay_minutes = "0" }',
                   'policy = { surge_multiple = "off", surge_queue = 100000, '
                   'surge_ttl_minutes = 6000 }', 1))


def produce(kafka: str, topic: str, values: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20)
        await producer.start()
        try:
            futures = [await producer.send(topic, v, key=b"paris") for v in values]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def wait_until(what, predicate, timeout: float, worker=None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = "" if worker is None else "\n".join(
                line for line in worker.log_path.read_text().splitlines()
                if not line.startswith(("|", "+")))[-6000:]
            raise AssertionError(f"{what} not within {timeout:g} s; worker log:\n{tail}")
        time.sleep(1.0)


def test_a_queue_of_20000_deferred_requests_survives_a_restart_with_every_reply_to(
        workers, tmp_path, kafka, ray_address):
    app_id = "e2e-" + uuid.uuid4().hex[:8]
    privacy = Privacy(SECRET.encode())
    now = int(time.time() * 1000)
    requests = []
    for i in range(QUEUED + 3):
        number = f"3361{i:07d}"
        sender = privacy.pseudonym(number)
        requests.append(RequestReply(
            message_id=f"q{i}", campaign_id="paris", sender=sender, occurred_at=now + i // 1000,
            reply_to=privacy.seal(number, campaign_id="paris", sender=sender), prefix="33-61",
            texts_from_sender=1))
    worker = workers.start(tmp_path, kafka, ray_address, {}, app_id=app_id, config_text=CONFIG,
                           probe=False)
    started = time.monotonic()
    produce(kafka, f"{app_id}.reply-requests", [codec.encode(r) for r in requests])

    def held():
        return worker.admin_get("/health").json()["deferred_reply_tos"]

    deferred = wait_until("the deferrals", lambda: held() >= QUEUED and held(), 240, worker)
    took = time.monotonic() - started
    assert deferred >= QUEUED
    stop_worker(worker)
    again = workers.start(tmp_path, kafka, ray_address, {}, app_id=app_id, config_text=CONFIG,
                          probe=False)
    restarted = time.monotonic()
    wait_until("the table read back", lambda: held_by(again) == deferred, 120, again)
    read_back = time.monotonic() - restarted
    # Every one released (its safety delay over: ticks two hours on) is sent with its reply-to.
    later = now + 2 * 3_600_000
    produce(kafka, f"{app_id}.reply-requests",
            [codec.encode(Tick(campaign_id="paris", occurred_at=later + k * 1_000))
             for k in range(deferred // 1_000 + 5)])
    print(f"\n{deferred:,} requests deferred in {took:.0f} s; their reply-tos read back in "
          f"{read_back:.1f} s after the restart")
    wait_until("every reply-to used", lambda: held_by(again) == 0, 240, again)
    journal = again.journal()
    released = {e.message_id for e in journal if e.TYPE == "ReplyApproved" and e.deferred_at}
    assert len(released) == deferred

    def all_sent():
        events = again.journal()
        return {e.message_id for e in events if e.TYPE == "ReplySent"} >= released and events

    journal = wait_until("every released reply sent", all_sent, 300, again)
    lost = [e for e in journal if e.TYPE == "ReplyFailed" and "reply_to_lost" in e.error]
    assert lost == []
    print(f"all {len(released):,} released and sent")


def held_by(worker) -> int:
    return worker.admin_get("/health").json()["deferred_reply_tos"]
