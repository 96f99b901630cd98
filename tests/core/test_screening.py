"""Per-sender screening, told as stories: given a sender's past, when a text, then a verdict."""

from schemas.commands import ScreenText
from streams.screening import RECENT_IDS, SenderState, decide_screening, evolve_sender

DAY = 86_400_000


def text(mid, at=0, campaign="paris", sender="s_a"):
    return ScreenText(mid, campaign, sender, "salut", at, reply_to="sealed")


def screen(state, command, cooldown=None):
    events = decide_screening(state, command, cooldown)
    for e in events:
        evolve_sender(state, e)
    return events[0]


def test_first_text_is_forwarded():
    verdict = screen(SenderState(), text("m1"))
    assert (verdict.verdict, verdict.reason, verdict.texts_from_sender) == ("forward", None, 1)


def test_second_text_from_same_sender_is_suppressed_as_already_answered():
    state = SenderState()
    screen(state, text("m1"))
    verdict = screen(state, text("m2", at=1000))
    assert (verdict.verdict, verdict.reason, verdict.texts_from_sender) == (
        "suppress", "already_answered", 2)


def test_repeated_provider_message_id_is_a_duplicate_and_not_counted():
    state = SenderState()
    screen(state, text("m1"))
    verdict = screen(state, text("m1"))
    assert (verdict.verdict, verdict.reason) == ("suppress", "duplicate")
    assert state.texts == 1


def test_an_answer_from_one_campaign_does_not_block_another_campaign():
    state = SenderState()
    screen(state, text("m1", campaign="paris"))
    assert screen(state, text("m2", campaign="lyon")).verdict == "forward"


def test_cooldown_allows_a_new_reply_after_the_period_only():
    state = SenderState()
    screen(state, text("m1", at=0), cooldown=30 * DAY)
    assert screen(state, text("m2", at=29 * DAY), cooldown=30 * DAY).reason == "already_answered"
    assert screen(state, text("m3", at=30 * DAY), cooldown=30 * DAY).verdict == "forward"


def test_duplicate_memory_is_bounded():
    state = SenderState()
    for i in range(RECENT_IDS * 3):
        screen(state, text(f"m{i}", at=i))
    assert len(state.recent_ids) == RECENT_IDS
    assert state.texts == RECENT_IDS * 3


def test_state_round_trips_through_its_dict_form():
    state = SenderState()
    screen(state, text("m1", at=5))
    assert SenderState.from_dict(state.to_dict()) == state
