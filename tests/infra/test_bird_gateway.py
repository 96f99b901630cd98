"""The Bird gateway against LocalBird: same results, errors and outcomes as the classic one."""

from __future__ import annotations

import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests

from infra.bird_gateway import (
    IDEMPOTENCY_HEADER,
    REPLAY_HEADER,
    BirdGateway,
    BirdTransport,
    bird_message_body,
    idempotency_key,
)
from infra.bird_local import LocalBird
from infra.gateway import (
    DryRunGateway,
    GatewayRejected,
    GatewayTimeout,
    GatewayUncertain,
    SendResult,
)
from infra.providers import Providers, gateways_from_env
from tests.infra.test_send_rule import through_deliver  # the send stage's loop, sleeps skipped

RECIPIENT = "31612345678"  # clearly fake
KEY = "bird_test_key"
WORKSPACE = "ws-test"
CHANNEL = "ch-paris"


def _assert_no_number(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for shown in (str(exc), repr(exc), text):
        assert RECIPIENT not in shown
        assert RECIPIENT[2:] not in shown


@pytest.fixture
def bird():
    with LocalBird(access_key=KEY, workspace_id=WORKSPACE) as server:
        yield server


@pytest.fixture
def make_gateway(bird):
    made = []

    def make(key=KEY, timeout=2.0, endpoint=None, workspace=WORKSPACE, **kw):
        transport = BirdTransport(key, endpoint or bird.endpoint, timeout=timeout)
        gw = BirdGateway(transport, workspace, CHANNEL, **kw)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


def send(gw, body="Non, c'est non.", reference="in-1", **kw) -> SendResult:
    return gw.send(originator="AntiRelou", recipient=RECIPIENT, body=body,
                   reference=reference, **kw)


def test_a_reply_is_posted_to_the_channel_as_bird_documents_it(bird, make_gateway):
    result = send(make_gateway())
    (message,) = bird.messages
    assert result.provider_message_id == message["id"]
    assert result.price_micros is None and not result.dry_run  # Bird's 202 has no price
    assert message["channel_id"] == CHANNEL
    assert message["body"] == {
        "receiver": {"contacts": [{"identifierKey": "phonenumber",
                                   "identifierValue": "+" + RECIPIENT}]},
        "body": {"type": "text", "text": {"text": "Non, c'est non."}},
        "reference": "in-1",
    }


def test_a_scheduled_reply_carries_scheduled_for_in_utc():
    body = bird_message_body(RECIPIENT, "x", "r", scheduled_at=1_700_000_000_250)
    assert body["scheduledFor"] == "2023-11-14T22:13:20.250Z"


def test_a_wrong_key_or_workspace_is_rejected_not_retried(make_gateway):
    with pytest.raises(GatewayRejected) as bad_key:
        send(make_gateway(key="nope"))
    assert bad_key.value.status == 401
    with pytest.raises(GatewayRejected) as bad_ws:
        send(make_gateway(workspace="elsewhere"))
    assert bad_ws.value.status == 404


def test_a_malformed_recipient_is_rejected_with_birds_message_and_no_number(make_gateway):
    gw = make_gateway()
    with pytest.raises(GatewayRejected) as err:
        gw.send(originator="x", recipient="12", body="hi", reference="r")
    assert err.value.status == 422 and "identifierValue" in (err.value.description or "")


# 5xx, 429, refused, resets and closed connections: tests/infra/test_send_rule.py, the rule
# both gateways share, run on each.


def test_a_read_timeout_is_a_timeout_and_the_sms_was_sent_anyway(bird, make_gateway):
    bird.delay_next(1, 1.5)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as err:
        send(make_gateway(timeout=0.3))
    assert time.monotonic() - started < 1.4  # bounded by the read timeout
    assert len(bird.messages) == 1  # why a timeout is uncertain, never resent
    _assert_no_number(err.value)


def test_sends_reuse_pooled_connections(bird, make_gateway):
    gw = make_gateway()
    for i in range(5):
        send(gw, reference=f"r{i}")
    pool = gw.transport.sender.connection_pool(bird.endpoint)
    assert pool.num_connections == 1  # one connection opened, kept alive for all five


def test_through_deliver_a_timeout_is_uncertain_and_not_resent(bird, make_gateway):
    bird.delay_next(1, 1.0)
    outcome, _ = through_deliver(make_gateway(timeout=0.3), "in-1")
    assert outcome.kind == "uncertain" and outcome.reason == "timeout"
    assert outcome.attempts == 1
    time.sleep(0.8)
    assert len(bird.messages) == 1


def test_gateways_per_campaign_share_one_transport_or_run_dry_without_a_key(bird):
    providers = Providers(by_campaign={"paris": "bird", "lyon": "bird", "nice": "messagebird"},
                          bird_channels={"ch-p": "paris", "ch-l": "lyon"},
                          bird_workspace_id=WORKSPACE, bird_endpoint=bird.endpoint)
    classic = DryRunGateway()
    routed = gateways_from_env(providers, classic, {"BIRD_ACCESS_KEY": KEY})
    paris, lyon = routed.for_campaign("paris"), routed.for_campaign("lyon")
    assert isinstance(paris, BirdGateway) and paris.channel_id == "ch-p"
    assert paris.transport is lyon.transport
    assert routed.for_campaign("nice") is classic
    routed.close()
    dry = gateways_from_env(providers, classic, {})
    assert isinstance(dry.for_campaign("paris"), DryRunGateway)
    with pytest.raises(ValueError, match="BIRD_TIMEOUT_S"):
        gateways_from_env(providers, classic, {"BIRD_ACCESS_KEY": KEY, "BIRD_TIMEOUT_S": "0"})


# -- Idempotency-Key: the local server implements it as Bird documents it -----------------


def post_raw(bird, body: dict, key: str | None):
    """A send as the gateway writes it (the same bytes: "the same request")."""
    headers = {"Authorization": f"AccessKey {KEY}", "Content-Type": "application/json"}
    if key is not None:
        headers[IDEMPOTENCY_HEADER] = key
    return requests.post(f"{bird.endpoint}/workspaces/{WORKSPACE}/channels/{CHANNEL}/messages",
                         data=orjson.dumps(body), headers=headers, timeout=5)


def test_local_bird_replays_the_same_request_and_refuses_the_key_with_another():
    with LocalBird(access_key=KEY, workspace_id=WORKSPACE) as bird:
        body = bird_message_body(RECIPIENT, "Non.", "in-1")
        first = post_raw(bird, body, "k-1")
        again = post_raw(bird, body, "k-1")
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json() == first.json() and again.headers[REPLAY_HEADER] == "true"
        assert REPLAY_HEADER not in first.headers
        assert len(bird.messages) == 1  # one SMS for both
        other = post_raw(bird, bird_message_body(RECIPIENT, "Autre.", "in-1"), "k-1")
        assert (other.status_code, other.json()["code"]) == (409, "IdempotencyKeyReuse")
        for bad in ("", "k" * 256):
            assert post_raw(bird, body, bad).status_code == 400
        assert post_raw(bird, body, "k" * 255).status_code == 202
        assert post_raw(bird, body, None).status_code == 202  # no key: no deduplication
        assert len(bird.messages) == 3


def test_local_bird_does_not_keep_a_5xx_and_answers_409_while_the_first_is_in_flight():
    with LocalBird(access_key=KEY, workspace_id=WORKSPACE) as bird:
        body = bird_message_body(RECIPIENT, "Non.", "in-1")
        bird.fail_next(1, 503)
        assert post_raw(bird, body, "k-2").status_code == 503
        assert post_raw(bird, body, "k-2").headers.get(REPLAY_HEADER) is None  # processed
        bird.delay_next(1, 1.0)
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(post_raw, bird, body, "k-3")
            time.sleep(0.3)
            busy = post_raw(bird, body, "k-3")
            assert (busy.status_code, busy.json()["code"]) == (409, "RequestInProgress")
            assert slow.result().status_code == 202
        assert post_raw(bird, body, "k-3").headers[REPLAY_HEADER] == "true"
        # Accepted, then a proxy's 504: Bird kept its 202, a retry with the key replays it.
        bird.accept_then_fail_next(1, 504)
        assert post_raw(bird, body, "k-4").status_code == 504
        assert post_raw(bird, body, "k-4").headers[REPLAY_HEADER] == "true"
        assert len(bird.messages) == 3


def test_a_replayed_answer_is_the_original_send(bird, make_gateway):
    # An earlier attempt of this reply was accepted (its answer lost): the key makes Bird
    # replay it, and the gateway takes it as the send it is, with the original id.
    first = post_raw(bird, bird_message_body(RECIPIENT, "Non, c'est non.", "in-1"),
                     idempotency_key("in-1"))
    result = send(make_gateway())
    assert result.provider_message_id == first.json()["id"]
    assert len(bird.messages) == 1
    assert [r["result"] for r in bird.sends] == ["accepted", "replayed"]


def test_a_key_taken_by_another_request_is_uncertain_never_resent(bird, make_gateway):
    post_raw(bird, bird_message_body(RECIPIENT, "an older reply text", "in-1"),
             idempotency_key("in-1"))
    with pytest.raises(GatewayUncertain) as err:
        send(make_gateway())
    assert (err.value.status, err.value.reason) == (409, "idempotency_key_reused")
    assert len(bird.messages) == 1


def test_a_request_in_flight_is_asked_again_with_the_same_key_until_it_answers(
        bird, make_gateway):
    slept: list[float] = []
    gw = make_gateway(timeout=5.0, in_progress_waits_s=(0.4, 0.4, 0.4, 0.4),
                      sleep=lambda s: (slept.append(s), time.sleep(s)))
    bird.delay_next(1, 1.0)  # the first attempt is still being processed
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(send, gw)
        time.sleep(0.2)
        second = send(gw)  # the same reply: the same key, 409 RequestInProgress, then replay
    assert second.provider_message_id == first.result().provider_message_id
    assert len(bird.messages) == 1 and slept
    bird.delay_next(1, 3.0)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(send, gw, reference="in-2")
        time.sleep(0.2)
        with pytest.raises(GatewayUncertain) as err:  # still in flight after every wait
            send(gw, reference="in-2")
    assert err.value.reason == "request_in_progress"
    assert [m["reference"] for m in bird.messages] == ["in-1", "in-2"]
