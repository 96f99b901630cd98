"""GCRA rate limiting on event time, told as stories."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.gcra import Gcra, gcra_apply, gcra_check

MINUTE = 60_000
T0 = 1_700_000_000_000  # some epoch ms


def run(state, times, period_ms, burst):
    allowed = []
    for now in times:
        ok, tat = gcra_check(state, now, period_ms, burst)
        if ok:
            gcra_apply(state, tat)
            allowed.append(now)
    return allowed


def test_a_burst_passes_at_once_then_one_per_period():
    # given a fresh limiter of 3 at once then 1 a minute
    # when 5 events arrive together, then one at each later minute
    allowed = run(Gcra(), [T0] * 5 + [T0 + k * MINUTE for k in (1, 2, 3)], MINUTE, 3)
    # then 3 pass at once, the fourth and fifth wait, and each later minute lets one through
    assert allowed == [T0] * 3 + [T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]


def test_a_refused_check_leaves_the_state_unchanged_and_check_never_mutates():
    state = Gcra()
    run(state, [T0, T0], MINUTE, 2)
    before = state.tat
    ok, tat = gcra_check(state, T0, MINUTE, 2)
    assert (ok, tat, state.tat) == (False, before, before)
    ok, tat = gcra_check(state, T0 + 10 * MINUTE, MINUTE, 2)
    assert ok and state.tat == before  # check alone records nothing


def test_idle_time_restores_the_full_burst():
    # given a limiter whose burst is used up
    state = Gcra()
    assert len(run(state, [T0] * 10, MINUTE, 3)) == 3
    # when it stays idle for burst x period, then the whole burst is available again
    assert len(run(state, [T0 + 3 * MINUTE] * 10, MINUTE, 3)) == 3


def test_a_flood_of_1000_events_in_one_second_lets_exactly_the_burst_through():
    # given period 60 s and burst 3, when 1000 events arrive within one second
    times = [T0 + i for i in range(1000)]
    # then exactly 3 pass
    assert len(run(Gcra(), times, MINUTE, 3)) == 3


def test_out_of_order_events_do_not_crash_and_do_not_exceed_the_limit():
    # given an event far in the future has used the burst
    state = Gcra()
    run(state, [T0 + 10 * MINUTE] * 2, MINUTE, 2)
    # when late events arrive with earlier times, then none passes
    assert run(state, [T0, T0 + MINUTE, T0 - MINUTE], MINUTE, 2) == []


def test_state_survives_a_round_trip_through_a_dict():
    state = Gcra()
    run(state, [T0, T0], MINUTE, 3)
    assert Gcra.from_dict(state.to_dict()) == state
    assert state.to_dict() == {"tat": T0 + 2 * MINUTE}


def test_nonsense_parameters_are_refused():
    with pytest.raises(ValueError):
        gcra_check(Gcra(), T0, 0, 3)
    with pytest.raises(ValueError):
        gcra_check(Gcra(), T0, MINUTE, 0)


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=20 * MINUTE), max_size=150),
    period_ms=st.integers(min_value=1, max_value=5 * MINUTE),
    burst=st.integers(min_value=1, max_value=6),
)
def test_no_window_ever_allows_more_than_burst_plus_its_length_over_period(offsets, period_ms, burst):
    # given events in any order (out-of-order included)
    allowed = sorted(run(Gcra(), [T0 + o for o in offsets], period_ms, burst))
    # then every window [allowed[i], allowed[j]] of length W holds <= burst + W // period allowed
    for i in range(len(allowed)):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + (allowed[j] - allowed[i]) // period_ms
