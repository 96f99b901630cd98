"""Flood defence through the real shells: a request waits out the safety delay and the clock
tick at its end pays and sends it, and a surge defers a reply whose sealed reply-to waits in a
Faust table until a clock tick releases it; the audit re-decides all of it."""

from __future__ import annotations

import pytest

from infra.config import load_campaigns
from streams import audit
from tests.e2e.conftest import ACCESS_KEY, new_sender, of, send_ticks, start_worker, stop_worker

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def flood_worker(tmp_path_factory, kafka, ray_address, messagebird):
    w = start_worker(tmp_path_factory.mktemp("flood"), kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        "ANTIRELOU_TICK_INTERVAL_S": "0.5"})
    yield w
    stop_worker(w)


def set_policy(worker, campaign, *pairs):
    done = worker.cli("policy", "set", campaign, *pairs, operator="alice")
    assert done.returncode == 0, done.stderr


def test_a_request_waits_the_safety_delay_and_the_tick_at_its_end_sends_the_reply(
        flood_worker, messagebird):
    w = flood_worker
    set_policy(w, "paris", "reply_delay_minutes=60")
    r = w.post(sender=new_sender(), campaign="paris")
    assert r.status_code == 200, r.text
    # Nothing is paid nor sent while the hour runs: the request waits, its end journaled,
    events = w.wait_for(lambda ev: of(ev, r.message_id, "ReplyDeferred"))
    (deferred,) = of(events, r.message_id, "ReplyDeferred")
    assert deferred.hold_until == deferred.occurred_at + 3_600_000
    assert not of(events, r.message_id, "ReplyApproved")
    # and the clock's tick an hour on (sent as the leader's timer sends it) pays and sends it.
    send_ticks(w, "paris", [deferred.hold_until + 1_000])
    events = w.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    (approved,) = of(events, r.message_id, "ReplyApproved")
    assert approved.deferred_at == deferred.occurred_at
    assert approved.send_at == approved.occurred_at >= deferred.hold_until
    assert [m for m in messagebird.messages if m["reference"] == r.message_id]
    set_policy(w, "paris", "reply_delay_minutes=0")


def test_a_surge_defers_a_reply_and_a_tick_releases_it(flood_worker, messagebird):
    w = flood_worker
    # A prior of 1 a minute and at least 2 first texts in a minute: the second starts a surge.
    set_policy(w, "lyon", "surge_multiple=1", "surge_min_rate=2", "surge_release_per_minute=60",
               "surge_watch_minutes=0", "surge_expected_per_minute=1")  # no watch; prior 1
    posted, numbers = [], []
    for _ in range(6):  # two in one minute (a minute may turn between two posts)
        numbers.append(new_sender())
        r = w.post(sender=numbers[-1], campaign="lyon")
        assert r.status_code == 200, r.text
        posted.append(r.message_id)
        events = w.wait_for(lambda ev, mid=r.message_id: of(ev, mid, "ReplyApproved")
                            or of(ev, mid, "ReplyDeferred") or of(ev, mid, "ReplyDenied"))
        if any(e.TYPE == "SurgeStarted" and e.campaign_id == "lyon" for e in events):
            break
    deferred = [mid for mid in posted if of(events, mid, "ReplyDeferred")]
    assert deferred, "no surge in six texts"
    mid = deferred[-1]
    # No more texts: only the clock can release it, and it is sent to the right number.
    events = w.wait_for(lambda ev: of(ev, mid, "ReplySent"), timeout=60)
    released = [e for e in of(events, mid, "ReplyApproved") if e.deferred_at is not None]
    assert released and released[0].occurred_at >= released[0].deferred_at
    (sent,) = [m for m in messagebird.messages if m["reference"] == mid]
    assert sent["recipients"] == [numbers[posted.index(mid)]]
    # Neither the number nor its sealed form is in the journal; the audit re-decides it all.
    raw = b"".join(repr(e).encode() for e in events)
    assert all(n.encode() not in raw for n in numbers)
    assert not any(hasattr(e, "reply_to") for e in events)
    result = audit.audit(events, load_campaigns(w.config))
    assert result.ok, [m.to_json() for m in result.mismatches[:3]]
