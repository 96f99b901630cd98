"""A reserve forced above the balance while requests wait (`policy set reserve_eur=... --force`)
expires nothing: the queue waits for the money, and is paid when the reserve is lowered
again. Only what is still waiting at its TTL expires (`budget_exhausted`, the money could
not pay it then), as it would have without the change: a pest is not made to wait longer than
the TTL, and he is answered on a later text (screening reopens him)."""

from __future__ import annotations

from actors.campaign import CampaignState, decide_and_apply, decide_control, evolve_campaign
from schemas.commands import ChangePolicy, RequestReply, Tick
from tests.factories import campaign

MINUTE = 60_000
T = 10 * MINUTE


def _request(i: int, at: int) -> RequestReply:
    return RequestReply(message_id=f"m{i}", campaign_id="paris", sender=f"s_{i}", occurred_at=at,
                        reply_to="sealed", prefix=f"33-6{i:02d}")


def _control(state, changes, at, n):
    (event,) = decide_control(state, ChangePolicy(command_id=f"c{n}", campaign_id="paris",
                                                  changes=changes, operator="alice",
                                                  occurred_at=at))
    assert event.TYPE == "PolicyChanged"
    evolve_campaign(state, event)


def _tick(state, c, at):
    return decide_and_apply(state, Tick(campaign_id="paris", occurred_at=at), c)


def test_a_reserve_forced_above_the_balance_expires_no_waiting_request():
    c = campaign(policy=(("reply_delay_ms", 30 * MINUTE), ("surge_multiple", 0)), pacing=False)
    state = CampaignState.opening(c)
    for i in range(5):  # five pests, each held for the 30-minute safety delay
        (deferred,) = decide_and_apply(state, _request(i, T + i * MINUTE), c)
        assert deferred.TYPE == "ReplyDeferred"
    # The operator forces a reserve above the balance (EUR 10): no reply can be paid.
    _control(state, {"reserve_micros": 5_000_000_000}, T + 10 * MINUTE, 1)
    # Their delays end: nothing is paid, nothing expires; they wait.
    assert _tick(state, c, T + 45 * MINUTE) == []
    assert len(state.queue) == 5
    # The reserve is lowered again within the TTL: every one of them is paid.
    _control(state, {"reserve_micros": 0}, T + 60 * MINUTE, 2)
    released = _tick(state, c, T + 61 * MINUTE)
    assert [e.TYPE for e in released] == ["ReplyApproved"] * 5
    assert len(state.queue) == 0


def test_what_the_forced_reserve_still_blocks_at_the_ttl_expires_as_budget_exhausted():
    c = campaign(policy=(("reply_delay_ms", 30 * MINUTE), ("surge_multiple", 0)), pacing=False)
    state = CampaignState.opening(c)
    decide_and_apply(state, _request(1, T), c)
    _control(state, {"reserve_micros": 5_000_000_000}, T + MINUTE, 1)
    assert _tick(state, c, T + 5 * 60 * MINUTE) == []  # within the TTL (6 h): waits
    (expired,) = _tick(state, c, T + 6 * 60 * MINUTE + MINUTE)
    assert (expired.TYPE, expired.reason) == ("ReplyExpired", "budget_exhausted")
