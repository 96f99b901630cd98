"""Campaign budget decisions, told as stories."""

import pytest

from actors.campaign import CampaignState, evolve_campaign, reply_cost
from actors.shard import CampaignShard
from schemas.events import ReplyApproved, ReplyDenied
from tests.factories import REPLY_2017, decide, request
from tests.factories import campaign_2017 as campaign


def test_the_2017_reply_costs_two_segments_at_eight_cents():
    assert len(REPLY_2017) == 229
    assert reply_cost(campaign()) == reply_cost(campaign())
    cost = reply_cost(campaign())
    assert (cost.segments, cost.encoding, cost.cost_micros) == (2, "GSM-7", 160_000)


def test_a_reply_is_approved_and_charged_when_the_budget_covers_it():
    c = campaign(budget_micros=500_000)
    state = CampaignState.opening(c)
    event = decide(state, request("m1"), c)
    assert isinstance(event, ReplyApproved)
    assert (event.cost_micros, event.balance_after_micros, event.seq) == (160_000, 340_000, 1)
    assert state.balance_micros == 340_000 and state.spent_micros == 160_000


def test_a_spent_budget_denies_with_the_reason_and_keeps_the_balance():
    c = campaign(budget_micros=200_000)
    state = CampaignState.opening(c)
    decide(state, request("m1"), c)
    event = decide(state, request("m2"), c)
    assert isinstance(event, ReplyDenied)
    assert (event.reason, event.balance_after_micros, event.seq) == ("budget_exhausted", 40_000, 2)


def test_texts_outside_the_campaign_period_are_denied():
    c = campaign(starts_at=100, ends_at=200)
    state = CampaignState.opening(c)
    assert decide(state, request("early", at=99), c).reason == "not_started"
    assert isinstance(decide(state, request("in", at=100), c), ReplyApproved)
    assert decide(state, request("late", at=200), c).reason == "ended"


def test_the_same_request_twice_is_decided_once_and_answered_the_same():
    c = campaign(budget_micros=500_000)
    state = CampaignState.opening(c)
    first = decide(state, request("m1"), c)
    again = decide(state, request("m1"), c)
    assert again == first
    assert (state.balance_micros, state.approved, state.seq) == (340_000, 1, 1)


def test_a_curly_apostrophe_doubles_the_cost():
    cost = reply_cost(campaign(reply=REPLY_2017.replace("'", "\u2019")))
    assert (cost.segments, cost.encoding, cost.cost_micros) == (4, "UCS-2", 320_000)


def test_shard_routes_each_request_to_its_campaign_and_recovers_from_history():
    paris, lyon = campaign(cid="paris"), campaign(cid="lyon", budget_micros=160_000)
    shard = CampaignShard([paris, lyon])
    events = shard.decide([request("a", cid="paris"), request("b", cid="lyon"),
                           request("c", cid="lyon"), request("d", cid="nowhere")])
    assert [type(e).__name__ for e in events] == [
        "ReplyApproved", "ReplyApproved", "ReplyDenied", "ReplyDenied"]
    assert [getattr(e, "reason", None) for e in events[2:]] == ["budget_exhausted", "unknown_campaign"]
    # A new shard fed the same decisions has the same balances.
    rebuilt = CampaignShard([paris, lyon], history=events)
    assert rebuilt.status() == shard.status()
    assert rebuilt.decide([request("b", cid="lyon")]) == [events[1]]


@pytest.mark.parametrize("budget", [0, 159_999])
def test_a_budget_below_one_reply_answers_nothing(budget):
    c = campaign(budget_micros=budget)
    assert decide(CampaignState.opening(c), request("m1"), c).reason == "budget_exhausted"


def test_replayed_operator_command_is_still_known_after_50000_later_decisions():
    # Issue 13 item 3: command ids shared the 50,000-entry decision memory; a signed
    # CreditBudget replayed (within its 10-minute freshness window) after a flood's worth
    # of decisions was forgotten, and credited twice.
    from actors.campaign import COMMAND_MEMORY_MS, REMEMBERED_DECISIONS, decide_control
    from schemas.commands import CreditBudget
    from schemas.events import BudgetCredited

    c = campaign(budget_micros=0)
    state = CampaignState.opening(c)
    credit = CreditBudget(command_id="cmd-1", campaign_id="paris", amount_micros=5_000_000,
                          source="crowdfund", operator="alice", occurred_at=1_000)
    (credited,) = decide_control(state, credit)
    evolve_campaign(state, credited)
    for i in range(REMEMBERED_DECISIONS + 10):  # a flood, denied: nothing in the budget
        evolve_campaign(state, ReplyDenied(message_id=f"m{i}", campaign_id="paris", sender="s_x",
                                           reason="budget_exhausted", cost_micros=160_000,
                                           balance_after_micros=state.balance_micros, seq=state.seq + 1,
                                           occurred_at=2_000 + i, policy_version=1, prefix="336"))
    assert decide_control(state, credit) == [credited]  # the same event, not a new credit
    assert state.balance_micros == 5_000_000
    # Forgotten only once no signed command can carry its time any more: a later command
    # signed more than twice the freshness window after it.
    later = CreditBudget(command_id="cmd-2", campaign_id="paris", amount_micros=1, source="crowdfund",
                         operator="alice", occurred_at=1_000 + COMMAND_MEMORY_MS)
    (second,) = decide_control(state, later)
    evolve_campaign(state, second)
    assert "cmd:cmd-1" in state.commands
    last = CreditBudget(command_id="cmd-3", campaign_id="paris", amount_micros=1, source="crowdfund",
                        operator="alice", occurred_at=1_001 + COMMAND_MEMORY_MS)
    (third,) = decide_control(state, last)
    evolve_campaign(state, third)
    assert list(state.commands) == ["cmd:cmd-2", "cmd:cmd-3"]
    assert isinstance(third, BudgetCredited)
