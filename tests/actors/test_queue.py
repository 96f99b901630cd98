"""The campaign's queue: requests waiting out the delay, held back, pushed out, expired, and
the state surviving snapshots and replays."""

from actors.queue import RequestQueue, Waiting, tiebreak
from actors.shard import CampaignShard
from actors.snapshot import decode_snapshot, encode_snapshot
from schemas.commands import ChangePolicy, RequestReply, Tick
from schemas.events import (
    ReplyApproved,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    ReplyHeldBack,
    SurgeEnded,
    SurgeStarted,
)
from tests.actors.test_flood_stories import MINUTE, T0, campaign


def request(i, at, words="=0badc0de"):
    return RequestReply(message_id=f"m{i}", campaign_id="paris", sender=f"s{i}", occurred_at=at,
                        reply_to="sealed", prefix="33-612", words=words)


def shard_with(**changes):
    shard = CampaignShard([campaign()])
    if changes:
        shard.control([ChangePolicy(command_id="p", campaign_id="paris", changes=changes,
                                    operator="alice", occurred_at=T0)])
    return shard


def test_the_queue_holds_in_arrival_order_and_releases_the_held_best_first():
    q = RequestQueue()
    for i, at in enumerate((3, 1, 2)):
        q.hold(Waiting(f"m{i}", f"s{i}", "", at, at, "", 0))
    assert list(q.holding) == ["m0", "m1", "m2"] and len(q) == 3
    q.hold(Waiting("m0", "s0", "", 3, 3, "", 0))  # delivered twice: queued once
    q.hold_back("m0", 200)
    q.hold_back("m2", 100)
    assert [k[2] for k in q.held_order] == ["m2", "m0"] and q.worst_held().message_id == "m0"
    assert q.remove("m2") == (Waiting("m2", "s2", "", 2, 2, "", 0), True)
    assert q.remove("m1")[1] is False and q.remove("nope") == (None, False)
    assert RequestQueue.from_dict(q.to_dict()) == q
    assert tiebreak("m1") == tiebreak("m1") != tiebreak("m2")


def test_a_redelivered_request_gets_its_deferral_again_and_nothing_changes():
    shard = shard_with()
    first = shard.decide([request(1, T0)])
    state = shard._states["paris"]
    before = decode_snapshot(encode_snapshot(state, {}))[0]
    assert shard.decide([request(1, T0 + 5_000)]) == [e for e in first if isinstance(e, ReplyDeferred)]
    assert decode_snapshot(encode_snapshot(state, {}))[0] == before


def test_what_waits_past_the_ttl_expires_and_a_full_queue_refuses_a_spike_s_newcomer():
    # A spike (two first texts a minute expected) whose surge may spend nothing on its cohort:
    shard = shard_with(surge_queue=3, surge_ttl_ms=40 * MINUTE, surge_min_rate=2,
                       surge_multiple=1, surge_expected_per_minute=1, surge_spend_percent=0)
    events = [e for e in shard.decide([request(i, T0 + i) for i in range(4)])
              if not isinstance(e, SurgeStarted)]
    assert [type(e) for e in events[:3]] == [ReplyDeferred] * 3
    assert isinstance(events[3], ReplyDenied) and events[3].reason == "queue_full"
    # judged when their delay ends: held back, none released (a bound of nothing),
    held = shard.decide([Tick(campaign_id="paris", occurred_at=T0 + 31 * MINUTE)])
    assert [type(e) for e in held] == [SurgeEnded] + [ReplyHeldBack] * 3
    # and expired at the TTL.
    expired = shard.decide([Tick(campaign_id="paris", occurred_at=T0 + 41 * MINUTE)])
    assert [e.reason for e in expired] == ["ttl"] * 3 and all(isinstance(e, ReplyExpired) for e in expired)


def test_held_back_requests_survive_a_snapshot_and_the_journal_rebuilds_the_state():
    shard = CampaignShard([campaign()])
    history = shard.control([ChangePolicy(
        command_id="p", campaign_id="paris", operator="alice", occurred_at=T0,
        changes={"surge_min_rate": 5, "surge_expected_per_minute": 1, "surge_spend_percent": 1})])
    history += shard.decide([request(i, T0 + i * 1_000, f"{i:08x}") for i in range(40)])  # a spike
    # judged when their delay ends: held back (the spike's cohort), then released by the next
    # tick within the surge's bound (1 % of the allowance: EUR 7.40, 46 replies at EUR 0.16).
    history += shard.decide([Tick(campaign_id="paris", occurred_at=T0 + 31 * MINUTE)])
    assert sum(isinstance(e, ReplyHeldBack) for e in history) == 40
    state = shard._states["paris"]
    assert decode_snapshot(encode_snapshot(state, {}))[0] == state  # held back, waiting
    history += shard.decide([Tick(campaign_id="paris", occurred_at=T0 + 32 * MINUTE)])
    assert sum(isinstance(e, ReplyApproved) for e in history) == 40
    assert all(spent <= bound for _, bound, spent in state.surges)
    assert CampaignShard([campaign()], history=history)._states["paris"] == state
