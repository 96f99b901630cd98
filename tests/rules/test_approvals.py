"""From decisions to SendReply commands, without a broker: where a deferred request's
reply-to waits, and when a reply is scheduled (the shell: streams/stages/decide.py)."""

from schemas.commands import SendReply
from schemas.events import ReplyApproved, ReplyDeferred, ReplyDenied, ReplyExpired, SurgeEnded, SurgeStarted
from streams.rules.approvals import hold_deferred, scheduled_send_at, send_command

T = 1_700_000_000_000


def approved(mid, campaign="c1", *, send_at=T, deferred_at=None, at=T):
    return ReplyApproved(message_id=mid, campaign_id=campaign, sender=f"p-{mid}", segments=1, encoding="gsm7",
                         cost_micros=70_000, balance_after_micros=1_000_000, seq=1, occurred_at=at,
                         policy_version=1, prefix="33-612", send_at=send_at, deferred_at=deferred_at)


def deferred(mid, campaign="c1"):
    return ReplyDeferred(message_id=mid, campaign_id=campaign, sender=f"p-{mid}", prefix="33-612",
                         texts_from_sender=1, queued=1, seq=1, occurred_at=T, policy_version=1)


def expired(mid, campaign="c1"):
    return ReplyExpired(message_id=mid, campaign_id=campaign, sender=f"p-{mid}", reason="ttl", deferred_at=T,
                        seq=2, occurred_at=T + 60_000, policy_version=1)


def test_a_deferred_request_keeps_its_reply_to_in_an_entry_of_its_own():
    held = hold_deferred([deferred("m1")], {"m1": "sealed-1"}, {})
    assert held.released == {}
    assert held.keep == {"m1": ("c1", "sealed-1")}
    assert held.drop == {} and held.legacy == {}


def test_a_release_gives_back_the_held_reply_to_and_drops_its_entry():
    held = hold_deferred([approved("m1", deferred_at=T - 5_000)], {}, {"m1": "sealed-1"})
    assert held.released == {"m1": "sealed-1"}
    assert held.drop == {"m1": "c1"} and held.keep == {}


def test_an_expiry_drops_the_reply_to_and_releases_nothing():
    stored = {"m1": "sealed-1", "m2": "sealed-2"}
    held = hold_deferred([expired("m1")], {}, stored)
    assert held.released == {}
    assert held.drop == {"m1": "c1"}
    assert stored == {"m1": "sealed-1", "m2": "sealed-2"}  # what it read is untouched


def test_decisions_that_neither_defer_nor_release_touch_nothing():
    denied = ReplyDenied(message_id="m3", campaign_id="c2", sender="p-m3", reason="budget_exhausted",
                         cost_micros=0, balance_after_micros=0, seq=1, occurred_at=T, policy_version=1,
                         prefix="")
    held = hold_deferred([approved("m1"), denied], {"m1": "sealed-1"}, {"m9": "s9"})
    assert held == hold_deferred([], {}, {})
    assert (held.keep, held.drop, held.released) == ({}, {}, {})


def test_a_surge_s_start_and_end_among_the_decisions_hold_nothing_and_break_nothing():
    # A surge's events carry no message id (a batch holding one raised AttributeError: the
    # whole batch was tried again one by one, and a release in it lost its send).
    start = SurgeStarted(campaign_id="c1", first_texts=50, baseline_texts=3, baseline_minutes=30, seq=2,
                         occurred_at=T, policy_version=1)
    end = SurgeEnded(campaign_id="c1", queued=0, seq=4, occurred_at=T + 60_000, policy_version=1)
    held = hold_deferred([deferred("m1"), start, approved("m0", deferred_at=T - 1), end],
                         {"m1": "s1"}, {"m0": "s0"})
    assert held.keep == {"m1": ("c1", "s1")} and held.released == {"m0": "s0"}
    assert held.drop == {"m0": "c1"}


def test_deferred_and_released_in_one_batch_across_campaigns():
    decisions = [deferred("m1"), deferred("m2", "c2"), approved("m1", deferred_at=T)]
    held = hold_deferred(decisions, {"m1": "s1", "m2": "s2"}, {"m0": "s0"})
    assert held.released == {"m1": "s1"}
    assert held.keep == {"m2": ("c2", "s2")}  # m1 came and went within the batch
    assert held.drop == {}


def test_a_deferral_without_a_reply_to_in_the_batch_holds_nothing_new():
    held = hold_deferred([deferred("m1")], {}, {})
    assert held.keep == {} and held.drop == {}


def test_a_queue_held_in_the_first_layout_is_still_released_and_emptied():
    # Before issue 29 a campaign's whole queue was one entry (campaign -> {id: sealed}).
    stored = {"c1": {"m1": "sealed-1", "m2": "sealed-2"}}
    held = hold_deferred([approved("m1", deferred_at=T)], {}, stored)
    assert held.released == {"m1": "sealed-1"}
    assert held.legacy == {"c1": {"m2": "sealed-2"}}
    held = hold_deferred([expired("m2")], {}, {"c1": {"m2": "sealed-2"}})
    assert held.legacy == {"c1": {}}  # the shell deletes the entry


def test_a_reply_with_a_delay_is_scheduled_one_without_is_sent_now():
    assert scheduled_send_at(T + 30_000, T) == T + 30_000
    assert scheduled_send_at(T, T) is None
    assert scheduled_send_at(T - 1, T) is None


def test_an_approval_becomes_the_send_command_with_its_reply_to_and_schedule():
    send = send_command(approved("m1", send_at=T + 30_000), {"m1": "sealed-1"})
    assert send == SendReply(message_id="m1", campaign_id="c1", sender="p-m1", occurred_at=T,
                             reply_to="sealed-1", send_at=T + 30_000)
    assert send_command(approved("m2"), {"m2": "sealed-2"}).send_at is None


def test_an_approval_whose_reply_to_is_lost_gives_no_command():
    assert send_command(approved("m1", deferred_at=T - 1), {"m2": "sealed-2"}) is None
