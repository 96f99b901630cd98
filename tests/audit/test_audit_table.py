"""The audit's table adds up: each day's texts are its replies, its suppressions (screening
and denial reasons, each expiry by its reason) and what is still queued, all counted on the
day the texts came; the money on the day it moved."""

from __future__ import annotations

from schemas.commands import ChangePolicy, Tick
from streams.audit import audit, render_text, to_json, what_if
from tests.factories import DAY, HOUR, T0, journal_of
from tests.factories import story_campaign as campaign

MINUTE = 60_000


def test_each_day_adds_up_with_the_safety_delay_expiries_by_reason_and_a_queue():
    # A campaign that holds each request 30 minutes (the default safety delay), paid from
    # EUR 1 (ten replies of EUR 0.10), no surge.
    c = campaign(budget=1_000_000)
    c = type(c)(**{**{f: getattr(c, f) for f in c.__slots__},
                   "policy": (("reply_delay_ms", 30 * MINUTE), ("surge_multiple", 0))})
    late = T0 + 23 * HOUR + 50 * MINUTE  # its delay ends on day 2: paid on day 2
    steps = [
        ("m1", "paris", "s_a", T0 + 9 * HOUR, "33-611"),
        ("m2", "paris", "s_a", T0 + 9 * HOUR + MINUTE, "33-611"),  # already answered (awaiting)
        Tick(campaign_id="paris", occurred_at=T0 + 10 * HOUR),  # m1 paid
        ("m3", "paris", "s_b", late, "33-612"),
        Tick(campaign_id="paris", occurred_at=T0 + DAY + HOUR),  # m3 paid, on day 2
        # Day 2: a reserve forced above the balance; m4 waits, and expires at its TTL.
        ("m4", "paris", "s_c", T0 + DAY + 2 * HOUR - MINUTE, "33-613"),
        ChangePolicy(command_id="c1", campaign_id="paris", changes={"reserve_micros": 10**9},
                     operator="alice", occurred_at=T0 + DAY + 2 * HOUR),
        Tick(campaign_id="paris", occurred_at=T0 + DAY + 9 * HOUR),  # past m4's TTL
        ("m5", "paris", "s_d", T0 + DAY + 10 * HOUR, "33-614"),  # refused: reserve_reached
        ChangePolicy(command_id="c2", campaign_id="paris", changes={"reserve_micros": 0},
                     operator="alice", occurred_at=T0 + DAY + 11 * HOUR),
        ("m6", "paris", "s_e", T0 + DAY + 12 * HOUR, "33-615"),  # still waiting at the end
    ]
    journal = journal_of(steps, [c], batch=1)
    result = audit(journal, [c])
    assert result.ok, result.mismatches[:1]
    paris = to_json(result)["campaigns"]["paris"]
    days = {d["day"]: d for d in paris["days"]}
    day1, day2 = days["2017-10-16"], days["2017-10-17"]
    assert (day1["texts_in"], day1["replies_approved"], day1["queued"]) == (3, 2, 0)
    assert day1["suppressed"] == {"already_answered": 1}
    assert day1["spent_micros"] == 100_000 and day2["spent_micros"] == 100_000  # m3 paid on day 2
    assert (day2["texts_in"], day2["replies_approved"], day2["queued"]) == (3, 0, 1)
    assert day2["suppressed"] == {"reserve_reached": 1, "expired:budget_exhausted": 1}
    for day in paris["days"]:
        assert day["texts_in"] == (day["replies_approved"] + sum(day["suppressed"].values())
                                   + day["queued"]), day
    table = render_text(result)
    header = next(line for line in table.splitlines() if line.strip().startswith("day"))
    assert header.split()[:7] == ["day", "texts", "replies", "already_answered",
                                  "reserve_reached", "expired:budget_exhausted", "queued"]
    # The what-if's rows add up the same way (the texts decided afresh, ticks included).
    for run in ("baseline", "what_if"):
        for day in to_json(what_if(journal, [c], [c]))[run]["paris"]["days"]:
            assert day["texts_in"] == (day["replies_approved"] + sum(day["suppressed"].values())
                                       + day["queued"]), (run, day)
