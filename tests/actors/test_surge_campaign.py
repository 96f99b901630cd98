"""Surge mode in the campaign aggregate, told as stories: deferred, released, expired."""

from actors.campaign import decide_reply, evolve_campaign
from actors.shard import CampaignShard
from actors.snapshot import decode_snapshot, encode_snapshot
from schemas.commands import ChangePolicy, RequestReply, Tick
from schemas.events import (
    ReplyApproved,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    SurgeEnded,
    SurgeStarted,
)
from streams.audit import audit
from tests.factories import T0, journal_of
from tests.factories import campaign_2017 as campaign
from tests.factories import story_campaign as audit_campaign

MINUTE = 60_000
# No prior, no watch, first texts released 2 a minute during a surge, and every surge taken
# for people (its first texts are released at its end): the mechanics alone.
SURGE = {"surge_multiple": 3, "surge_min_rate": 5, "surge_quiet_minutes": 2, "surge_queue": 3,
         "surge_ttl_ms": 10 * MINUTE, "surge_release_per_minute": 2,
         "surge_expected_per_minute": 1, "surge_watch_ms": 0, "surge_human_percent": 0}


def shard_with(**changes):
    shard = CampaignShard([campaign(budget_micros=10**9)])
    shard.control([ChangePolicy(command_id="p1", campaign_id="paris", changes={**SURGE, **changes},
                                operator="alice", occurred_at=0)])
    return shard


def text(mid, at, texts=1):
    return RequestReply(message_id=mid, campaign_id="paris", sender="s_" + mid, occurred_at=at,
                        reply_to="sealed", prefix="33-612", texts_from_sender=texts)


def kinds(events):
    return [type(e).__name__ + (f":{e.reason}" if hasattr(e, "reason") else "") for e in events]


def calm_then_burst(shard, burst=5):
    """One first text a minute for ten minutes, then ``burst`` in minute 10."""
    calm = shard.decide([text(f"c{i}", i * MINUTE) for i in range(10)])
    assert all(isinstance(e, ReplyApproved) for e in calm)
    return shard.decide([text(f"b{i}", 10 * MINUTE + i) for i in range(burst)])


def test_a_burst_over_three_times_the_baseline_starts_a_surge_and_defers_the_reply():
    # Given a calm hour of 1 first text a minute, when 5 come in one minute,
    shard = shard_with()
    burst = calm_then_burst(shard)
    # then the first four are answered, the fifth is deferred and the surge starts with it.
    assert kinds(burst) == ["ReplyApproved"] * 4 + ["ReplyDeferred", "SurgeStarted"]
    started = burst[-1]
    assert (started.first_texts, started.baseline_texts, started.baseline_minutes) == (5, 10, 10)
    # (the baseline: 10 texts in 10 minutes, and the 50 minutes not seen at the prior of 1)
    assert [e.seq for e in burst] == list(range(burst[0].seq, burst[0].seq + 6))
    assert burst[4].queued == 1 and shard.status()["paris"]["surge"] is True


def test_surge_mode_is_on_by_default_and_a_launch_at_the_expected_rate_is_no_surge():
    shard = CampaignShard([campaign(budget_micros=10**9)])
    # 10 first texts a minute from the start: 3x the default prior of 3, no surge;
    calm = shard.decide([text(f"c{m}-{i}", m * MINUTE + i) for m in range(10) for i in range(10)])
    assert all(isinstance(e, ReplyApproved) for e in calm)
    # 200 in one minute is one.
    burst = shard.decide([text(f"b{i}", 10 * MINUTE + i) for i in range(200)])
    assert any(isinstance(e, SurgeStarted) for e in burst)
    assert any(isinstance(e, ReplyDeferred) for e in burst)


def queued_directly(shard, *commands):
    """Decide requests without the tick a shard runs first: the queue fills, nothing leaves."""
    state, c = shard._states["paris"], shard._campaigns["paris"]
    out = []
    for command in commands:
        for e in decide_reply(state, command, c):
            evolve_campaign(state, e)
            out.append(e)
    return out


