"""Budget pacing, told as short stories from the 2017 campaign."""

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.pacing import (
    DAY_MS,
    HOUR_MS,
    PacingState,
    daily_allowance,
    hourly_allowance,
    pacing_apply,
    pacing_check,
    remaining_days,
)

START = 1_483_228_800_000  # 2017-01-01T00:00Z
YEAR_END = START + 365 * DAY_MS
BUDGET = 3_700_000_000  # EUR 3,700 from 320 donors
REPLY = 160_000  # EUR 0.16: two SMS segments


class Wallet:
    """The campaign's balance and pacing, as the decision core would keep them."""

    def __init__(self, balance=BUDGET, reserve=0, ends_at=YEAR_END):
        self.balance, self.reserve, self.ends_at = balance, reserve, ends_at
        self.pacing = PacingState()

    def request(self, now, cost=REPLY):
        reason = pacing_check(self.pacing, cost, self.balance, self.reserve, now, self.ends_at)
        if reason is None:
            pacing_apply(self.pacing, cost, now)
            self.balance -= cost
        return reason


def test_a_year_of_3700_eur_allows_about_10_eur_a_day_or_63_replies():
    # given EUR 3,700 for 365 days, then a day's allowance is ~EUR 10.14
    daily = daily_allowance(BUDGET, 0, 0, START, YEAR_END)
    assert daily == BUDGET // 365 == 10_136_986
    # when a busy first day brings a steady stream of curious people (one every 5 minutes)
    wallet = Wallet()
    reasons = [wallet.request(START + i * 300_000) for i in range(288)]
    # then 63 replies go out that day, the others wait for their share
    assert reasons.count(None) == 63
    assert set(reasons) == {None, "daily_allowance", "hourly_allowance"}


def test_a_troll_flood_of_20000_texts_in_4_hours_spends_at_most_that_days_allowance():
    # given a fresh campaign year; when 20,000 texts arrive between 20:00 and midnight
    wallet = Wallet()
    flood_start = START + 20 * HOUR_MS
    daily = daily_allowance(BUDGET, 0, 0, flood_start, YEAR_END)
    approved_by_hour = {}
    for i in range(20_000):
        now = flood_start + i * (4 * HOUR_MS) // 20_000
        if wallet.request(now) is None:
            approved_by_hour[now // HOUR_MS] = approved_by_hour.get(now // HOUR_MS, 0) + REPLY
    spent = BUDGET - wallet.balance
    # then the flood costs no more than the day's share, and no hour more than its burst
    assert 0 < spent <= daily
    assert all(v <= hourly_allowance(daily) for v in approved_by_hour.values())
    # and the next day the number still answers
    assert wallet.request(START + DAY_MS) is None


def test_a_quiet_day_raises_tomorrows_allowance():
    # given two campaigns: one spends its first day's share, the other has a quiet day
    busy, quiet = Wallet(), Wallet()
    for i in range(24 * 12):
        busy.request(START + i * 300_000)
    # when the second day starts, then the quiet one may spend more than its first day's share
    day2 = START + DAY_MS
    first_share = daily_allowance(BUDGET, 0, 0, START, YEAR_END)
    quiet_share = daily_allowance(quiet.balance, 0, 0, day2, YEAR_END)
    busy_share = daily_allowance(busy.balance, 0, 0, day2, YEAR_END)
    assert quiet_share > first_share and quiet_share > busy_share
    assert quiet_share - busy_share >= 63 * REPLY // 364  # the busy day's spend, spread over the rest


def test_the_reserve_is_never_spent():
    # given EUR 10 left above a EUR 3,690 reserve on the last day of the campaign
    wallet = Wallet(reserve=3_690_000_000, ends_at=START + DAY_MS)
    # when people text all day, then replies stop before the reserve is touched
    reasons = [wallet.request(START + i * 60_000) for i in range(24 * 60)]
    assert wallet.balance >= wallet.reserve
    assert reasons.count(None) == 10_000_000 // REPLY
    assert wallet.request(START + DAY_MS - 1) == "reserve_reached"


def test_an_empty_balance_says_budget_exhausted():
    assert Wallet(balance=REPLY - 1).request(START) == "budget_exhausted"


def test_a_small_last_day_budget_is_not_stranded_by_the_hourly_rounding():
    # given EUR 1 left on the campaign's last day: its hourly share (2/24) is below one reply
    wallet = Wallet(balance=1_000_000, ends_at=START + DAY_MS)
    assert hourly_allowance(daily_allowance(1_000_000, 0, 0, START, START + DAY_MS)) < REPLY
    # when one text comes each hour, then each hour still answers one until the money is gone
    reasons = [wallet.request(START + h * HOUR_MS) for h in range(24)]
    assert reasons.count(None) == 1_000_000 // REPLY


def test_remaining_days_counts_the_current_day_and_is_at_least_one():
    assert remaining_days(START, YEAR_END) == 365
    assert remaining_days(START + DAY_MS - 1, YEAR_END) == 365  # still day one, whatever the hour
    assert remaining_days(YEAR_END - 1, YEAR_END) == 1
    assert remaining_days(YEAR_END + 5 * DAY_MS, YEAR_END) == 1
    assert remaining_days(START, YEAR_END + 1) == 366  # a partial last day counts


def test_a_late_event_does_not_reopen_a_past_day():
    # given the day after has started spending
    wallet = Wallet()
    wallet.request(START + DAY_MS + 5)
    # when an event from the day before arrives late, then it counts against the current day
    wallet.request(START + 5)
    assert (wallet.pacing.day, wallet.pacing.spent_in_day) == (START // DAY_MS + 1, 2 * REPLY)


def test_state_survives_a_round_trip_through_a_dict():
    wallet = Wallet()
    wallet.request(START)
    data = wallet.pacing.to_dict()
    assert PacingState.from_dict(data) == wallet.pacing
    assert all(isinstance(v, int) for v in data.values())


@settings(max_examples=200, deadline=None)
@given(
    balance=st.integers(min_value=0, max_value=50_000_000),
    reserve=st.integers(min_value=0, max_value=20_000_000),
    days=st.integers(min_value=1, max_value=10),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3 * HOUR_MS),
                  st.integers(min_value=1, max_value=500_000)),
        max_size=200,
    ),
)
def test_approved_spend_respects_reserve_and_each_days_allowance(balance, reserve, days, steps):
    # given any budget, reserve and campaign length; when requests come in time order
    wallet = Wallet(balance=balance, reserve=reserve, ends_at=START + days * DAY_MS)
    now, spent_by_day, share_by_day = START, {}, {}
    for gap, cost in steps:
        now += gap
        day = now // DAY_MS
        if day not in share_by_day:  # the allowance as computed at the day's first request
            share_by_day[day] = daily_allowance(wallet.balance, reserve, 0, now, wallet.ends_at)
        if wallet.request(now, cost) is None:
            spent_by_day[day] = spent_by_day.get(day, 0) + cost
    # then total spend never reaches into the reserve, and no day overspends its share
    assert sum(spent_by_day.values()) <= max(0, balance - reserve)
    assert all(spent <= share_by_day[day] for day, spent in spent_by_day.items())
