"""The four scenarios of issue 12 through the real core with the shipped defaults: each
seed is another trace of the same kind, and the defaults must meet every target."""

from __future__ import annotations

import pytest

from streams.simulate.scenarios import NAMES, generate_plan, run_scenario, targets_met

# Other seeds than the README's: the defaults are not tuned to one trace. Raid 200 and 206
# have SIM-rotating trolls who text again from a few ranges; raid 1, 3 and 206 a young
# campaign (a few dozen texts before the raid: the cohort's novel-paste test marks it).
SEEDS = {"launch": (1, 5, 6, 202), "flood-2017": (7,), "raid": (1, 3, 11, 19, 200, 206),
         "slow-drain": (2, 9)}


@pytest.mark.parametrize("name,seed", [(n, s) for n in NAMES for s in SEEDS[n]])
def test_the_shipped_defaults_meet_the_scenario_targets(name, seed):
    result = run_scenario(name, seed, alternatives=False)
    assert targets_met(result) == [], result["runs"][0]
    default = result["runs"][0]
    assert default["name"] == "default" and default["senders_answered_twice"] == 0


def test_without_the_safety_delay_and_surges_a_raid_is_paid():
    # The same raid decided as it comes, surges off: the raid's words are known only once
    # it has pasted them, so its first numbers are paid; with the delay, nobody is.
    result = run_scenario("raid", 3)
    by = {r["name"]: r for r in result["runs"]}
    once = by["answer_once"]["troll_spend_eur"]
    assert by["no_delay_no_surge"]["troll_spend_eur"] > 0.3 * once
    assert by["default"]["troll_spend_eur"] <= 0.15 * once


def test_a_seed_always_gives_the_same_texts_and_another_seed_others():
    a, b, c = generate_plan("raid", 4), generate_plan("raid", 4), generate_plan("raid", 5)
    assert a.texts == b.texts and a.texts != c.texts


def test_an_unknown_scenario_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown scenario 'nope'; known: launch"):
        generate_plan("nope", 1)


def test_the_text_report_shows_euros_with_their_cents():
    from streams.simulate.scenarios import render

    run = {"name": "default", "genuine_answered": 1.0, "genuine_answered_outside_raid": None,
           "genuine_answered_inside_raid": None, "troll_spend_eur": 10.5,
           "senders_answered_twice": 0, "balance_end_eur": 3629.6,
           "answer_once_troll_spend_eur": 0, "approved_over_allowance": 0, "ran_out": None}
    table = render({"scenario": "launch", "seed": 1, "texts": 1000, "runs": [run]}, False)
    assert "10.50" in table and "3,629.60" in table
