"""Flood defence properties over random logs, and the 2017 story through the real core."""

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.shard import CampaignShard
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, CreditBudget, RequestReply, ScreenText
from schemas.events import ReplyApproved
from streams.screening import SenderState, decide_screening, evolve_sender
from streams.simulate import (
    Scenario,
    campaign_2017,
    core_runner,
    generate,
    ground_truth,
    run_policy,
)

DAY = 86_400_000
T0 = 1_508_112_000_000  # 2017-10-16


def campaign(budget, pacing):
    return Campaign(id="c", number="33644630001", reply_text="Non c'est non.", language="fr",
                    country="FR", budget_micros=budget, price_per_segment_micros=80_000,
                    starts_at=T0, ends_at=T0 + 30 * DAY, originator="AR", pacing=pacing)


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
            shard.control([CreditBudget(f"k{i}", "c", a, "test", "op", now)])
            continue
        if kind == "reserve":
            shard.control([ChangePolicy(f"r{i}", "c", {"reserve_micros": a}, "op", now)])
            continue
        sender = f"s{a}"
        policy = state.policy
        s = senders.setdefault(sender, SenderState())
        verdict = decide_screening(s, ScreenText(f"m{i}", "c", sender, "salut", now, ""), policy)
        for e in verdict:
            evolve_sender(s, e, policy)
        if verdict[0].verdict != "forward":
            continue
        (decision,) = shard.decide([RequestReply(f"m{i}", "c", sender, now, "")])
        if isinstance(decision, ReplyApproved):
            assert sender not in answered, "a sender answered twice within the cooldown"
            answered.add(sender)
        # At every prefix of the log: spend <= budget + credits - reserve in force at the time.
        assert state.spent_micros <= budget + state.credited_micros
        assert state.balance_micros >= 0
        if isinstance(decision, ReplyApproved):
            assert decision.balance_after_micros >= state.policy.reserve_micros


def test_the_2017_flood_costs_the_trolls_nothing_under_the_configured_policy():
    scenario = Scenario(scale=0.1)
    texts = generate(scenario)
    budget = 370_000_000
    outcome = run_policy("configured", core_runner(campaign_2017(scenario, budget)), texts, budget)
    assert outcome.eur_spent <= budget
    assert outcome.troll_spend_micros == 0
    assert outcome.budget_ran_out_at_ms is None
    unpaced = run_policy("unpaced", core_runner(campaign_2017(scenario, budget), {"pacing": False}),
                         texts, budget)
    assert unpaced.genuine_senders_answered > outcome.genuine_senders_answered
    # Without pacing, the test-text filter still keeps many curious testers unanswered.
    assert unpaced.testers_answered < ground_truth(texts)["tester"]["senders"]
