"""Flood defence properties over random logs, and the 2017 story through the real core."""

from hypothesis import event, given, settings
from hypothesis import strategies as st

from actors.shard import CampaignShard
from schemas.commands import ChangePolicy, CreditBudget, RequestReply, ScreenText, Tick
from schemas.events import ReplyApproved, ReplyDeferred, ReplyExpired
from streams.rules.screening import SenderState, decide_screening, evolve_sender
from tests import factories

DAY = 86_400_000
T0 = 1_508_112_000_000  # 2017-10-16


def campaign(budget, pacing):
    return factories.campaign("c", reply_text="Non c'est non.", budget_micros=budget,
                              starts_at=T0, ends_at=T0 + 30 * DAY, originator="AR",
                              pacing=pacing)


step = st.one_of(
    st.tuples(st.just("text"), st.integers(0, 7), st.integers(0, 3 * 3_600_000)),
    st.tuples(st.just("credit"), st.integers(1, 400_000), st.just(0)),
    st.tuples(st.just("reserve"), st.integers(0, 300_000), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(budget=st.integers(0, 2_000_000), pacing=st.booleans(), steps=st.lists(step, max_size=60))
def test_spend_never_exceeds_credits_minus_reserve_and_nobody_is_answered_twice(budget, pacing, steps):
    c = campaign(budget, pacing)
    shard = CampaignShard([c])
    state = shard._states["c"]
    senders: dict[str, SenderState] = {}
    answered: set[str] = set()
    now = T0
    for i, (kind, a, gap) in enumerate(steps):
        now += gap
        if kind == "credit":
            shard.control([CreditBudget(command_id=f"k{i}", campaign_id="c", amount_micros=a, source="test",
                                        operator="op", occurred_at=now)])
            continue
        if kind == "reserve":
            shard.control([ChangePolicy(command_id=f"r{i}", campaign_id="c", changes={"reserve_micros": a},
                                        operator="op", occurred_at=now)])
            continue
        sender = f"s{a}"
        policy = state.policy
        s = senders.setdefault(sender, SenderState())
        verdict = decide_screening(s, ScreenText(message_id=f"m{i}", campaign_id="c", sender=sender,
                                                 body="salut", occurred_at=now, reply_to=""), policy)
        for e in verdict:
            evolve_sender(s, e, policy)
        if verdict[0].verdict != "forward":
            continue
        # The request, after what a tick at its time releases (the safety delay's queue).
        for decision in shard.decide([RequestReply(message_id=f"m{i}", campaign_id="c",
                                                   sender=sender, occurred_at=now, reply_to="")]):
            if isinstance(decision, ReplyApproved):
                assert decision.sender not in answered, "a sender answered twice within the cooldown"
                answered.add(decision.sender)
                assert decision.balance_after_micros >= state.policy.reserve_micros
        # At every prefix of the log: spend <= budget + credits - reserve in force at the time.
        assert state.spent_micros <= budget + state.credited_micros
        assert state.balance_micros >= 0


# --- with surge mode and the per-prefix limit on -------------------------------------------

FLOOD = {"surge_multiple": 2, "surge_min_rate": 3, "surge_quiet_minutes": 2, "surge_queue": 4,
         "surge_ttl_ms": 10 * 60_000, "surge_release_per_minute": 2,
         "prefix_burst": 2, "prefix_period_ms": 5 * 60_000}

flood_step = st.one_of(
    # texts arriving together after a gap: ([(sender, number range)], gap)
    st.tuples(st.just("texts"),
              st.lists(st.tuples(st.integers(0, 60),
                                 st.sampled_from(["33-612", "33-756", "33-699", "33-650", ""])),
                       min_size=1, max_size=10),
              st.just(""), st.sampled_from([0, 1_000, 30_000, 90_000, 600_000])),
    st.tuples(st.just("tick"), st.just(()), st.just(""), st.integers(0, 15 * 60_000)),
    st.tuples(st.just("credit"), st.integers(1, 400_000), st.just(""), st.just(0)),
    st.tuples(st.just("reserve"), st.integers(0, 300_000), st.just(""), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(budget=st.one_of(st.integers(0, 4_000_000), st.integers(5, 60).map(lambda n: n * 80_000)),
       pacing=st.booleans(), steps=st.lists(flood_step, min_size=4, max_size=40))
def test_with_surge_and_prefix_rules_spend_is_bounded_and_no_deferred_request_is_lost(
        budget, pacing, steps):
    c = campaign(budget, pacing)
    shard = CampaignShard([c])
    history = shard.control([ChangePolicy(command_id="flood", campaign_id="c", changes=dict(FLOOD),
                                          operator="op", occurred_at=T0)])
    state = shard._states["c"]
    senders: dict[str, SenderState] = {}
    answered: set[str] = set()
    deferred: set[str] = set()
    ended: set[str] = set()  # released or expired
    now = T0
    for i, (kind, a, prefix, gap) in enumerate(steps):
        now += gap
        events: list = []
        if kind == "credit":
            events = shard.control([CreditBudget(command_id=f"k{i}", campaign_id="c", amount_micros=a,
                                                 source="test", operator="op", occurred_at=now)])
        elif kind == "reserve":
            events = shard.control([ChangePolicy(command_id=f"r{i}", campaign_id="c",
                                                 changes={"reserve_micros": a}, operator="op",
                                                 occurred_at=now)])
        elif kind == "tick":
            events = shard.decide([Tick(campaign_id="c", occurred_at=now)])
        else:
            for j, (who, prefix) in enumerate(a):
                sender = f"s{who}"
                policy = state.policy
                s = senders.setdefault(sender, SenderState())
                verdict = decide_screening(s, ScreenText(
                    message_id=f"m{i}.{j}", campaign_id="c", sender=sender, body="salut", occurred_at=now,
                    reply_to="", number_kind="mobile" if prefix else "unknown",
                    country="FR" if prefix else None, prefix=prefix,
                ), policy)
                for e in verdict:
                    evolve_sender(s, e, policy)
                if verdict[0].verdict == "forward":
                    events += shard.decide([RequestReply(message_id=f"m{i}.{j}", campaign_id="c",
                                                         sender=sender, occurred_at=now, reply_to="",
                                                         prefix=prefix,
                                                         texts_from_sender=verdict[0].texts_from_sender)])
        history += events
        for e in events:
            if isinstance(e, ReplyApproved):
                assert e.sender not in answered, "a sender answered twice within the cooldown"
                answered.add(e.sender)
                # Spend stays within the credited budget minus the reserve in force.
                assert e.balance_after_micros >= state.policy.reserve_micros
                if e.deferred_at is not None:
                    assert e.message_id in deferred and e.message_id not in ended
                    ended.add(e.message_id)
            elif isinstance(e, ReplyDeferred):
                deferred.add(e.message_id)
            elif isinstance(e, ReplyExpired):
                assert e.message_id in deferred and e.message_id not in ended
                ended.add(e.message_id)
        # At every prefix of the log:
        assert state.spent_micros == budget + state.credited_micros - state.balance_micros
        assert state.balance_micros >= 0
        queued = set(state.queue.holding) | set(state.queue.held)
        assert len(queued) <= state.policy.surge_queue
        assert deferred == ended | queued and not ended & queued  # none lost
    event("some requests deferred" if deferred else "no deferral")
    event("some released or expired" if ended else "none released or expired")
    # The journal rebuilds exactly this state.
    rebuilt = CampaignShard([c], history=history)
    assert rebuilt._states["c"] == state
