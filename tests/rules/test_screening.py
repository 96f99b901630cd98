"""Per-sender screening, told as stories: given a sender's past, when a text, then a verdict."""

import pytest

from schemas.commands import ScreenText
from schemas.policy import Policy
from streams.rules.screening import RECENT_IDS, SenderState, decide_screening, evolve_sender

DAY = 86_400_000
MIN = 60_000
POLICY = Policy(version=1, price_per_segment_micros=80_000, allowed_countries=("FR",))


def text(mid, at=0, campaign="paris", sender="s_a", body="salut", kind="mobile", country="FR",
         prefix="33-612"):
    return ScreenText(message_id=mid, campaign_id=campaign, sender=sender, body=body, occurred_at=at,
                      reply_to="sealed", number_kind=kind, country=country, prefix=prefix)


def screen(state, command, policy=POLICY, **changes):
    policy = Policy(**{**policy.to_dict(), **changes}) if changes else policy
    events = decide_screening(state, command, policy)
    for e in events:
        evolve_sender(state, e, policy)
    return events[0]


def test_first_text_is_forwarded_under_the_recorded_policy_version():
    verdict = screen(SenderState(), text("m1"), version=3)
    assert (verdict.verdict, verdict.reason, verdict.texts_from_sender) == ("forward", None, 1)
    assert verdict.policy_version == 3


def test_second_text_from_same_sender_is_suppressed_as_already_answered():
    state = SenderState()
    screen(state, text("m1"))
    verdict = screen(state, text("m2", at=1000))
    assert (verdict.verdict, verdict.reason, verdict.texts_from_sender) == (
        "suppress", "already_answered", 2)


def test_a_text_seen_before_gets_its_earlier_verdict_again_and_is_not_counted():
    # A retried webhook, or a text given again to a worker after a crash: the same verdict,
    # field for field, so a verdict lost in the crash is journaled after all.
    state = SenderState()
    first = screen(state, text("m1", at=5))
    before = SenderState.from_dict(state.to_dict())
    again = screen(state, text("m1", at=9), version=7)  # the copy's time, a newer policy
    assert again == first and again.verdict == "forward"
    assert state == before and state.texts == 1


def test_a_suppressed_text_seen_before_is_suppressed_again_for_the_same_reason():
    state = SenderState()
    screen(state, text("m1"))
    second = screen(state, text("m2", at=MIN))
    assert screen(state, text("m2", at=MIN)) == second
    assert (second.reason, state.texts) == ("already_answered", 2)


def test_an_id_remembered_by_an_older_state_without_its_verdict_is_a_duplicate():
    # Changelogs written before verdicts were kept hold ids only.
    old = {"texts": 1, "recent_ids": ["m1"], "forwarded_at": {"paris": 0}, "tat": 0,
           "flooder": False}
    state = SenderState.from_dict(old)
    verdict = screen(state, text("m1"))
    assert (verdict.verdict, verdict.reason, verdict.texts_from_sender) == (
        "suppress", "duplicate", 1)
    assert screen(state, text("m2", at=MIN)).texts_from_sender == 2


def test_an_answer_from_one_campaign_does_not_block_another_campaign():
    state = SenderState()
    screen(state, text("m1", campaign="paris"))
    assert screen(state, text("m2", campaign="lyon", at=MIN)).verdict == "forward"


def test_cooldown_allows_a_new_reply_after_the_period_only():
    state = SenderState()
    screen(state, text("m1", at=0), cooldown_ms=30 * DAY)
    assert screen(state, text("m2", at=29 * DAY), cooldown_ms=30 * DAY).reason == "already_answered"
    assert screen(state, text("m3", at=30 * DAY), cooldown_ms=30 * DAY).verdict == "forward"


def test_a_sender_over_the_rate_is_flagged_a_flooder_and_never_answered_again():
    # Given a burst of 5 per 10 minutes, the 6th text within a minute flags him.
    state = SenderState()
    verdicts = [screen(state, text(f"m{i}", at=i * 1000, campaign=f"c{i}")) for i in range(6)]
    assert [v.reason for v in verdicts[:5]] == [None] * 5
    assert verdicts[5].reason == "flooder" and state.flooder
    # A day later, quiet, to a campaign that never answered him: still a flooder.
    assert screen(state, text("m9", at=DAY, campaign="new")).reason == "flooder"


def test_the_rate_is_measured_on_event_time_so_a_slow_pest_is_no_flooder():
    state = SenderState()
    verdicts = [screen(state, text(f"m{i}", at=i * 11 * MIN)) for i in range(20)]
    assert "flooder" not in {v.reason for v in verdicts}


@pytest.mark.parametrize("kind, country, prefix, reason", [
    ("invalid", None, "invalid", "invalid_number"),
    ("premium_rate", "FR", "33-899", "not_mobile"),
    ("short_code", None, "sc-361", "not_mobile"),
    ("fixed_line", "FR", "33-144", "not_mobile"),
    ("mobile", "BE", "32-470", "country_not_allowed"),
])
def test_numbers_that_may_not_be_answered_are_suppressed(kind, country, prefix, reason):
    verdict = screen(SenderState(), text("m1", kind=kind, country=country, prefix=prefix))
    assert (verdict.verdict, verdict.reason) == ("suppress", reason)


def test_allowed_countries_and_blocked_prefixes_are_policy():
    belgian = text("m1", country="BE", prefix="32-470")
    assert screen(SenderState(), belgian, allowed_countries=("FR", "BE")).verdict == "forward"
    rotating = text("m2", prefix="33-756")
    assert screen(SenderState(), rotating, blocked_prefixes=("33-756",)).reason == "blocked_prefix"


def test_numbers_of_version_1_events_are_not_judged():
    assert screen(SenderState(), text("m1", kind="unknown", country=None)).verdict == "forward"


def test_a_curious_tester_is_not_answered_unless_the_filter_is_off():
    assert screen(SenderState(), text("m1", body="C'est vrai ce numéro ?")).reason == "test_text"
    assert screen(SenderState(), text("m1", body="test"), filter_test_texts=False).verdict == "forward"
    assert screen(SenderState(), text("m1", body="t'es mignonne, on teste un verre ?")).verdict == "forward"


def test_duplicate_memory_is_bounded():
    state = SenderState()
    for i in range(RECENT_IDS * 3):
        screen(state, text(f"m{i}", at=i * 11 * MIN))
    assert list(state.recent) == [f"m{i}" for i in range(RECENT_IDS * 2, RECENT_IDS * 3)]
    assert state.texts == RECENT_IDS * 3
    # An id forgotten is a new text again (MessageBird retries within minutes, not 16 texts).
    assert screen(state, text("m0", at=RECENT_IDS * 3 * 11 * MIN)).texts_from_sender == (
        RECENT_IDS * 3 + 1)


def test_state_round_trips_through_its_dict_form():
    state = SenderState()
    for i in range(7):
        screen(state, text(f"m{i}", at=i))
    assert state.flooder
    assert SenderState.from_dict(state.to_dict()) == state
