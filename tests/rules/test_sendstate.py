"""The send stage's at-most-once rule and the refund rule of delivery reports, without a
broker (the shell, streams/stages/send.py, is covered end to end by tests/e2e)."""

import pytest

from streams.rules.sendstate import (
    ATTEMPTING,
    DROP,
    FAILED,
    MARK_OF_STEP,
    MARK_UNCERTAIN,
    SEND,
    SENT,
    SETTLE_AGAIN,
    SKIP,
    UNCERTAIN,
    next_step,
    price_settles,
)


def test_the_first_copy_of_a_reply_is_sent_and_marked_attempting_before_the_call():
    assert next_step(None, in_flight=False) == SEND
    assert MARK_OF_STEP[SEND] == ATTEMPTING


def test_a_copy_of_a_reply_this_worker_is_sending_is_dropped_and_changes_nothing():
    assert next_step(ATTEMPTING, in_flight=True) == DROP
    assert MARK_OF_STEP[DROP] is None


def test_a_reply_found_attempting_after_a_crash_is_marked_uncertain_never_sent_again():
    # The worker stopped mid-call: the SMS may or may not have left.
    assert next_step(ATTEMPTING, in_flight=False) == MARK_UNCERTAIN
    assert MARK_OF_STEP[MARK_UNCERTAIN] == UNCERTAIN


def test_a_failed_reply_seen_again_asks_for_its_refund_again_without_sending():
    assert next_step(FAILED, in_flight=False) == SETTLE_AGAIN
    assert MARK_OF_STEP[SETTLE_AGAIN] is None


@pytest.mark.parametrize("where", [SENT, UNCERTAIN])
def test_a_sent_or_uncertain_reply_is_not_sent_again(where):
    assert next_step(where, in_flight=False) == SKIP
    assert MARK_OF_STEP[SKIP] is None


@pytest.mark.parametrize("where", [ATTEMPTING, SENT, FAILED, UNCERTAIN])
@pytest.mark.parametrize("in_flight", [False, True])
def test_only_a_reply_never_seen_is_sent(where, in_flight):
    assert next_step(where, in_flight) != SEND


@pytest.mark.parametrize("price, currency, settles", [
    (160_000, "EUR", True),
    (160_000, None, False),  # no currency given: not taken as the budget's (issue 13 #10)
    (0, "EUR", True),  # a free reply replaces the estimate too
    (160_000, "USD", False),  # another currency cannot replace a euro estimate
    (None, "EUR", False),
    (None, None, False),
])
def test_a_delivery_report_price_settles_only_in_euros(price, currency, settles):
    assert price_settles(price, currency) is settles
