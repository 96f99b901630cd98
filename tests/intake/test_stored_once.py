"""Each provider event stored once (streams.intake.once), the rule of both providers'
webhooks: a re-delivery after a lost 200 is a 200 that stores nothing; an event answered
503 is taken when it comes again, its signature's token given back; the memory covers
Bird's 8 hours of retries and never forgets an unexpired event: it refuses new ones."""

from __future__ import annotations

import asyncio

import pytest

from streams.intake.once import (
    IN_FLIGHT,
    NEW,
    STORED,
    Busy,
    StoredEvents,
    store_once,
)

T0 = 1_796_000_000.0
HOUR = 3600.0


def test_an_event_stored_is_known_for_the_8_hours_bird_retries_and_then_forgotten():
    events = StoredEvents()
    assert events.claim("e1", T0) == NEW
    events.stored("e1", T0)
    for later in (1.0, HOUR, 8 * HOUR, 8.9 * HOUR):
        assert events.claim("e1", T0 + later) == STORED
    assert events.claim("e1", T0 + 9.2 * HOUR) == NEW  # past keep_s: a new event
    assert len(events) == 0


def test_an_event_not_stored_is_released_and_one_being_stored_is_in_flight():
    events = StoredEvents()
    assert events.claim("e1", T0) == NEW
    assert events.claim("e1", T0 + 1) == IN_FLIGHT
    events.release("e1")
    assert events.claim("e1", T0 + 2) == NEW


def test_a_full_memory_refuses_new_events_and_forgets_none_before_its_time():
    events = StoredEvents(max_events=3)
    for i in range(3):
        events.claim(f"e{i}", T0 + i)
        events.stored(f"e{i}", T0 + i)
    with pytest.raises(Busy):
        events.claim("new", T0 + 10)
    assert all(events.claim(f"e{i}", T0 + 20) == STORED for i in range(3))
    # Once the oldest are past their time there is room again.
    assert events.claim("new", T0 + 9.3 * HOUR) == NEW


def test_a_bucket_goes_only_when_its_newest_event_is_old_enough():
    events = StoredEvents(keep_s=100, bucket_s=60)
    events.claim("early", T0)
    events.stored("early", T0)  # bucket [T0 - T0 % 60, + 60)
    late = T0 - T0 % 60 + 59
    events.claim("late", late)
    events.stored("late", late)  # the same bucket, 59 s later
    assert events.claim("late", late + 99) == STORED  # 99 s old: kept, bucket and all


class Token:
    """A signature's token store (the classic jti): spent until given back."""

    def __init__(self) -> None:
        self.given_back = 0

    def forget(self) -> None:
        self.given_back += 1


ACCEPTED = {"status": "accepted", "reference": "in-1"}


def run(events, store, token, event_id="messagebird.report:x", now=T0):
    return asyncio.run(store_once(events, event_id, now, store, ACCEPTED, token.forget))


def test_store_once_stores_once_and_answers_a_redelivery_200():
    events, token, stored = StoredEvents(), Token(), []

    async def store():
        stored.append(1)

    assert run(events, store, token) == (200, ACCEPTED)
    status, body = run(events, store, token, now=T0 + 5)
    assert (status, body, len(stored), token.given_back) == (
        200, {"status": "duplicate", "reference": "in-1"}, 1, 0)


def test_a_report_answered_503_gives_its_token_back_and_its_retry_is_stored():
    # Issue 29 item 3: a delivery report whose store failed burned its jti; MessageBird's
    # retry was refused 401 and its price never settled.
    events, token, stored = StoredEvents(), Token(), []

    async def broken():
        raise ConnectionError("broker away")

    async def store():
        stored.append(1)

    with pytest.raises(ConnectionError):
        run(events, broken, token)
    assert token.given_back == 1
    assert run(events, store, token, now=T0 + 30) == (200, ACCEPTED) and stored == [1]


def test_busy_and_in_flight_answer_503_and_give_the_token_back():
    events, token = StoredEvents(max_events=1), Token()
    events.claim("in flight", T0)

    async def store():
        raise AssertionError("not stored while another copy is being stored")

    assert run(events, store, token, event_id="in flight")[0] == 503
    assert run(events, store, token, event_id="other")[0] == 503  # full
    assert token.given_back == 2
