"""The console's figures (streams/console/board.py) from a raid decided by the real core
(the simulator's raid scenario): each surge's decisions add up to the journal's, the queue by
evidence to the queue, the money to the campaign's state; the policy rows say who changed
what."""

from __future__ import annotations

from schemas.events import PolicyChanged, ReplyApproved, ReplyDenied, ReplyExpired, ReplyHeldBack
from streams.console.board import color_of, percentile
from streams.console.metrics import Projection
from streams.simulate.outcomes import core_runner
from streams.simulate.scenarios import generate_plan

MINUTE = 60_000


def _raid():
    plan = generate_plan("raid", 1)
    pipelines: list = []
    core_runner(plan.campaign, {}, pipelines=pipelines)(plan.texts)
    return plan.campaign, pipelines[0].events


def test_a_surge_shows_what_it_decided_as_the_journal_holds_it():
    campaign, events = _raid()
    p = Projection([campaign])
    for e in events:
        p.apply(e, e.occurred_at)
    now = max(e.occurred_at for e in events)
    view = p.snapshot(now)["campaigns"][campaign.id]["console"]
    (surge,) = view["flood"]["surges"]
    start, end = surge["started_at"], surge["ended_at"]
    assert end is not None and not view["flood"]["active"]
    first = (start // MINUTE - 1) * MINUTE

    def arrived(e):
        at = e.deferred_at if isinstance(e, ReplyExpired) else e.occurred_at
        return first <= at <= end

    raid_words = [e for e in events if isinstance(e, ReplyDenied | ReplyExpired)
                  and e.reason == "raid_words" and arrived(e)]
    assert surge["raid_words"] == len(raid_words) > 100
    held = [e for e in events if isinstance(e, ReplyHeldBack)]
    assert surge["held_back"] == len(held)
    released = {e.message_id for e in events if isinstance(e, ReplyApproved)} & {
        e.message_id for e in held}
    assert surge["released"] == len(released)
    assert surge["spent_micros"] <= surge["cap_micros"]
    # The waits: every approval after the 30-minute delay.
    waits = [e.occurred_at - e.deferred_at for e in events
             if isinstance(e, ReplyApproved) and e.deferred_at is not None]
    assert view["waits"]["p95_ms"] == percentile(waits, 95) >= 30 * MINUTE
    money = view["money"]
    state = p.figures[campaign.id].state
    assert (money["spent_micros"], money["balance_micros"]) == (state.spent_micros,
                                                               state.balance_micros)
    assert money["used_percent"] == round(100 * state.spent_micros / campaign.budget_micros, 1)
    assert money["allowance"]["lasts_until"] == campaign.ends_at
    queue = view["flood"]["queue"]
    assert queue["waiting_delay"] + sum(queue["held_back"].values()) == len(state.queue)


def test_the_policy_rows_say_who_changed_what_and_what_it_was():
    campaign, events = _raid()
    p = Projection([campaign])
    for e in events[:100]:
        p.apply(e, e.occurred_at)
    at = events[99].occurred_at
    p.apply(PolicyChanged(command_id="c1", campaign_id=campaign.id, version=2,
                          changes={"reserve_micros": 50_000_000}, operator="alice", seq=
                          p.figures[campaign.id].state.seq + 1, occurred_at=at), at)
    c = p.snapshot(at)["campaigns"][campaign.id]
    rows = {r["key"]: r for r in c["console"]["policy"]}
    assert rows["reserve_eur"] == {"key": "reserve_eur", "value": "50", "version": 2,
                                   "by": "alice", "at": at, "was": "0"}
    assert "version" not in rows["sender_burst"]  # as the campaign file set it
    assert c["policy_history"] == [{"version": 2, "by": "alice", "at": at,
                                    "changes": {"reserve_eur": ["0", "50"]}}]


def test_one_colour_per_outcome_wherever_it_is_shown():
    assert color_of("suppress:flooder") == color_of("flooder") == color_of("expired:flooder")
    assert color_of("forward") == color_of("replied")
    assert color_of("something new") == "#778ca3"
