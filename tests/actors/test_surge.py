"""Surge detection and the deferral queue, told as stories."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.campaign import observe_first_text, surge_transition
from actors.surge import (
    BASELINE_MINUTES,
    MINUTE_MS,
    DeferralQueue,
    Deferred,
    SurgeState,
    surge_now,
    surge_observe,
)
from schemas.policy import Policy

T0 = 1_483_228_800_000  # a minute boundary
MULTIPLE, MIN_RATE, QUIET = 5, 50, 10
POLICY = Policy(1, 80_000, surge_multiple=MULTIPLE, surge_min_rate=MIN_RATE,
                surge_quiet_minutes=QUIET, surge_expected_per_minute=0)


def minute_of_texts(state, minute, n, policy=POLICY):
    """``n`` first texts spread over one minute, counted and turned into transitions the way
    the campaign does (actors.campaign: the live rule); returns the transitions seen."""
    seen = []
    for i in range(n):
        now = T0 + minute * MINUTE_MS + i * MINUTE_MS // n
        observe_first_text(state, policy, now)
        t = surge_transition(state, policy)
        if t:
            seen.append(t)
            state.active = t == "enter"
    return seen


def surge_level(state, now, multiple, min_rate, expected=0):
    from actors.surge import surge_roll
    copy = SurgeState.from_dict(state.to_dict())
    surge_roll(copy, now)
    return surge_now(copy, multiple, min_rate, expected)


def calm_hour(state):
    for m in range(60):
        assert minute_of_texts(state, m, 10) == []


def test_a_steady_10_a_minute_is_no_surge_and_200_a_minute_enters_one():
    # given an hour at 10 first texts a minute
    state = SurgeState()
    calm_hour(state)
    assert not state.active
    # when a minute brings 200, then the surge is entered once, as it happens
    assert minute_of_texts(state, 60, 200) == ["enter"]
    assert state.active and surge_level(state, T0 + 60 * MINUTE_MS + 59_999, MULTIPLE, MIN_RATE)


def test_a_surge_is_left_only_after_enough_quiet_minutes():
    # given a surge entered at minute 60 and still 200 a minute for 3 hours
    state = SurgeState()
    calm_hour(state)
    transitions = []
    for m in range(60, 60 + 180):
        transitions += minute_of_texts(state, m, 200)
    # then a long flood does not become the baseline: still one "enter" and no "leave"
    assert transitions == ["enter"] and state.active
    # when traffic falls back to 10 a minute, then it leaves after QUIET full quiet minutes
    leave_at = None
    for m in range(240, 260):
        if minute_of_texts(state, m, 10) == ["leave"]:
            leave_at = m
            break
    assert leave_at == 240 + QUIET
    # and the pre-surge baseline is kept
    assert state.history == [10] * BASELINE_MINUTES


def test_a_busy_minute_below_the_minimum_rate_is_no_surge():
    # given a nearly silent hour (1 a minute), when 20 come in a minute, then no surge
    state = SurgeState()
    for m in range(60):
        minute_of_texts(state, m, 1)
    assert minute_of_texts(state, 60, 20) == []
    assert surge_level(state, T0 + 60 * MINUTE_MS, MULTIPLE, min_rate=20)


def test_with_no_history_and_no_prior_the_minimum_rate_decides():
    state = SurgeState()
    assert minute_of_texts(state, 0, MIN_RATE - 1) == []
    assert minute_of_texts(SurgeState(), 0, MIN_RATE) == ["enter"]


def test_a_fresh_campaign_compares_its_launch_with_the_prior_not_with_zero():
    # given a campaign expecting 20 first texts a minute and no history yet
    policy = Policy(1, 80_000, surge_multiple=5, surge_min_rate=10, surge_expected_per_minute=20)
    # when its launch brings 60 a minute, then that is no surge (3x the prior, not x-infinity)
    assert minute_of_texts(SurgeState(), 0, 60, policy) == []
    # but 120 a minute (6x the prior) is one
    assert minute_of_texts(SurgeState(), 0, 120, policy) == ["enter"]


def test_the_prior_gives_way_to_the_campaigns_own_history():
    # given an hour at 2 a minute, when 20 come in a minute, then it is a surge (10x), even
    # though the prior (20 a minute) alone would have called 20 normal
    policy = Policy(1, 80_000, surge_multiple=5, surge_min_rate=10, surge_expected_per_minute=20)
    state = SurgeState()
    for m in range(60):
        minute_of_texts(state, m, 2, policy)
    assert minute_of_texts(state, 60, 20, policy) == ["enter"]


def test_idle_minutes_count_as_zero_and_the_history_stays_bounded():
    state = SurgeState()
    minute_of_texts(state, 0, 10)
    surge_observe(state, T0 + 5 * MINUTE_MS)
    assert state.history == [10, 0, 0, 0, 0]
    surge_observe(state, T0 + 1000 * MINUTE_MS)
    assert state.history == [0] * BASELINE_MINUTES


def test_surge_level_only_reads_and_a_late_text_counts_in_the_current_minute():
    state = SurgeState()
    minute_of_texts(state, 3, 7)
    before = state.to_dict()
    surge_level(state, T0 + 9 * MINUTE_MS, MULTIPLE, MIN_RATE)
    assert state.to_dict() == before
    surge_observe(state, T0)  # from minute 0, after minute 3
    assert (state.minute, state.count) == (T0 // MINUTE_MS + 3, 8)


def test_surge_state_survives_a_round_trip_through_a_dict():
    state = SurgeState()
    calm_hour(state)
    minute_of_texts(state, 60, 200)
    assert SurgeState.from_dict(state.to_dict()) == state


def item(mid, texts=1, at=T0):
    return Deferred(mid, texts, at)


def test_the_queue_serves_the_smallest_priority_key_first_then_oldest_then_message_id():
    q = DeferralQueue(capacity=10)
    for d in [item("m4", 3, T0), item("m3", 1, T0 + 5), item("m2", 1, T0), item("m1", 1, T0)]:
        assert q.push(d) is None
    assert [i.message_id for i in q.items] == ["m1", "m2", "m3", "m4"]
    assert q.remove("m2") == item("m2", 1, T0) and q.remove("m2") is None
    assert [i.message_id for i in q.items] == ["m1", "m3", "m4"]


def test_a_full_queue_evicts_its_lowest_priority_item_and_says_which():
    # given a full queue of first-time senders
    q = DeferralQueue(capacity=2)
    q.push(item("a", 1, T0))
    q.push(item("b", 1, T0 + 1))
    # when a repeat sender's reply is pushed, then it is the one evicted
    assert q.push(item("pest", 7, T0 + 2)) == item("pest", 7, T0 + 2)
    # when an older first-time sender's is pushed, then the youngest queued one is evicted
    assert q.push(item("c", 1, T0 - 1)) == item("b", 1, T0 + 1)
    assert [i.message_id for i in q.items] == ["c", "a"]


def test_a_redelivered_message_is_queued_once():
    q = DeferralQueue(capacity=3)
    q.push(item("a"))
    assert q.push(item("a")) is None and len(q) == 1


def test_queue_survives_a_round_trip_through_a_dict_and_rejects_no_capacity():
    q = DeferralQueue(capacity=3)
    q.push(item("b", 2))
    q.push(item("a", 1))
    again = DeferralQueue.from_dict(q.to_dict())
    assert again == q and again.push(item("a")) is None
    with pytest.raises(ValueError):
        DeferralQueue(capacity=0)


def rank(d):
    return d.priority_key, d.enqueued_at, d.message_id


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 30), st.integers(1, 5), st.integers(0, 20)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 8), script=ops)
def test_queue_never_exceeds_its_bound_and_keeps_priority_order(capacity, script):
    q, model = DeferralQueue(capacity), []
    for op in script:
        if op[0] == "push":
            d = Deferred(f"m{op[1]}", op[2], op[3])
            if all(m.message_id != d.message_id for m in model):
                model = sorted(model + [d], key=rank)
                expected_evicted = model.pop() if len(model) > capacity else None
            else:
                expected_evicted = None
            assert q.push(d) == expected_evicted
        else:
            mid = f"m{op[1]}"
            gone = next((m for m in model if m.message_id == mid), None)
            model = [m for m in model if m.message_id != mid]
            assert q.remove(mid) == gone
        assert len(q) <= capacity
        assert q.items == model
