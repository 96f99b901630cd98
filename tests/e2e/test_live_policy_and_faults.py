"""Operators change policy and credit budgets while the system runs; a killed campaign
actor comes back with exactly the journal's state."""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray

from actors.shard import CampaignShard, is_campaign_event
from infra.config import load_campaigns
from tests.e2e.conftest import new_sender, of

pytestmark = pytest.mark.services


def test_policy_set_takes_effect_live_and_is_recorded(worker):
    before = worker.post(sender=new_sender(), campaign="lyon")
    worker.wait_for(lambda ev: of(ev, before.message_id, "ReplyApproved"))
    done = worker.cli("policy", "set", "lyon", "price_per_segment_eur=0.05", operator="alice")
    assert done.returncode == 0, done.stderr
    assert "lyon: policy v2 in force (alice)" in done.stdout

    after = worker.post(sender=new_sender(), campaign="lyon")
    events = worker.wait_for(lambda ev: of(ev, after.message_id, "ReplyApproved"))
    (changed,) = [e for e in events if e.TYPE == "PolicyChanged" and e.campaign_id == "lyon"]
    assert (changed.operator, changed.changes, changed.version) == (
        "alice", {"price_per_segment_micros": 50_000}, 2)
    (old,), (new,) = of(events, before.message_id, "ReplyApproved"), of(
        events, after.message_id, "ReplyApproved")
    assert (old.policy_version, old.cost_micros) == (1, 80_000)
    assert (new.policy_version, new.cost_micros) == (2, 50_000)

    shown = worker.cli("policy", "show", "lyon")
    assert shown.returncode == 0 and "lyon: policy v2 price/segment EUR 0.05" in shown.stdout


def test_a_cooldown_change_reaches_the_screening_on_every_worker(worker):
    sender = new_sender()
    first = worker.post(sender=sender)
    worker.wait_for(lambda ev: of(ev, first.message_id, "ReplySent"))
    # About one second: the same sender may be answered again after it.
    assert worker.cli("policy", "set", "paris", "cooldown_days=0.00001",
                      operator="carol").returncode == 0
    time.sleep(2.5)
    again = worker.post(sender=sender)
    events = worker.wait_for(lambda ev: of(ev, again.message_id, "SenderScreened"))
    (screened,) = of(events, again.message_id, "SenderScreened")
    assert (screened.verdict, screened.policy_version) == ("forward", 2)


def test_budget_credit_revives_a_spent_campaign(worker, messagebird):
    # "tiny" holds one reply; spend it, credit one more, and the next pest is answered.
    spend = worker.post(sender=new_sender(), campaign="tiny")
    worker.wait_for(lambda ev: of(ev, spend.message_id, "ReplyApproved"))
    refused = worker.cli("budget", "credit", "tiny", "-3", "--source", "leetchi", operator="alice")
    assert refused.returncode == 2 and "must be > 0" in refused.stderr
    done = worker.cli("budget", "credit", "tiny", "0.08", "--source", "leetchi",
                      operator="alice")
    assert done.returncode == 0, done.stderr
    assert "tiny: credited EUR 0.08 from leetchi; balance EUR 0.08" in done.stdout
    sender = new_sender()
    r = worker.post(sender=sender, campaign="tiny")
    events = worker.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    (credit,) = [e for e in events if e.TYPE == "BudgetCredited"]
    assert (credit.source, credit.operator, credit.amount_micros) == ("leetchi", "alice", 80_000)
    assert len([m for m in messagebird.messages if sender in m["recipients"]]) == 1


def test_unknown_campaign_and_bad_keys_are_clear_errors(worker):
    r = worker.cli("policy", "set", "atlantis", "reserve_eur=1", operator="alice")
    assert r.returncode == 2 and "unknown campaign 'atlantis'" in r.stderr
    r = worker.cli("policy", "set", "paris", "colour=red", operator="alice")
    assert r.returncode == 2 and "unknown policy key 'colour'" in r.stderr


def test_killing_the_campaign_actor_mid_stream_loses_and_doubles_nothing(worker, messagebird):
    actor = ray.get_actor("antirelou-shard-0", namespace=worker.app_id)
    pid = ray.get(actor.info.remote())["pid"]
    senders = [new_sender() for _ in range(40)]
    ids = []
    for i, sender in enumerate(senders):
        ids.append(worker.post(sender=sender, campaign="paris").message_id)
        if i == 15:
            os.kill(pid, signal.SIGKILL)  # a real crash, mid-stream
    events = worker.wait_for(
        lambda ev: all(of(ev, mid, "ReplySent") for mid in ids), timeout=120)
    assert ray.get(actor.info.remote())["pid"] != pid  # Ray restarted it

    # Every text decided once: repeats (redelivery) are identical, never a second approval.
    for mid in ids:
        assert len({e for e in of(events, mid, "ReplyApproved")}) == 1
    paris = [e for e in events if is_campaign_event(e) and e.campaign_id == "paris"]
    by_seq = {}
    for e in paris:
        assert by_seq.setdefault(e.seq, e) == e, f"two different events with seq {e.seq}"
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    # The live balance equals a replay of the journal, and every pest got one SMS.
    replayed = CampaignShard(load_campaigns(worker.config), paris).status()["paris"]
    assert worker.status()["paris"] == replayed
    for sender in senders:
        assert len([m for m in messagebird.messages if sender in m["recipients"]]) == 1
