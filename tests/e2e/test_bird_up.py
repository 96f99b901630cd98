"""Issue 30, black-box through the real `antirelou up` (its broker, Ray, the worker): a
campaign on Bird (paris, signed Bird events, the local Bird server) beside one on the
classic API (lyon, the local MessageBird), both behind providers that take each send and
then fail on the way back.

What must hold, for both providers (one rule, ``infra.send_rule``): a send that may have
been accepted is never sent again, so each reply is accepted at most once; every Bird send
carries the reply's ``Idempotency-Key``; once the providers accept normally, a reply goes
out once, and the audit of the whole journal is clean. Numbers measured are printed (run
with -s to see them). Before issue 30 the Bird campaign's provider accepted 7 sends per
reply within 60 s (a reset after each), and a 504 after acceptance was sent again.
"""

from __future__ import annotations

import time

import pytest

from infra.bird_gateway import idempotency_key
from infra.bird_local import LocalBird
from tests.e2e.conftest import new_sender, of
from tests.e2e.test_bird_live import (
    BIRD_CONFIG,
    BIRD_KEY,
    BIRD_SIGNING_KEY,
    CHANNEL,
    WORKSPACE,
)
from tests.e2e.test_broker_faults import start_up, stop

pytestmark = pytest.mark.services

REPLIES = 3  # per provider and per fault


@pytest.fixture(scope="module")
def bird():
    with LocalBird(access_key=BIRD_KEY, workspace_id=WORKSPACE,
                   signing_key=BIRD_SIGNING_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, ray_address, messagebird, bird):
    up = start_up(tmp_path_factory.mktemp("bird-up"), ray_address, messagebird,
                  config_text=BIRD_CONFIG, extra_env={
                      "BIRD_ACCESS_KEY": BIRD_KEY, "BIRD_ENDPOINT": bird.endpoint,
                      "BIRD_SIGNING_KEY": BIRD_SIGNING_KEY, "BIRD_TIMEOUT_S": "2",
                      "MESSAGEBIRD_TIMEOUT_S": "2"})
    bird.events_url = up.url + "/webhooks/bird"
    try:
        yield up
    finally:
        messagebird.reset()
        bird.reset()
        stop(up)


def texts_to_both(up, bird) -> tuple[list[str], list[str]]:
    """REPLIES first texts to paris through Bird and REPLIES to lyon through MessageBird;
    their message ids."""
    on_bird, on_classic = [], []
    for _ in range(REPLIES):
        r = bird.send_inbound(new_sender(), "t'es ou ?", CHANNEL)
        assert r.status_code == 200, r.text
        on_bird.append(r.message_id)
        c = up.post(sender=new_sender(), campaign="lyon")
        assert c.status_code == 200, c.text
        on_classic.append(c.message_id)
    return on_bird, on_classic


def outcomes(up, mids: list[str], kind: str) -> list:
    events = up.wait_for(lambda ev: all(of(ev, m, kind) for m in mids), timeout=90)
    return [e for m in mids for e in of(events, m, kind)]


def sends_per_reply(bird, messagebird, on_bird, on_classic) -> tuple[dict, dict]:
    time.sleep(3)  # any send that would still come (a retry, a redelivery) comes by now
    accepted = bird.accepted_per_reference()
    classic = {}
    for m in messagebird.messages:
        classic[m["reference"]] = classic.get(m["reference"], 0) + 1
    return ({m: accepted.get(m, 0) for m in on_bird},
            {m: classic.get(m, 0) for m in on_classic})


def assert_every_bird_send_carried_its_key(bird, on_bird) -> None:
    for mid in on_bird:
        sent = [r for r in bird.sends if r["reference"] == mid]
        assert sent and all(r["idempotency_key"] == idempotency_key(mid) for r in sent), sent


@pytest.mark.parametrize("fault", ["reset", "504"])
def test_a_provider_that_accepts_then_fails_gets_each_reply_once(deployment, bird,
                                                                 messagebird, fault):
    for server in (bird, messagebird):
        server.clear_faults()
        if fault == "reset":
            server.reset_next(1000)  # takes each send, then resets the connection
        else:
            server.accept_then_fail_next(1000, 504)  # takes it; a proxy answers 504
    try:
        on_bird, on_classic = texts_to_both(deployment, bird)
        uncertain = outcomes(deployment, on_bird + on_classic, "ReplyUncertain")
        birds, classics = sends_per_reply(bird, messagebird, on_bird, on_classic)
    finally:
        bird.clear_faults()
        messagebird.clear_faults()
    reason = "connection_lost" if fault == "reset" else "server_error"
    print(f"\n{fault}: accepted sends per reply, Bird {sorted(birds.values())}, "
          f"classic {sorted(classics.values())}; outcomes "
          f"{sorted({(e.TYPE, e.reason) for e in uncertain})}")
    assert {e.reason for e in uncertain} == {reason}
    assert set(birds.values()) == {1} and set(classics.values()) == {1}
    assert_every_bird_send_carried_its_key(bird, on_bird)
    events = deployment.journal()
    for mid in on_bird + on_classic:  # one attempt, never sent again, never refunded
        assert [e.attempt for e in of(events, mid, "ReplyAttempted")] == [1]
        assert not of(events, mid, "ReplySent") and not of(events, mid, "ReplyFailed")
        assert not of(events, mid, "ReplyRefunded")


def test_then_an_accepting_provider_sends_each_reply_once_and_the_audit_is_clean(
        deployment, bird, messagebird):
    on_bird, on_classic = texts_to_both(deployment, bird)
    sent = outcomes(deployment, on_bird + on_classic, "ReplySent")
    birds, classics = sends_per_reply(bird, messagebird, on_bird, on_classic)
    print(f"\naccepting: accepted sends per reply, Bird {sorted(birds.values())}, classic "
          f"{sorted(classics.values())}")
    assert len(sent) == 2 * REPLIES and not any(e.dry_run for e in sent)
    assert set(birds.values()) == {1} and set(classics.values()) == {1}
    assert_every_bird_send_carried_its_key(bird, on_bird)
    audit = deployment.cli("audit")
    print("audit:", audit.returncode, audit.stdout.strip().splitlines()[-1:])
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr
