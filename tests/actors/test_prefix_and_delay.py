"""The per-prefix rate limit and the reply delay, told as stories."""

import dataclasses

import pytest

from actors.campaign import (
    REMEMBERED_PREFIXES,
    CampaignState,
    decide_control,
    decide_reply,
    decide_tick,
    evolve_campaign,
)
from actors.shard import CampaignShard
from actors.snapshot import decode_snapshot, encode_snapshot
from schemas import codec
from schemas.commands import ChangePolicy, RequestReply, SendReply, Tick
from schemas.events import ReplyApproved, ReplyDeferred, ReplyDenied
from schemas.policy import PolicyError, describe, parse_changes
from streams.audit import audit
from tests.factories import T0, journal_of
from tests.factories import campaign_2017 as campaign
from tests.factories import story_campaign as audit_campaign

MINUTE = 60_000


def apply(state, events):
    for e in events:
        evolve_campaign(state, e)
    return events[0]


def text(mid, at, prefix="33-756", sender=None):
    return RequestReply(message_id=mid, campaign_id="paris", sender=sender or "s_" + mid, occurred_at=at,
                        reply_to="sealed", prefix=prefix)


def with_policy(c, **changes):
    state = CampaignState.opening(c)
    apply(state, decide_control(state, ChangePolicy(command_id="p1", campaign_id=c.id, changes=changes,
                                                    operator="alice", occurred_at=0)))
    return state


# --- per-prefix rate limit ---------------------------------------------------------------


def test_operator_keys_for_the_prefix_limit_and_the_delay():
    assert parse_changes(["prefix_burst=20", "prefix_period_minutes=0.5",
                          "reply_delay_minutes=60"]) == {
        "prefix_burst": 20, "prefix_period_ms": 30_000, "reply_delay_ms": 3_600_000}
    assert parse_changes(["prefix_burst=off", "reply_delay_minutes=0"]) == {
        "prefix_burst": 0, "reply_delay_ms": 0}
    for bad in ("prefix_burst=-1", "prefix_period_minutes=0", "reply_delay_minutes=-5"):
        with pytest.raises(PolicyError):
            parse_changes([bad])


def test_the_prefix_limit_is_off_by_default():
    # Given the default policy, when 9 first texts come from one range in one second (below
    # the surge's minimum rate),
    c = campaign()
    state = CampaignState.opening(c)
    decisions = [apply(state, decide_reply(state, text(f"m{i}", 1_000 + i), c)) for i in range(9)]
    # then all are answered; the range is tracked only to rank a surge queue, its debt capped
    # (a denied or over-burst text adds none, so it decays within a burst's time).
    assert all(isinstance(d, ReplyApproved) for d in decisions)
    assert list(state.prefix_tat) == [decisions[0].prefix]
    assert state.prefix_tat[decisions[0].prefix] <= 1_000 + 3 * 10 * 60_000
    assert describe(state.policy)["prefix_burst"] == "off"


def test_a_range_sending_many_first_texts_is_denied_prefix_flood():
    # Given at most 3 first texts at once from a range, then one a minute,
    c = campaign()
    state = with_policy(c, prefix_burst=3, prefix_period_ms=MINUTE)
    # when five SIMs of 33-756 text within a second,
    out = [apply(state, decide_reply(state, text(f"m{i}", 1_000 + i), c)) for i in range(5)]
    # then three are answered and two denied as a prefix flood, recording the range;
    assert [getattr(d, "reason", "approved") for d in out] == [
        "approved", "approved", "approved", "prefix_flood", "prefix_flood"]
    assert out[3].prefix == "33-756" and out[3].balance_after_micros == out[2].balance_after_micros
    # a pest from another range is answered at the same moment,
    assert isinstance(apply(state, decide_reply(state, text("other", 1_010, "33-612"), c)),
                      ReplyApproved)
    # and a minute later the flooded range gets one more reply, not a new burst.
    later = [apply(state, decide_reply(state, text(f"l{i}", 1_000 + MINUTE + i), c))
             for i in range(2)]
    assert [getattr(d, "reason", "approved") for d in later] == ["approved", "prefix_flood"]


def test_an_unknown_range_is_never_limited():
    c = campaign()
    state = with_policy(c, prefix_burst=1)
    out = [apply(state, decide_reply(state, text(f"m{i}", 1_000, prefix=""), c)) for i in range(3)]
    assert all(isinstance(d, ReplyApproved) for d in out)


def test_budget_denials_count_against_the_range_too():
    # A flood on an empty budget still shows as a flood from its range: the first texts count.
    c = campaign(budget_micros=0)
    state = with_policy(c, prefix_burst=2, prefix_period_ms=MINUTE)
    out = [apply(state, decide_reply(state, text(f"m{i}", 1_000), c)) for i in range(3)]
    assert [d.reason for d in out] == ["budget_exhausted", "budget_exhausted", "prefix_flood"]


def test_remembered_ranges_stay_bounded():
    c = campaign(budget_micros=10**12)
    state = with_policy(c, prefix_burst=1, prefix_period_ms=10 * MINUTE)
    for i in range(REMEMBERED_PREFIXES + 50):
        apply(state, decide_reply(state, text(f"m{i}", 1_000 + i, prefix=f"p{i}"), c))
    assert len(state.prefix_tat) == REMEMBERED_PREFIXES
    # The newest ranges are the ones kept.
    assert f"p{REMEMBERED_PREFIXES + 49}" in state.prefix_tat and "p0" not in state.prefix_tat


