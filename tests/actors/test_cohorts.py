"""The cohorts: first texts a minute, the baseline with its prior, spikes and surges."""

from actors.evidence import (
    BASELINE_MINUTES,
    MINUTE_MS,
    Cohorts,
    baseline_sum,
    cohort_of,
    is_spike,
    observe,
    roll,
    surge_transition,
)
from schemas.policy import Policy

T0 = 1_483_228_800_000  # a minute boundary
MULTIPLE, MIN_RATE, QUIET = 5, 50, 10
POLICY = Policy(version=1, price_per_segment_micros=80_000, surge_multiple=MULTIPLE,
                surge_min_rate=MIN_RATE, surge_quiet_minutes=QUIET, surge_expected_per_minute=0)


def minute_of_texts(c, minute, n, policy=POLICY, marked=False):
    """``n`` first texts spread over one minute, counted and turned into transitions the way
    the campaign does (decide on the counted state, evolve applies); the transitions seen."""
    seen = []
    for i in range(n):
        observe(c, T0 + minute * MINUTE_MS + i * MINUTE_MS // n, policy, marked)
        t = surge_transition(c, policy)
        if t:
            seen.append(t)
            c.active = t == "enter"
    return seen


def calm_hour(c):
    for m in range(60):
        assert minute_of_texts(c, m, 10) == []


def test_a_steady_10_a_minute_is_no_surge_and_200_a_minute_enters_one():
    c = Cohorts()
    calm_hour(c)
    assert not c.active
    assert minute_of_texts(c, 60, 200) == ["enter"]
    assert c.active and is_spike(c.count, baseline_sum(c.history, 0), POLICY)


def test_a_raid_never_becomes_its_own_baseline_but_people_do_within_their_hour():
    # Given a calm hour, a flood of 200 a minute whose texts carry a raid's words
    raid = Cohorts()
    calm_hour(raid)
    seen = []
    for m in range(60, 240):
        seen += minute_of_texts(raid, m, 200, marked=True)
    # stays a surge for three hours: its texts are left out of the baseline,
    assert seen == ["enter"] and raid.active and raid.history == [10] * BASELINE_MINUTES
    # while a launch of people at 200 a minute becomes the campaign's normal within the hour
    launch = Cohorts()
    calm_hour(launch)
    seen = []
    for m in range(60, 240):
        seen += minute_of_texts(launch, m, 200)
    assert seen == ["enter", "leave"] and not launch.active
    # and after the raid, ordinary traffic leaves the surge after QUIET quiet minutes.
    leave_at = next(m for m in range(240, 260) if minute_of_texts(raid, m, 10) == ["leave"])
    assert leave_at == 240 + QUIET


def test_ordinary_traffic_after_a_launch_starts_no_second_surge():
    # The launch's people are in the baseline: 10 a minute after 200 a minute is calm.
    c = Cohorts()
    calm_hour(c)
    for m in range(60, 90):
        minute_of_texts(c, m, 200)
    assert all(minute_of_texts(c, m, 10) in ([], ["leave"]) for m in range(90, 200))
    assert not c.active


def test_a_busy_minute_below_the_minimum_rate_is_no_surge():
    c = Cohorts()
    for m in range(60):
        minute_of_texts(c, m, 1)
    assert minute_of_texts(c, 60, 20) == []


def test_a_fresh_campaign_compares_its_launch_with_the_prior_not_with_zero():
    policy = Policy(version=1, price_per_segment_micros=80_000, surge_multiple=5, surge_min_rate=10,
                    surge_expected_per_minute=20)
    assert minute_of_texts(Cohorts(), 0, 60, policy) == []  # 3x the prior
    assert minute_of_texts(Cohorts(), 0, 120, policy) == ["enter"]  # 6x


def test_each_minute_keeps_its_count_and_the_baseline_before_it():
    c = Cohorts()
    calm_hour(c)
    minute_of_texts(c, 60, 200)
    roll(c, T0 + 61 * MINUTE_MS, POLICY)
    assert cohort_of(c, T0 // MINUTE_MS + 60, 0) == (200, 600)
    assert cohort_of(c, T0 // MINUTE_MS + 59, 0) == (10, 590)  # its hour: 59 minutes of 10
    assert cohort_of(c, T0 // MINUTE_MS - 5, 0) == (0, 0)  # no text then


def test_idle_minutes_count_as_zero_and_a_late_text_counts_in_the_current_minute():
    c = Cohorts()
    minute_of_texts(c, 0, 10)
    observe(c, T0 + 5 * MINUTE_MS, POLICY, False)
    assert c.history == [10, 0, 0, 0, 0]
    observe(c, T0, POLICY, False)  # from minute 0, after minute 5
    assert (c.minute, c.count) == (T0 // MINUTE_MS + 5, 2)
    observe(c, T0 + 1000 * MINUTE_MS, POLICY, False)
    assert c.history == [0] * BASELINE_MINUTES


def test_cohorts_survive_a_round_trip_through_a_dict_and_a_copy_changes_nothing():
    c = Cohorts()
    calm_hour(c)
    minute_of_texts(c, 60, 200)
    assert Cohorts.from_dict(c.to_dict()) == c
    copy = c.copy()
    observe(copy, T0 + 70 * MINUTE_MS, POLICY, False)
    assert copy.minute != c.minute and c == Cohorts.from_dict(c.to_dict())
