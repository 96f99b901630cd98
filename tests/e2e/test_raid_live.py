"""A raid through the real worker with the shipped default policy, checked on what the local
MessageBird server received (issue 12's end-to-end test).

The raid scenario (a genuine stream, then a raid at >= 40x its rate: persistent,
SIM-rotating and one-shot numbers) is replayed through the signed webhook as fast as the
worker takes it, its ``createdDatetime`` on the scenario's own timeline ending a minute ago
(event time comes from the provider, so the decisions are the ones the real timeline gets);
the worker's own ticks then end the surge. What went out is counted at the provider: every
genuine sender outside the raid answered, at least 30 % of those inside, trolls paid at most
15 % of what answering every sender once costs, nobody twice, the audit clean.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from schemas.events import ReplyApproved, ReplyExpired, SenderScreened, SurgeEnded, SurgeStarted
from streams.scenarios import REPLY_COST_MICROS, TROLL_KINDS, generate_plan, retimed, run_plan
from streams.simulate import REPLY_2017, drive_webhook
from tests.e2e.conftest import ACCESS_KEY, ADMIN_TOKEN, SIGNING_KEY, start_worker, stop_worker

pytestmark = pytest.mark.services

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
        "ANTIRELOU_ADMIN_TOKEN": ADMIN_TOKEN}, config_text=CONFIG)
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

    # Every text screened, the surge over (the worker's tick, at wall-clock time after the
    # timeline), nothing left waiting in the queue.
    ids = {t.message_id for t in plan.texts}

    def settled(events):
        screened = {e.message_id for e in events if isinstance(e, SenderScreened)}
        kinds = Counter(type(e) for e in events)
        return ids <= screened and kinds[SurgeEnded] >= kinds[SurgeStarted] >= 1
    journal = w.wait_for(settled, timeout=240)
    time.sleep(3)  # the last releases' sends
    w.wait_for(lambda events: _unsent(events) == 0, timeout=60)

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


def _unsent(events) -> int:
    """Approved replies with no outcome yet (sent, failed or uncertain)."""
    approved = {e.message_id for e in events if isinstance(e, ReplyApproved)}
    done = {e.message_id for e in events if e.TYPE in ("ReplySent", "ReplyFailed", "ReplyUncertain")}
    return len(approved - done)
