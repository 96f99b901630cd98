"""From decisions to SendReply commands, without a broker: where a deferred request's
reply-to waits, and when a reply is scheduled (the shell: streams/stages/decide.py)."""

from schemas.commands import SendReply
from schemas.events import ReplyApproved, ReplyDeferred, ReplyDenied, ReplyExpired
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


def test_a_deferred_request_keeps_its_reply_to_under_its_campaign():
    held = hold_deferred([deferred("m1")], {"m1": "sealed-1"}, {})
    assert held.released == {}
    assert held.entries == {"c1": {"m1": "sealed-1"}}


def test_a_release_gives_back_the_held_reply_to_and_empties_the_campaign():
    held = hold_deferred([approved("m1", deferred_at=T - 5_000)], {}, {"c1": {"m1": "sealed-1"}})
    assert held.released == {"m1": "sealed-1"}
    assert held.entries == {"c1": {}}  # the shell deletes the campaign's entry


def test_an_expiry_drops_the_reply_to_and_releases_nothing():
    stored = {"c1": {"m1": "sealed-1", "m2": "sealed-2"}}
    held = hold_deferred([expired("m1")], {}, stored)
    assert held.released == {}
    assert held.entries == {"c1": {"m2": "sealed-2"}}
    assert stored == {"c1": {"m1": "sealed-1", "m2": "sealed-2"}}  # what it read is untouched


def test_decisions_that_neither_defer_nor_release_touch_no_campaign():
    denied = ReplyDenied(message_id="m3", campaign_id="c2", sender="p-m3", reason="budget_exhausted",
                         cost_micros=0, balance_after_micros=0, seq=1, occurred_at=T, policy_version=1,
                         prefix="")
    held = hold_deferred([approved("m1"), denied], {"m1": "sealed-1"}, {"c1": {"m9": "s9"}})
    assert held == hold_deferred([], {}, {})
    assert held.entries == {} and held.released == {}


def test_deferred_and_released_in_one_batch_across_campaigns():
    decisions = [deferred("m1"), deferred("m2", "c2"), approved("m1", deferred_at=T)]
    held = hold_deferred(decisions, {"m1": "s1", "m2": "s2"}, {"c2": {"m0": "s0"}})
    assert held.released == {"m1": "s1"}
    assert held.entries == {"c1": {}, "c2": {"m0": "s0", "m2": "s2"}}


def test_a_deferral_without_a_reply_to_in_the_batch_holds_nothing_new():
    held = hold_deferred([deferred("m1")], {}, {})
    assert held.entries == {"c1": {}}


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
