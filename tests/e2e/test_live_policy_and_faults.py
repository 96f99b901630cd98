"""Operators change policy and credit budgets while the system runs; a killed campaign
actor comes back with exactly the journal's state."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

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
    assert done.stdout.strip() == ("lyon: policy v2 in force (alice): price_per_segment_eur "
                                   "0.08 -> 0.05")

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
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("lyon: policy v2 (alice, 20")
    assert re.search(r"^  price_per_segment_eur += 0\.05$", shown.stdout, re.M), shown.stdout


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


def test_killing_the_campaign_actor_during_a_flood_loses_doubles_and_overspends_nothing(
        worker, messagebird):
    """kill -9 of the Ray campaign actor while a flood of webhooks comes in, to a campaign
    with plenty of budget (paris) and one that runs out during the flood (tiny): every
    acknowledged text has one screening decision, no request is decided twice, no SMS goes
    twice, the budget is never overspent, and the audit replay finds no mismatch."""
    assert worker.cli("budget", "credit", "tiny", "0.24", "--source", "flood-test",
                      operator="alice").returncode == 0
    deadline = time.monotonic() + 30
    while worker.status()["tiny"]["balance_micros"] < 240_000:
        assert time.monotonic() < deadline, "the credit never reached the campaign"
        time.sleep(0.2)
    tiny_before = worker.status()["tiny"]
    affordable = tiny_before["balance_micros"] // tiny_before["reply_cost_micros"]

    actor = ray.get_actor("antirelou-shard-0", namespace=worker.app_id)
    pid = ray.get(actor.info.remote())["pid"]
    flood = [(new_sender(), "paris") for _ in range(40)] + [
        (new_sender(), "tiny") for _ in range(affordable + 6)]
    flood.sort(key=lambda pair: pair[0])  # interleave the two campaigns
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker.post, sender=s, campaign=c) for s, c in flood]
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)  # a real crash, mid-flood
        responses = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    ids = {r.message_id: c for r, (_, c) in zip(responses, flood, strict=True)}

    def decided(ev):
        return all(of(ev, mid, "ReplySent") if c == "paris" else
                   (of(ev, mid, "ReplySent") or of(ev, mid, "ReplyDenied"))
                   for mid, c in ids.items())
    events = worker.wait_for(decided, timeout=120)
    assert ray.get(actor.info.remote())["pid"] != pid  # Ray restarted it

    # Every acknowledged text: one screening decision (a restated verdict is the same one).
    for mid in ids:
        assert len({(e.verdict, e.reason) for e in of(events, mid, "SenderScreened")}) == 1
    # Every request decided once: repeats (redelivery) are identical, never a second answer.
    for mid in ids:
        assert len(set(of(events, mid, "ReplyApproved") + of(events, mid, "ReplyDenied"))) == 1
    for cid in ("paris", "tiny"):
        mine = [e for e in events if is_campaign_event(e) and e.campaign_id == cid]
        by_seq = {}
        for e in mine:
            assert by_seq.setdefault(e.seq, e) == e, f"{cid}: two different events, seq {e.seq}"
        assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    # Never overspent: tiny approved what it could afford, no more, and never went below 0.
    tiny_approved = {e.message_id: e for e in events
                     if e.TYPE == "ReplyApproved" and e.campaign_id == "tiny" and e.message_id in ids}
    assert len(tiny_approved) == affordable
    assert all(e.balance_after_micros >= 0 for e in tiny_approved.values())
    assert {e.reason for e in events if e.TYPE == "ReplyDenied" and e.message_id in ids} == {
        "budget_exhausted"}
    # The live balances equal a replay of the journal, and no pest got two SMS.
    campaigns = load_campaigns(worker.config)
    for cid in ("paris", "tiny"):
        mine = [e for e in events if is_campaign_event(e) and e.campaign_id == cid]
        replayed = CampaignShard(campaigns, mine).status()[cid]
        assert worker.status()[cid] == replayed
    assert worker.status()["tiny"]["balance_micros"] >= 0
    time.sleep(1)
    for sender, cid in flood:
        sms = len([m for m in messagebird.messages if sender in m["recipients"]])
        assert sms == 1 if cid == "paris" else sms <= 1
    audit = subprocess.run(
        [sys.executable, "-m", "streams.cli", "audit", "--kafka", worker.kafka,
         "--app-id", worker.app_id, "--config", str(worker.config)],
        capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr
