"""The Bird provider end to end: the real worker, with campaign paris on Bird's Channels API
(a local Bird server, signed events) and lyon on MessageBird classic, in one deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest
import requests

from infra.bird_local import LocalBird
from infra.bird_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.e2e.conftest import (
    ACCESS_KEY,
    CONFIG,
    REPLY_LYON,
    REPLY_PARIS,
    free_port,
    new_sender,
    of,
    start_worker,
    stop_worker,
)

pytestmark = pytest.mark.services

BIRD_KEY = "e2e_bird_access_key"
BIRD_SIGNING_KEY = "e2e-bird-signing-key-0123456789"
WORKSPACE = "ws-e2e"
CHANNEL = "ch-paris"
STATUS_PRICE = "0.05"  # per part: Bird charged less than the campaign's 0.08 estimate
# paris on Bird (its channel), lyon and tiny on the classic provider.
BIRD_CONFIG = (f'[bird]\nworkspace_id = "{WORKSPACE}"\n\n'
               + CONFIG.replace('id = "paris"\n',
                                f'id = "paris"\nprovider = "bird"\nbird_channel_id = "{CHANNEL}"\n', 1))


@pytest.fixture(scope="module")
def bird():
    with LocalBird(access_key=BIRD_KEY, workspace_id=WORKSPACE, signing_key=BIRD_SIGNING_KEY,
                   status_price=STATUS_PRICE) as server:
        yield server


@pytest.fixture(scope="module")
def bird_worker(tmp_path_factory, kafka, ray_address, bird, messagebird):
    w = start_worker(tmp_path_factory.mktemp("bird"), kafka, ray_address, {
        "BIRD_ACCESS_KEY": BIRD_KEY, "BIRD_ENDPOINT": bird.endpoint,
        "BIRD_SIGNING_KEY": BIRD_SIGNING_KEY, "BIRD_TIMEOUT_S": "1",
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
    }, config_text=BIRD_CONFIG)
    bird.events_url = w.url + "/webhooks/bird"
    yield w
    stop_worker(w)


def replies_to(bird: LocalBird, number: str) -> list[dict]:
    return [m for m in bird.messages if m["recipient"] == number]


def test_a_text_in_gets_one_reply_out_through_bird(bird_worker, bird):
    sender = new_sender()
    r = bird.send_inbound(sender, "t'es ou ?", CHANNEL)
    assert r.status_code == 200, r.text
    assert r.json()["campaign"] == "paris"
    events = bird_worker.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    (sent,) = of(events, r.message_id, "ReplySent")
    (reply,) = replies_to(bird, sender)
    assert reply["text"] == REPLY_PARIS and reply["reference"] == r.message_id
    assert reply["channel_id"] == CHANNEL and sent.provider_message_id == reply["id"]
    # The same privacy as the classic webhook: no number in the journal, only a pseudonym.
    journal = repr(of(events, r.message_id))
    assert sender not in journal and sender[2:] not in journal
    # A second text from the same sender: screened out, no second reply.
    again = bird.send_inbound(sender, "allo ?", CHANNEL)
    bird_worker.wait_for(lambda ev: of(ev, again.message_id, "SenderScreened"))
    assert len(replies_to(bird, sender)) == 1


def test_the_classic_campaign_still_goes_through_messagebird(bird_worker, messagebird, bird):
    sender = new_sender()
    r = bird_worker.post(sender=sender, campaign="lyon")
    assert r.status_code == 200
    bird_worker.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    assert [m["body"] for m in messagebird.messages if sender in m["recipients"]] == [REPLY_LYON]
    assert replies_to(bird, sender) == []


def test_an_unknown_channel_is_journaled_and_an_old_date_clamped_as_for_a_classic_text(
        bird_worker, bird):
    # given a text on a channel no campaign uses: refused (404) and journaled TextRejected,
    # as the classic webhook does for an unknown number
    unknown = bird.send_inbound(new_sender(), "t'es ou ?", "ch-nobody")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_channel")
    events = bird_worker.wait_for(lambda ev: of(ev, unknown.message_id, "TextRejected"))
    assert of(events, unknown.message_id)[0].reason == "unknown_channel"
    # and a text Bird dates a day early: its time is the arrival's minus the skew (5 min),
    # the two times journaled in TextTimeClamped
    payload = bird.inbound_payload(new_sender(), "t'es ou ?", CHANNEL, None)
    payload["createdAt"] = "2020-01-01T00:00:00.000Z"
    before = int(time.time() * 1000)
    r = bird.post_event("sms.inbound", payload)
    assert r.status_code == 200, r.text
    events = bird_worker.wait_for(lambda ev: of(ev, payload["id"], "TextReceived"))
    (clamped,) = of(events, payload["id"], "TextTimeClamped")
    (text,) = of(events, payload["id"], "TextReceived")
    assert clamped.reported_at == 1_577_836_800_000
    assert text.occurred_at == clamped.occurred_at == clamped.received_at - 5 * 60_000
    assert clamped.received_at >= before


@pytest.mark.parametrize("how", ["forged", "stale", "unsigned"])
def test_a_forged_or_stale_event_is_refused_and_nothing_is_stored(bird_worker, bird, how):
    sign = {"forged": {"key": "not-the-key"}, "stale": {"timestamp": int(time.time()) - 900},
            "unsigned": {"key": ""}}[how]
    r = bird.send_inbound(new_sender(), "t'es ou ?", CHANNEL, **sign)
    assert r.status_code == 401, r.text
    # A text posted after it is stored; the refused one never is.
    probe = bird.send_inbound(new_sender(), "probe", CHANNEL)
    events = bird_worker.wait_for(lambda ev: of(ev, probe.message_id, "TextReceived"))
    assert of(events, r.message_id) == []


def test_an_event_delivered_again_after_a_lost_200_is_answered_200_and_stored_once(
        bird_worker, bird):
    # Bird did not get our 200 and delivers the event again (newly signed, or the very same
    # request within its 5 minutes): 200, nothing stored again. Before: 401 replayed_event,
    # which Bird retries for 8 hours.
    first = bird.send_inbound(new_sender(), "t'es ou ?", CHANNEL)
    assert first.status_code == 200
    again = bird.post_event("sms.inbound", json.loads(first.raw_body)["payload"])
    replay = requests.post(bird.events_url, data=first.raw_body, headers=first.sent_headers,
                           timeout=30)
    for r in (again, replay):
        assert (r.status_code, r.json()["status"]) == (200, "duplicate"), r.text
        assert r.json()["message_id"] == first.message_id
    events = bird_worker.wait_for(lambda ev: of(ev, first.message_id, "ReplySent"))
    assert len(of(events, first.message_id, "TextReceived")) == 1
    # A status event of that reply, delivered twice: one DeliveryReported.
    (message,) = [m for m in bird.messages if m["reference"] == first.message_id]
    payload = bird.status_payload(message, "sent")
    statuses = [bird.post_event("sms.outbound", payload) for _ in range(2)]
    assert [(s.status_code, s.json()["status"]) for s in statuses] == [
        (200, "accepted"), (200, "duplicate")]
    assert len(of(bird_worker.journal(), first.message_id, "DeliveryReported")) == 1


def test_a_malformed_event_is_a_clear_4xx(bird_worker, bird):
    r = bird.post_event("sms.inbound", {"id": "x", "channelId": CHANNEL, "sender": {}})
    assert r.status_code == 422 and r.json()["field"] == "payload.sender"
    raw = b"\xff not json"
    stamp = str(int(time.time()))
    from infra.bird_signature import sign_bird
    bad = requests.post(bird.events_url, data=raw, timeout=30, headers={
        "Content-Type": "application/json", TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign_bird(BIRD_SIGNING_KEY, stamp, bird.events_url, raw)})
    assert bad.status_code == 400 and json.loads(bad.text)["error"] == "bad_json"


def test_a_delivery_status_reconciles_the_price(bird_worker, bird):
    bird.status_delay_s = 0.3
    try:
        before = bird_worker.status()["paris"]
        r = bird.send_inbound(new_sender(), "t'es ou ?", CHANNEL)
        events = bird_worker.wait_for(lambda ev: of(ev, r.message_id, "ReplyCostReconciled"))
    finally:
        bird.status_delay_s = None
    (approved,) = set(of(events, r.message_id, "ReplyApproved"))
    reports = {e.status: e for e in of(events, r.message_id, "DeliveryReported")}
    actual = int(Decimal(STATUS_PRICE) * approved.segments * 1_000_000)
    assert (reports["delivered"].price_micros, reports["delivered"].currency) == (actual, "EUR")
    (priced,) = set(of(events, r.message_id, "ReplyCostReconciled"))
    assert (priced.estimated_micros, priced.actual_micros) == (approved.cost_micros, actual)
    after = bird_worker.status()["paris"]
    assert after["balance_micros"] == before["balance_micros"] - actual
    assert all(status == 200 for _, status in bird.wait_for_events(2))


def test_a_5xx_is_retried_and_one_reply_goes_out(bird_worker, bird):
    bird.fail_next(2, 503)
    sender = new_sender()
    r = bird.send_inbound(sender, "t'es ou ?", CHANNEL)
    events = bird_worker.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"), timeout=90)
    assert max(a.attempt for a in of(events, r.message_id, "ReplyAttempted")) == 3
    assert len(replies_to(bird, sender)) == 1


def test_a_timeout_is_uncertain_and_never_resent(bird_worker, bird):
    bird.delay_next(1, 2.5)  # BIRD_TIMEOUT_S is 1; the message is accepted before the wait
    sender = new_sender()
    r = bird.send_inbound(sender, "t'es ou ?", CHANNEL, message_id=str(uuid.uuid4()))
    events = bird_worker.wait_for(lambda ev: of(ev, r.message_id, "ReplyUncertain"))
    (uncertain,) = of(events, r.message_id, "ReplyUncertain")
    assert uncertain.reason == "timeout"
    assert not of(events, r.message_id, "ReplySent")
    time.sleep(3)
    assert len(replies_to(bird, sender)) == 1  # it went out once, and only once


@pytest.mark.parametrize("change,env,message", [
    (lambda c: c, {}, "BIRD_SIGNING_KEY"),
    (lambda c: c.replace(f'bird_channel_id = "{CHANNEL}"\n', ""), {"BIRD_SIGNING_KEY": "k"},
     "needs 'bird_channel_id'"),
    (lambda c: c.replace(f'workspace_id = "{WORKSPACE}"', 'workspace = "x"'),
     {"BIRD_SIGNING_KEY": "k"}, "unknown keys"),
])
def test_the_worker_refuses_to_start_with_bad_provider_settings(tmp_path, change, env, message):
    config = tmp_path / "campaigns.toml"
    config.write_text(change(BIRD_CONFIG))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BIRD_", "ANTIRELOU_"))}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--kafka", "127.0.0.1:1",
         "--config", str(config), "--state-dir", str(tmp_path / "state"),
         "--web-port", str(free_port())],  # not 6066, which a running `up` may hold
        capture_output=True, text=True, timeout=60,
        env={**clean, "MESSAGEBIRD_SIGNING_KEY": "k", **env})
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_deployment_on_bird_alone_needs_no_messagebird_key_and_refuses_classic_webhooks(
        tmp_path_factory, kafka, ray_address):
    # Every campaign on Bird (the file's default), no MESSAGEBIRD_* at all.
    config = f'provider = "bird"\n{BIRD_CONFIG}'
    for cid in ("lyon", "tiny"):
        config = config.replace(f'id = "{cid}"\n', f'id = "{cid}"\nbird_channel_id = "ch-{cid}"\n')
    with LocalBird(access_key=BIRD_KEY, workspace_id=WORKSPACE,
                   signing_key=BIRD_SIGNING_KEY) as only_bird:
        w = start_worker(tmp_path_factory.mktemp("bird-only"), kafka, ray_address, {
            "BIRD_ACCESS_KEY": BIRD_KEY, "BIRD_ENDPOINT": only_bird.endpoint,
            "BIRD_SIGNING_KEY": BIRD_SIGNING_KEY, "MESSAGEBIRD_SIGNING_KEY": None,
            "MESSAGEBIRD_ACCESS_KEY": None, "ANTIRELOU_INSECURE_DEV": None,
        }, config_text=config, probe=False)
        try:
            only_bird.events_url = w.url + "/webhooks/bird"
            sender = new_sender()
            r = only_bird.send_inbound(sender, "t'es ou ?", "ch-lyon")
            assert r.status_code == 200 and r.json()["campaign"] == "lyon"
            w.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
            assert [m["text"] for m in only_bird.messages] == [REPLY_LYON]
            # The classic webhooks have no key to check with: they refuse, signed or not.
            classic = w.post(sender=new_sender(), campaign="lyon", sign_with=None)
            assert (classic.status_code, classic.json()["error"]) == (401, "missing_signature")
            report = requests.get(w.url + "/webhooks/messagebird/status?campaign=lyon",
                                  timeout=10)
            assert report.status_code == 401
            assert w.admin_get("/health").json()["dry_run"] is False  # details: admin only
        finally:
            stop_worker(w)


def test_a_deployment_moved_from_classic_to_bird_mid_campaign_keeps_journal_balance_and_audit(
        tmp_path_factory, kafka, ray_address, messagebird):
    # Issue 30: paris answers on MessageBird classic, then the deployment restarts with
    # paris on Bird (the migration guide's steps). Same app id, same journal.
    app_id = "e2e-move-" + uuid.uuid4().hex[:8]
    classic = start_worker(tmp_path_factory.mktemp("move-classic"), kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
    }, app_id=app_id)
    try:
        first = new_sender()
        r = classic.post(sender=first)
        assert r.status_code == 200, r.text
        classic.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
        before = classic.status()["paris"]
    finally:
        stop_worker(classic)
    assert [m["body"] for m in messagebird.messages if first in m["recipients"]] == [REPLY_PARIS]

    with LocalBird(access_key=BIRD_KEY, workspace_id=WORKSPACE,
                   signing_key=BIRD_SIGNING_KEY) as moved_to:
        on_bird = start_worker(tmp_path_factory.mktemp("move-bird"), kafka, ray_address, {
            "BIRD_ACCESS_KEY": BIRD_KEY, "BIRD_ENDPOINT": moved_to.endpoint,
            "BIRD_SIGNING_KEY": BIRD_SIGNING_KEY,
            "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        }, app_id=app_id, config_text=BIRD_CONFIG)
        try:
            moved_to.events_url = on_bird.url + "/webhooks/bird"
            # The pest answered on classic texts again, now through Bird: the same pseudonym,
            # already answered. A newcomer is answered through Bird, the campaign's seq and
            # balance carrying on from what classic spent.
            again = moved_to.send_inbound(first, "et alors ?", CHANNEL)
            newcomer = new_sender()
            fresh = moved_to.send_inbound(newcomer, "t'es ou ?", CHANNEL)
            assert (again.status_code, fresh.status_code) == (200, 200)
            events = on_bird.wait_for(lambda ev: of(ev, again.message_id, "SenderScreened")
                                      and of(ev, fresh.message_id, "ReplySent"))
            assert of(events, again.message_id, "SenderScreened")[0].reason == "already_answered"
            (approved,) = set(of(events, fresh.message_id, "ReplyApproved"))
            assert approved.seq == 2
            assert approved.balance_after_micros == before["balance_micros"] - approved.cost_micros
            assert on_bird.status()["paris"]["balance_micros"] == approved.balance_after_micros
            assert [(m["recipient"], m["text"]) for m in moved_to.messages] == [
                (newcomer, REPLY_PARIS)]
            (text,) = of(events, r.message_id, "TextReceived")  # the classic story is there
            assert text.campaign_id == "paris"
            audit = on_bird.cli("audit")
            assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr
        finally:
            stop_worker(on_bird)