def test_the_range_state_survives_a_snapshot_and_a_replay():
    c = campaign()
    shard = CampaignShard([c])
    history = shard.control([ChangePolicy(command_id="p1", campaign_id="paris", changes={"prefix_burst": 2},
                                          operator="alice", occurred_at=0)])
    history += shard.decide([text(f"m{i}", 1_000 + i) for i in range(2)])
    state, _ = decode_snapshot(encode_snapshot(shard._states["paris"], {0: 0}))
    assert state.prefix_tat == shard._states["paris"].prefix_tat != {}
    rebuilt = CampaignShard([c], history=history)
    assert rebuilt.decide([text("m9", 1_005)]) == shard.decide([text("m9", 1_005)])
    assert rebuilt.decide([text("m9", 1_005)])[0].reason == "prefix_flood"


def test_the_audit_re_decides_prefix_floods():
    # Given a range limit set live, a SIM-rotating burst from one range and a pest elsewhere,
    steps = [ChangePolicy(command_id="p1", campaign_id="paris",
                          changes={"prefix_burst": 2, "prefix_period_ms": MINUTE}, operator="alice",
                          occurred_at=T0)]
    steps += [(f"r{i}", "paris", f"s_r{i}", T0 + 1_000 + i, "33-756") for i in range(4)]
    steps += [("g1", "paris", "s_g", T0 + 2_000, "33-612")]
    journal = journal_of(steps, [audit_campaign(budget=10_000_000)])
    reasons = sorted(e.reason for e in journal if isinstance(e, ReplyDenied))
    assert reasons == ["prefix_flood", "prefix_flood"]
    # the audit reproduces every decision from the texts (the range comes from TextReceived),
    result = audit(journal, [audit_campaign(budget=10_000_000)])
    assert result.ok, result.mismatches[:1]
    # and a decision whose range was tampered with is caught.
    i = next(i for i, e in enumerate(journal) if isinstance(e, ReplyDenied))
    journal[i] = dataclasses.replace(journal[i], prefix="33-612")
    assert not audit(journal, [audit_campaign(budget=10_000_000)]).ok


# --- reply delay ---------------------------------------------------------------------------


def test_without_a_delay_a_reply_is_sent_at_once():
    c = campaign()
    state = CampaignState.opening(c)
    approved = apply(state, decide_reply(state, text("m1", 5_000), c))
    assert approved.send_at == approved.occurred_at == 5_000


def test_with_an_hour_of_delay_the_request_waits_an_hour_then_is_paid_and_sent():
    # Given the US Rejection Hotline's hour, when a pest texts at 22:00,
    c = campaign()
    state = with_policy(c, reply_delay_ms=60 * MINUTE)
    deferred = apply(state, decide_reply(state, text("m1", 5_000), c))
    # then nothing is charged yet: the request waits out the delay, watched,
    assert isinstance(deferred, ReplyDeferred) and deferred.hold_until == 5_000 + 60 * MINUTE
    assert state.balance_micros == c.budget_micros
    # a tick before the hour releases nothing,
    assert decide_tick(state, Tick(campaign_id="paris", occurred_at=5_000 + 59 * MINUTE), c) == []
    # and the tick at the hour pays it, to be sent at once.
    approved = apply(state, decide_tick(state, Tick(campaign_id="paris",
                                                    occurred_at=5_000 + 60 * MINUTE), c))
    assert isinstance(approved, ReplyApproved)
    assert (approved.deferred_at, approved.send_at) == (5_000, 5_000 + 60 * MINUTE)
    assert approved.policy_version == 2
    assert describe(state.policy)["reply_delay_minutes"] == "60"


def test_the_safety_delay_is_on_by_default_and_half_an_hour():
    assert CampaignState.opening(dataclasses.replace(campaign(), policy=())).policy.reply_delay_ms \
        == 30 * MINUTE


# --- wire ------------------------------------------------------------------------------------


def test_old_decisions_and_commands_are_upcast():
    old_approved = {"type": "ReplyApproved", "v": 2, "message_id": "m", "campaign_id": "c",
                    "sender": "s", "segments": 1, "encoding": "GSM-7", "cost_micros": 1,
                    "balance_after_micros": 0, "seq": 1, "occurred_at": 7, "policy_version": 1}
    assert codec.from_dict(old_approved).send_at == 7
    assert codec.from_dict(old_approved).prefix == ""
    old_denied = {**old_approved, "type": "ReplyDenied", "reason": "ended"}
    del old_denied["segments"], old_denied["encoding"]
    assert codec.from_dict(old_denied).prefix == ""
    old_request = {"type": "RequestReply", "v": 1, "message_id": "m", "campaign_id": "c",
                   "sender": "s", "occurred_at": 7, "reply_to": "x"}
    assert codec.from_dict(old_request) == RequestReply(message_id="m", campaign_id="c", sender="s",
                                                        occurred_at=7, reply_to="x", prefix="",
                                                        texts_from_sender=1)
    old_send = {**old_request, "type": "SendReply"}
    assert codec.from_dict(old_send) == SendReply(message_id="m", campaign_id="c", sender="s", occurred_at=7,
                                                  reply_to="x", send_at=None)