def test_a_full_queue_keeps_the_senders_who_texted_again():
    # Given a surge and a queue of 3 holding a first text (b4) and two senders texting again
    # (their earlier text was not answered; screening forwards them, so they are no flooders),
    shard = shard_with()
    calm_then_burst(shard)  # b4 (1 text) is queued
    queued = queued_directly(shard, text("q1", 10 * MINUTE + 10, texts=2),
                             text("q2", 10 * MINUTE + 11, 2))
    assert kinds(queued) == ["ReplyDeferred", "ReplyDeferred"]
    # when another first text comes, he is refused: the queue is full of better ones;
    assert kinds(queued_directly(shard, text("worse", 10 * MINUTE + 12, 1))) == [
        "ReplyDenied:queue_full"]
    # when a sender texting again comes, the first text makes room for him.
    better = queued_directly(shard, text("new", 10 * MINUTE + 13, 3))
    assert kinds(better) == ["ReplyDeferred", "ReplyExpired:queue_full"]
    assert better[1].message_id == "b4" and better[1].sender == "s_b4"
    assert shard.status()["paris"]["queued"] == 3


def test_ticks_release_the_queue_at_the_release_rate_best_first():
    shard = shard_with()
    calm_then_burst(shard)
    queued_directly(shard, text("q2", 10 * MINUTE + 10, 2), text("q1", 10 * MINUTE + 11, 1))
    # A tick in the same minute releases the sender who texted again (no rate for him), then
    # two first texts (the burst of 2 a minute), oldest first,
    released = shard.decide([Tick(campaign_id="paris", occurred_at=10 * MINUTE + 30_000)])
    assert kinds(released) == ["ReplyApproved", "ReplyApproved", "ReplyApproved"]
    assert [e.message_id for e in released] == ["q2", "b4", "q1"]
    assert released[1].deferred_at == 10 * MINUTE + 4
    assert released[1].occurred_at == released[1].send_at == 10 * MINUTE + 30_000
    assert released[1].sender == "s_b4" and released[1].prefix == "33-612"
    # and another tick right after releases nothing, and leaves no trace.
    assert shard.decide([Tick(campaign_id="paris", occurred_at=10 * MINUTE + 31_000)]) == []
    assert shard.status()["paris"]["queued"] == 0


def test_a_request_during_a_surge_releases_what_the_rate_allows_first():
    # The requests' own event time moves the clock: the shard ticks before each one.
    shard = shard_with(surge_release_per_minute=1)
    calm_then_burst(shard)  # b4 queued
    out = shard.decide([text("q1", 10 * MINUTE + 10), text("q2", 10 * MINUTE + 11)])
    assert kinds(out) == ["ReplyApproved", "ReplyDeferred", "ReplyDeferred"]
    assert out[0].message_id == "b4" and out[0].deferred_at is not None


def test_deferred_requests_older_than_the_ttl_expire_with_an_event():
    shard = shard_with(surge_release_per_minute=1)
    calm_then_burst(shard)
    queued_directly(shard, text("q1", 10 * MINUTE + 10, 1), text("q2", 10 * MINUTE + 11, 1))
    assert [e.message_id for e in shard.decide([Tick(
        campaign_id="paris", occurred_at=10 * MINUTE + 20,
    )])] == ["b4"]
    # Nothing more is released in that minute; 11 minutes later both are over the TTL.
    late = shard.decide([Tick(campaign_id="paris", occurred_at=21 * MINUTE + 20)])
    assert kinds(late) == ["SurgeEnded", "ReplyExpired:ttl", "ReplyExpired:ttl"]
    assert [e.deferred_at for e in late[1:]] == [10 * MINUTE + 10, 10 * MINUTE + 11]
    assert shard.status()["paris"]["queued"] == 0


def test_the_surge_ends_after_quiet_minutes_and_requests_are_answered_again():
    shard = shard_with()
    calm_then_burst(shard)
    # Minutes 11 and 12 are quiet; at minute 13 a request finds the surge over.
    after = shard.decide([text("late", 13 * MINUTE + 5)])
    assert kinds(after) == ["SurgeEnded", "ReplyApproved", "ReplyApproved"]
    assert after[1].message_id == "b4"  # the tick at the request's time releases the queue
    assert after[-1].message_id == "late" and after[-1].deferred_at is None
    assert shard.status()["paris"]["surge"] is False


