"""Live policy and credits in the pure core, told as stories."""

import pytest

from actors.campaign import CampaignState, decide_control, decide_reply, evolve_campaign
from actors.shard import CampaignShard
from schemas import codec
from schemas.commands import ChangePolicy, CreditBudget, RequestReply
from schemas.events import BudgetCredited, ControlRejected, PolicyChanged, ReplyApproved
from schemas.policy import Policy, PolicyChain, PolicyError, describe, next_version, parse_changes
from tests.factories import campaign_2017 as campaign
from tests.factories import request


def apply(state, events):
    for e in events:
        evolve_campaign(state, e)
    return events[0]


def change(cid="paris", command_id="c1", **changes):
    return ChangePolicy(command_id=command_id, campaign_id=cid, changes=changes, operator="alice",
                        occurred_at=5_000)


def test_operator_keys_become_core_units():
    assert parse_changes(["price_per_segment_eur=0.07", "reserve_eur=50", "cooldown_days=30"]) == {
        "price_per_segment_micros": 70_000, "reserve_micros": 50_000_000,
        "cooldown_ms": 30 * 86_400_000}
    assert parse_changes(["cooldown_days=never"]) == {"cooldown_ms": None}


@pytest.mark.parametrize("pairs, message", [
    ([], "no change"), (["colour=red"], "unknown policy key"), (["reserve_eur"], "key=value"),
    (["price_per_segment_eur=0"], "> 0"), (["reserve_eur=-1"], ">= 0"),
    (["cooldown_days=soon"], "days"), (["price_per_segment_eur=0.0000001"], "6 decimals"),
])
def test_bad_operator_input_is_refused_with_the_reason(pairs, message):
    with pytest.raises(PolicyError, match=message):
        parse_changes(pairs)


def test_a_price_change_is_a_new_version_used_and_recorded_by_later_decisions():
    c = campaign(budget_micros=1_000_000)
    state = CampaignState.opening(c)
    first = apply(state, decide_reply(state, request("m1"), c))
    changed = apply(state, decide_control(state, change(price_per_segment_micros=50_000)))
    second = apply(state, decide_reply(state, request("m2", at=6_000), c))
    assert isinstance(changed, PolicyChanged) and (changed.version, changed.seq) == (2, 2)
    assert (first.policy_version, first.cost_micros) == (1, 160_000)
    assert (second.policy_version, second.cost_micros, second.seq) == (2, 100_000, 3)
    assert describe(state.policy)["price_per_segment_eur"] == "0.05"


def test_the_reserve_is_never_spent():
    c = campaign(budget_micros=400_000)
    state = CampaignState.opening(c)
    apply(state, decide_control(state, change(reserve_micros=200_000)))
    assert isinstance(apply(state, decide_reply(state, request("m1"), c)), ReplyApproved)
    denied = apply(state, decide_reply(state, request("m2"), c))
    assert (denied.reason, state.balance_micros) == ("reserve_reached", 240_000)


def test_a_credit_revives_a_spent_campaign():
    c = campaign(budget_micros=0)
    state = CampaignState.opening(c)
    assert apply(state, decide_reply(state, request("m1"), c)).reason == "budget_exhausted"
    credit = apply(state, decide_control(
        state, CreditBudget(command_id="k1", campaign_id="paris", amount_micros=160_000, source="leetchi",
                            operator="bob", occurred_at=7_000)))
    assert isinstance(credit, BudgetCredited) and credit.balance_after_micros == 160_000
    assert isinstance(apply(state, decide_reply(state, request("m2"), c)), ReplyApproved)
    assert (state.credited_micros, state.balance_micros) == (160_000, 0)


def test_the_same_operator_command_twice_applies_once():
    c = campaign()
    state = CampaignState.opening(c)
    credit = CreditBudget(command_id="k1", campaign_id="paris", amount_micros=1_000_000, source="leetchi",
                          operator="bob", occurred_at=7_000)
    first = apply(state, decide_control(state, credit))
    again = apply(state, decide_control(state, credit))
    assert first == again and state.credited_micros == 1_000_000 and state.seq == 1


@pytest.mark.parametrize("command", [
    change(colour="red"), change(price_per_segment_micros=0), change(),
    CreditBudget(command_id="k", campaign_id="paris", amount_micros=-5, source="x", operator="bob",
                 occurred_at=1),
])
def test_invalid_commands_from_the_log_are_refused_as_events(command):
    state = CampaignState.opening(campaign())
    refused = apply(state, decide_control(state, command))
    assert isinstance(refused, ControlRejected) and refused.reason
    assert state.seq == 0 and state.policy.version == 1


