"""The allowance (actors.pacing): a token bucket that funds a launch and keeps the number
alive until its end date, whatever the traffic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.pacing import (
    AllowanceState,
    allowance_check,
    allowance_credit,
    allowance_left,
    allowance_spend,
)

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_700_000_000_000
END = T0 + 365 * DAY
EUR = 1_000_000
COST = 160_000


def spend(state: AllowanceState, balance: int, now: int, reserve: int = 0, pct: int = 40) -> int:
    """Pay one reply if the allowance lets it through; the balance after."""
    if allowance_check(state, COST, balance, reserve, pct, now, END) is None:
        allowance_spend(state, COST, balance, reserve, pct, now, END)
        return balance - COST
    return balance


def test_a_launch_is_paid_from_the_full_bucket():
    # 2017: EUR 3,700 for a year; the launch asks for 4,000 replies (EUR 640) in two days.
    state, balance = AllowanceState(), 3_700 * EUR
    for i in range(4_000):
        balance = spend(state, balance, T0 + i * 40_000)
    assert balance == 3_700 * EUR - 4_000 * COST


def test_a_flood_takes_at_most_the_burst_then_the_refill():
    state, balance = AllowanceState(), 3_700 * EUR
    for i in range(50_000):  # a reply attempt every second for 14 hours
        balance = spend(state, balance, T0 + i * 1_000)
    spent = 3_700 * EUR - balance
    # 40 % of the spendable budget, plus about 14 hours of the year's locked 60 %.
    assert 1_480 * EUR <= spent <= 1_480 * EUR + 2_220 * EUR * 14 // (365 * 24) + COST


def test_the_bucket_refills_with_the_time_left():
    state, balance = AllowanceState(), 100 * EUR
    while allowance_check(state, COST, balance, 0, 40, T0, END) is None:
        balance = spend(state, balance, T0)
    assert allowance_check(state, COST, balance, 0, 40, T0, END) == "allowance"
    # A day later one day's share of the locked money is back: 60 EUR / 365 > one reply.
    assert allowance_left(state, balance, 0, 40, T0 + DAY, END) >= COST


def test_the_reserve_is_never_spent_and_comes_first():
    state = AllowanceState()
    assert allowance_check(state, COST, 10 * EUR, 10 * EUR, 40, T0, END) == "reserve_reached"
    assert allowance_check(state, COST, COST - 1, 0, 40, T0, END) == "budget_exhausted"


def test_a_credit_releases_its_burst_share_at_once():
    state, balance = AllowanceState(), 10 * EUR
    while allowance_check(state, COST, balance, 0, 40, T0, END) is None:
        balance = spend(state, balance, T0)
    allowance_credit(state, 100 * EUR, balance, 0, 40, T0, END)
    assert allowance_left(state, balance + 100 * EUR, 0, 40, T0, END) >= 40 * EUR


def test_time_never_moves_back():
    state, balance = AllowanceState(), 100 * EUR
    balance = spend(state, balance, T0 + DAY)
    left = allowance_left(state, balance, 0, 40, T0 + DAY, END)
    assert allowance_left(state, balance, 0, 40, T0, END) == left  # a late event refills nothing


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(1, 10_000 * EUR),
    reserve=st.integers(0, 100 * EUR),
    pct=st.integers(1, 100),
    steps=st.lists(st.tuples(st.integers(0, 3 * DAY), st.integers(1, 5 * EUR)), max_size=200),
)
def test_the_locked_money_falls_at_most_linearly_whatever_the_traffic(budget, reserve, pct, steps):
    """The guarantee of actors.pacing: locked(t) * (end - t0) >= locked(t0) * (end - t), and
    the balance never goes below reserve + locked(t) (the number is never dark)."""
    end = T0 + 30 * DAY
    state, balance, now = AllowanceState(), budget + reserve, T0
    allowance_check(state, 1, balance, reserve, pct, now, end)
    allowance_spend(state, 0, balance, reserve, pct, now, end)  # the bucket starts
    locked0 = balance - reserve - state.tokens
    for gap, cost in steps:
        now = min(end, now + gap)
        if allowance_check(state, cost, balance, reserve, pct, now, end) is None:
            allowance_spend(state, cost, balance, reserve, pct, now, end)
            balance -= cost
        assert balance >= reserve
        tokens = allowance_left(state, balance, reserve, pct, now, end)
        locked = balance - reserve - tokens
        assert locked * (end - T0) >= locked0 * (end - now)
        assert tokens <= (balance - reserve) * pct // 100 or tokens == 0
