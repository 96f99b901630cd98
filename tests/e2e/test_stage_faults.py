"""A stage whose call raises, against a real worker (tests/e2e/faulty_worker.py makes each
fault once): nothing lost, nothing doubled, the audit clean; a PolicyChanged the policies
topic lost is repaired from the journal (issue 29 items 1 and 7)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import ACCESS_KEY, new_sender, of

pytestmark = pytest.mark.services

FAULTY = "tests.e2e.faulty_worker"
DECISIONS = ("ReplyApproved", "ReplyDenied", "ReplyDeferred")


def campaign_seqs(events, campaign):
    return sorted({e.seq for e in events if getattr(e, "campaign_id", None) == campaign
                   and getattr(e, "seq", 0)})


def test_a_screen_decide_and_control_call_that_raises_loses_and_doubles_nothing(
        workers, tmp_path, kafka, ray_address, messagebird):
    # Issue 29 item 1: Faust acknowledged a batch whose agent body raised, and the commit
    # passed it: texts answered 200 and screened were decided by the shard (seqs taken,
    # balance debited), never journaled nor sent; the audit failed on the seq gap.
    worker = workers.start(tmp_path, kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        "ANTIRELOU_TEST_FAULTS": "screen,decide,control"}, module=FAULTY)
    senders = [new_sender() for _ in range(6)]
    posted = []
    for sender in senders:  # the first batch of each stage meets its fault
        answer = worker.post(sender=sender)
        assert answer.status_code == 200, answer.text
        posted.append(answer.message_id)
    changed = worker.cli("policy", "set", "paris", "cooldown_days=30", operator="alice")
    assert changed.returncode == 0, changed.stderr
    assert "policy v2 in force" in changed.stdout
    late = worker.post(sender=new_sender())
    posted.append(late.message_id)
    events = worker.wait_for(lambda ev: all(of(ev, mid, "ReplySent") for mid in posted),
                             timeout=90)
    log = worker.log_path.read_text()
    for fault in ("screen", "decide", "control"):
        assert f"injected fault: {fault}" in log
    for mid in posted:
        # Nothing doubled: one decision (a redelivered one is the same event), one reply.
        assert len({(e.TYPE, e.seq) for e in events if e.TYPE in DECISIONS
                    and e.message_id == mid}) == 1
        assert len({e.provider_message_id for e in of(events, mid, "ReplySent")}) == 1
        assert len([m for m in messagebird.messages if m["reference"] == mid]) == 1
    # Nothing lost: the campaign's seqs have no gap; the policy change is there once.
    seqs = campaign_seqs(events, "paris")
    assert seqs == list(range(1, len(seqs) + 1))
    assert len({e.seq for e in events if e.TYPE == "PolicyChanged"}) == 1
    (verdict,) = {e.policy_version for e in of(events, late.message_id, "SenderScreened")}
    assert verdict == 2
    health = worker.admin_get("/health").json()
    for stage in ("screen", "decide", "control"):
        assert health["stages"][stage]["failures"] >= 1, health["stages"]
        assert health["stages"][stage]["poisoned"] == 0
        assert health["stages"][stage]["failing_for_s"] is None
    assert health["status"] == "ok"
    audit = worker.cli("audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_policy_change_lost_from_the_policies_topic_reaches_screening(
        workers, tmp_path, kafka, ray_address):
    # Issue 29 item 7: versions are applied in order, and nothing repaired a missing one:
    # screening stayed at v1 for good while `policy set` said "in force".
    worker = workers.start(tmp_path, kafka, ray_address,
                           {"ANTIRELOU_TEST_FAULTS": "drop_policy"}, module=FAULTY)
    started = time.monotonic()
    changed = worker.cli("policy", "set", "lyon", "cooldown_days=30", operator="alice")
    took = time.monotonic() - started
    assert changed.returncode == 0, changed.stderr
    assert "policy v2 in force" in changed.stdout
    log = worker.log_path.read_text()
    assert "injected fault: drop_policy" in log
    assert "policy v2 was missing from" in log  # repaired from the journal, published again
    text = worker.post(sender=new_sender(), campaign="lyon")
    events = worker.wait_for(lambda ev: of(ev, text.message_id, "SenderScreened"))
    (verdict,) = of(events, text.message_id, "SenderScreened")
    assert verdict.policy_version == 2
    # And the next change goes on from there.
    again = worker.cli("policy", "set", "lyon", "cooldown_days=never", operator="alice")
    assert again.returncode == 0 and "policy v3 in force" in again.stdout, again.stderr
    text = worker.post(sender=new_sender(), campaign="lyon")
    events = worker.wait_for(lambda ev: of(ev, text.message_id, "SenderScreened"))
    assert of(events, text.message_id, "SenderScreened")[0].policy_version == 3
    assert worker.admin_get("/health").json()["policy_versions"]["lyon"] == 3
    print(f"policy set answered 'in force' after {took:.1f} s (the lost version repaired)")
