"""A raid through the real worker with the shipped default policy, checked on what the local
MessageBird server received (issue 12's end-to-end test).

The raid scenario (a genuine stream, then a raid at >= 40x its rate: persistent,
SIM-rotating and one-shot numbers) is replayed through the signed webhook as fast as the
worker takes it, its ``createdDatetime`` on the scenario's own timeline ending a minute ago
(event time comes from the provider, so the decisions are the ones the real timeline gets).
The worker's clock timer is slowed down so that its wall-clock ticks do not land in the
middle of that past timeline; the test sends the ticks the timer would have sent after the
last text, as `Tick` records on reply-requests, like the leader timer does. What went out is
counted at the provider: every genuine sender outside the raid answered, at least 30 % of
those inside, trolls paid at most 15 % of what answering every sender once costs, nobody
twice, the audit clean.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from schemas import codec
from schemas.commands import Tick
from schemas.events import ReplyApproved, ReplyExpired, SenderScreened, SurgeEnded, SurgeStarted
from streams.simulate import REPLY_2017, drive_webhook
from streams.simulate.scenarios import REPLY_COST_MICROS, TROLL_KINDS, generate_plan, retimed, run_plan
from tests.e2e.conftest import ACCESS_KEY, ADMIN_TOKEN, SIGNING_KEY, start_worker, stop_worker

pytestmark = [pytest.mark.services, pytest.mark.timeout(1200)]

NUMBER = "33644630009"
CONFIG = f"""
[[campaign]]
id = "raid"
number = "+{NUMBER}"
reply_text = "{REPLY_2017}"
language = "fr"
budget_eur = "3700.00"
price_per_segment_eur = "0.08"
start = 2026-01-01
end = 2099-12-31
originator = "AntiRelou"
"""


@pytest.fixture(scope="module")
def raid_worker(tmp_path_factory, kafka, ray_address, messagebird):
    w = start_worker(tmp_path_factory.mktemp("raid"), kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        "ANTIRELOU_ADMIN_TOKEN": ADMIN_TOKEN, "ANTIRELOU_TICK_INTERVAL_S": "3600",
        # A replay of the past day: its createdDatetime is kept, not clamped to arrival.
        "ANTIRELOU_EVENT_SKEW_MINUTES": "1440"},
        config_text=CONFIG)
    yield w
    stop_worker(w)


def test_a_raid_through_the_real_worker_starves_the_trolls_and_answers_the_genuine(
        raid_worker, messagebird):
    w = raid_worker
    plan = generate_plan("raid", 4)
    span = plan.texts[-1].at_ms - plan.texts[0].at_ms
    plan = retimed(plan, (int(time.time()) - 60) * 1000 - span)  # ends a minute ago
    predicted = run_plan(plan)["runs"][0]
    before = len(messagebird.messages)
    counts = drive_webhook(plan.texts, w.url + "/webhooks/messagebird/sms", NUMBER, SIGNING_KEY)
    assert set(counts) == {"200"}, counts

    # Every text screened; then the clock after the last text (as the leader's timer would
    # bring it): the surge over, nothing left waiting in the queue, every approval sent.
    ids = {t.message_id for t in plan.texts}
    w.wait_for(lambda events: ids <= {e.message_id for e in events
                                      if isinstance(e, SenderScreened)}, timeout=600)
    asyncio.run(_ticks(w, [plan.texts[-1].at_ms + m * 60_000 for m in range(1, 20)]))

    def settled(events):
        kinds = Counter(type(e) for e in events)
        return kinds[SurgeEnded] >= kinds[SurgeStarted] >= 1 and _unsent(events) == 0
    journal = w.wait_for(settled, timeout=300)

    kind = {t.sender: t.kind for t in plan.texts}
    first = {}
    for t in plan.texts:
        first.setdefault(t.sender, t.at_ms)
    sent = Counter(r for m in messagebird.messages[before:] for r in m["recipients"])
    assert max(sent.values()) == 1, "a sender got two SMS"
    genuine = [s for s, k in kind.items() if k == "genuine"]
    lo, hi = plan.raid
    inside = [s for s in genuine if lo <= first[s] <= hi]
    outside = [s for s in genuine if s not in inside]
    share_out = sum(s in sent for s in outside) / len(outside)
    share_in = sum(s in sent for s in inside) / max(1, len(inside))
    troll_eur = sum(n for s, n in sent.items() if kind.get(s) in TROLL_KINDS) * REPLY_COST_MICROS / 1e6
    answer_once_eur = sum(1 for k in kind.values() if k in TROLL_KINDS) * REPLY_COST_MICROS / 1e6
    assert share_out >= 0.98, (share_out, predicted)
    assert share_in >= 0.30 or not inside, (share_in, predicted)
    assert troll_eur <= 0.15 * answer_once_eur, (troll_eur, answer_once_eur, predicted)
    # The raid was seen as one and its first texts expired, not paid.
    assert any(isinstance(e, ReplyExpired) and e.reason == "raid" for e in journal)

    audited = w.cli("audit")
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]


async def _ticks(w, times: list[int]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=w.kafka, acks="all")
    await producer.start()
    try:
        for at in times:
            await producer.send_and_wait(f"{w.app_id}.reply-requests", codec.encode(
                Tick(campaign_id="raid", occurred_at=at)), key=b"raid")
    finally:
        await producer.stop()


def _unsent(events) -> int:
    """Approved replies with no outcome yet (sent, failed or uncertain)."""
    approved = {e.message_id for e in events if isinstance(e, ReplyApproved)}
    done = {e.message_id for e in events if e.TYPE in ("ReplySent", "ReplyFailed", "ReplyUncertain")}
    return len(approved - done)