def test_switching_surge_mode_off_ends_the_surge_and_still_releases_the_queue():
    shard = shard_with()
    calm_then_burst(shard)
    shard.control([ChangePolicy(command_id="p2", campaign_id="paris", changes={"surge_multiple": 0},
                                operator="alice", occurred_at=10 * MINUTE + 20)])
    out = shard.decide([Tick(campaign_id="paris", occurred_at=10 * MINUTE + 30)])
    assert kinds(out) == ["SurgeEnded", "ReplyApproved"]


def test_a_redelivered_request_gets_its_deferral_again_and_nothing_changes():
    shard = shard_with()
    burst = calm_then_burst(shard)
    again = shard.decide([text("b4", 10 * MINUTE + 4)])
    assert again == [burst[4]] and shard.status()["paris"]["queued"] == 1


def test_budget_and_pacing_hold_released_replies_too():
    shard = CampaignShard([campaign(budget_micros=160_000 * 12)])  # 12 replies
    shard.control([ChangePolicy(command_id="p1", campaign_id="paris",
                                changes={**SURGE, "surge_release_per_minute": 50}, operator="a",
                                occurred_at=0)])
    calm_then_burst(shard, burst=6)  # 10 + 4 approved would be 14: 12 paid, 2 denied
    status = shard.status()["paris"]
    assert status["balance_micros"] >= 0
    assert shard.decide([Tick(
        campaign_id="paris", occurred_at=10 * MINUTE + 30,
    )]) == []  # nothing left to pay with


def test_the_surge_and_the_queue_survive_a_snapshot_and_a_replay():
    shard = shard_with()
    history = shard.decide([text(f"c{i}", i * MINUTE) for i in range(10)])
    history += shard.decide([text(f"b{i}", 10 * MINUTE + i) for i in range(7)])
    state = shard._states["paris"]
    assert state.surge.active and len(state.queue) > 0
    restored, _ = decode_snapshot(encode_snapshot(state, {}))
    assert restored == state
    rebuilt = shard_with()
    rebuilt.recover(history)
    assert rebuilt._states["paris"] == state
    tick = Tick(campaign_id="paris", occurred_at=10 * MINUTE + 40_000)
    assert rebuilt.decide([tick]) == shard.decide([tick]) != []


def test_the_audit_re_decides_a_surge_from_the_journal():
    # Given the surge policy set live, a calm hour, a burst, ticks by the clock, and a late pest,
    steps = [ChangePolicy(command_id="p1", campaign_id="paris",
                          changes={**SURGE, "surge_release_per_minute": 1}, operator="alice", occurred_at=T0)]
    steps += [(f"c{i}", "paris", f"s_c{i}", T0 + i * MINUTE, "33-612") for i in range(10)]
    steps += [(f"b{i}", "paris", f"s_b{i}", T0 + 10 * MINUTE + i, "33-612") for i in range(12)]
    steps += [Tick(campaign_id="paris", occurred_at=T0 + 10 * MINUTE + 30_000), Tick(
        campaign_id="paris", occurred_at=T0 + 30 * MINUTE,
    )]
    steps += [("late", "paris", "s_late", T0 + 31 * MINUTE, "33-612")]
    journal = journal_of(steps, [audit_campaign(budget=10**9)], batch=3)
    types = {type(e) for e in journal}
    assert {ReplyDeferred, SurgeStarted, ReplyExpired, SurgeEnded} <= types
    assert any(isinstance(e, ReplyApproved) and e.deferred_at for e in journal)
    assert any(isinstance(e, ReplyDenied) and e.reason == "queue_full" for e in journal)
    # then the audit reproduces every decision, ticks included,
    result = audit(journal, [audit_campaign(budget=10**9)])
    assert result.ok, result.mismatches[:1]
    assert result.counters.pending == 0
    # and a release that never happened is caught.
    journal = [e for e in journal if not (isinstance(e, ReplyApproved) and e.deferred_at)]
    assert not audit(journal, [audit_campaign(budget=10**9)]).ok
