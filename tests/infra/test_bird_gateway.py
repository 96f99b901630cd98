"""The Bird gateway against LocalBird: same results, errors and outcomes as the classic one."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import traceback

import pytest

from infra.bird_gateway import BirdGateway, BirdTransport, bird_message_body
from infra.bird_local import LocalBird
from infra.gateway import (
    DryRunGateway,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
)
from infra.providers import Providers, gateways_from_env
from infra.sending import CircuitBreaker, RetryPolicy, deliver

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

    def make(key=KEY, timeout=2.0, endpoint=None, workspace=WORKSPACE):
        transport = BirdTransport(key, endpoint or bird.endpoint, timeout=timeout)
        gw = BirdGateway(transport, workspace, CHANNEL)
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


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_unavailable(bird, make_gateway, status):
    bird.fail_next(1, status)
    with pytest.raises(GatewayUnavailable) as err:
        send(make_gateway())
    assert err.value.status == status
    _assert_no_number(err.value)
    assert bird.messages == []


def test_a_read_timeout_is_a_timeout_and_the_sms_was_sent_anyway(bird, make_gateway):
    bird.delay_next(1, 1.5)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as err:
        send(make_gateway(timeout=0.3))
    assert time.monotonic() - started < 1.4  # bounded by the read timeout
    assert len(bird.messages) == 1  # why a timeout is uncertain, never resent
    _assert_no_number(err.value)


def test_nobody_listening_is_unavailable(make_gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GatewayUnavailable):
        send(make_gateway(endpoint=f"http://127.0.0.1:{port}"))


def test_sends_reuse_pooled_connections(bird, make_gateway):
    gw = make_gateway()
    for i in range(5):
        send(gw, reference=f"r{i}")
    pool = gw.transport._pool.connection_from_url(bird.endpoint)
    assert pool.num_connections == 1  # one connection opened, kept alive for all five


def _outcome(gw, **kw):
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async def before(n: int) -> None:
        return

    async def call():
        return await asyncio.to_thread(send, gw)

    outcome = asyncio.run(deliver(call, before, retry=RetryPolicy(max_attempts=4),
                                  breaker=CircuitBreaker(threshold=10), rng=random.Random(1),
                                  sleep=sleep, **kw))
    return outcome, slept


def test_through_deliver_a_5xx_is_retried_then_sent(bird, make_gateway):
    bird.fail_next(2, 503)
    outcome, slept = _outcome(make_gateway())
    assert outcome.kind == "sent" and outcome.attempts == 3 and len(slept) == 2
    assert len(bird.messages) == 1


def test_through_deliver_a_timeout_is_uncertain_and_not_resent(bird, make_gateway):
    bird.delay_next(1, 1.0)
    outcome, _ = _outcome(make_gateway(timeout=0.3))
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