def test_shard_refuses_control_for_an_unknown_campaign():
    (refused,) = CampaignShard([campaign()]).control([change(cid="atlantis")])
    assert isinstance(refused, ControlRejected) and refused.reason == "unknown campaign"


def test_recovery_applies_events_in_seq_order_whatever_the_journal_order():
    c = campaign(budget_micros=1_000_000)
    live = CampaignShard([c])
    events = [*live.decide([request("m1")]), *live.control([change(price_per_segment_micros=50_000)]),
              *live.control([CreditBudget(command_id="k", campaign_id="paris", amount_micros=10_000,
                                          source="x", operator="bob", occurred_at=1)]),
              *live.decide([request("m2"), request("m3")])]
    rebuilt = CampaignShard([c], history=list(reversed(events)))
    assert rebuilt.status() == live.status()


def test_a_version_1_decision_from_an_old_journal_is_upcast_and_recovers():
    old = (b'{"type":"ReplyApproved","v":1,"message_id":"m1","campaign_id":"paris",'
           b'"sender":"s_x","segments":2,"encoding":"GSM-7","cost_micros":160000,'
           b'"balance_after_micros":840000,"seq":1,"occurred_at":1000}')
    event = codec.decode(old)
    assert event.policy_version == 1
    shard = CampaignShard([campaign(budget_micros=1_000_000)], history=[event])
    assert shard.status()["paris"]["balance_micros"] == 840_000
    # The same request again is answered with the recovered decision, not charged twice.
    assert shard.decide([RequestReply(message_id="m1", campaign_id="paris", sender="s_x", occurred_at=1000,
                                      reply_to="")]) == [event]


def test_the_chain_of_versions_takes_changes_in_any_order_and_each_version_once():
    first = Policy(version=1, price_per_segment_micros=80_000, cooldown_ms=None,
                   allowed_countries=("FR",))
    assert next_version(first, 3, {"sender_burst": 9}) is None  # builds on version 2
    assert next_version(first, 1, {"sender_burst": 9}) is None  # a repeat
    assert next_version(first, 2, {"sender_burst": 9}).sender_burst == 9
    chain = PolicyChain(first)
    chain.learn(3, {"sender_burst": 7})
    assert chain.policy_at(3) is None and chain.latest is first  # waits for version 2
    chain.learn(2, {"sender_burst": 5, "surge_queue": 10})
    assert [p.version for p in chain.versions] == [1, 2, 3]
    assert (chain.policy_at(2).sender_burst, chain.policy_at(3).sender_burst) == (5, 7)
    assert chain.policy_at(3).surge_queue == 10  # version 3 builds on version 2
    chain.learn(2, {"sender_burst": 1})  # a repeat changes nothing
    assert chain.policy_at(2).sender_burst == 5
    assert chain.policy_at(0) is None and chain.policy_at(4) is None


def test_a_policy_whose_requests_would_all_expire_before_they_are_judged_is_refused():
    from actors.campaign import CampaignState, decide_control
    from schemas.commands import ChangePolicy
    from schemas.policy import policy_problem
    from tests.factories import campaign

    assert policy_problem(Policy(version=1, price_per_segment_micros=1)) is None
    short = Policy(version=1, price_per_segment_micros=1, reply_delay_ms=30 * 60_000,
                   surge_ttl_ms=20 * 60_000)
    assert "must be longer than reply_delay_minutes (30)" in policy_problem(short)
    for bad in ("reply_delay_minutes=1441", "surge_ttl_minutes=20000", "surge_spend_percent=101"):
        with pytest.raises(PolicyError):
            parse_changes([bad])
    # The core refuses it too (a change from the log is checked again), in words.
    state = CampaignState.opening(campaign(policy=()))
    (rejected,) = decide_control(state, ChangePolicy(
        command_id="c", campaign_id="paris", changes={"surge_ttl_ms": 10 * 60_000},
        operator="alice", occurred_at=0))
    assert rejected.TYPE == "ControlRejected" and "expire before it is judged" in rejected.reason


def test_a_campaign_file_whose_policy_cannot_work_is_refused_in_one_line(tmp_path):
    from infra.config import ConfigError, load_campaigns

    path = tmp_path / "c.toml"
    path.write_text('[[campaign]]\nid = "paris"\nnumber = "+33644630001"\nreply_text = "Non."\n'
                    'language = "fr"\nbudget_eur = "10.00"\nprice_per_segment_eur = "0.08"\n'
                    'start = 2026-01-01\nend = 2027-01-01\n'
                    'policy = { reply_delay_minutes = "60", surge_ttl_minutes = "30" }\n')
    with pytest.raises(ConfigError, match=r"\('paris'\): policy: .*must be longer than reply_delay"):
        load_campaigns(path)
