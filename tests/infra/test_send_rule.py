"""The retry rule both gateways share (``infra.send_rule``), each against its local server:
only what was not accepted is sent again; what may have been accepted is uncertain.

Every scenario runs on the MessageBird classic gateway and on the Bird gateway, because a
fix made in one copy and not the other is how the same bug came back (issue 30: the Bird
gateway retried a reset after the request was written, 7-20 accepted sends per reply; the
classic one retried every 5xx, and a 504 after acceptance gave two SMS).
"""

from __future__ import annotations

import asyncio
import random
import socket
import traceback

import pytest

from infra.bird_gateway import BirdGateway, BirdTransport, idempotency_key
from infra.bird_local import LocalBird
from infra.gateway import (
    GatewayConnectionLost,
    GatewayUnavailable,
    GatewayUncertain,
)
from infra.messagebird_gateway import MessageBirdGateway
from infra.messagebird_local import LocalMessageBird
from infra.send_rule import RETRY_AFTER_CAP_S, retry_after_s
from infra.sending import CircuitBreaker, RetryPolicy, deliver

RECIPIENT = "31612345678"  # clearly fake
KEY = "test_key"


class Provider:
    """One provider's local server and a gateway to it, seen alike by the tests."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "messagebird":
            self.server = LocalMessageBird(access_key=KEY).start()
        else:
            self.server = LocalBird(access_key=KEY, workspace_id="ws").start()
        self.gateways: list = []

    def gateway(self, timeout: float = 2.0, endpoint: str | None = None):
        endpoint = endpoint or self.server.endpoint
        if self.name == "messagebird":
            gw = MessageBirdGateway(KEY, endpoint=endpoint, timeout=timeout)
        else:
            gw = BirdGateway(BirdTransport(KEY, endpoint, timeout=timeout), "ws", "ch")
        self.gateways.append(gw)
        return gw

    def accepted(self) -> list[str]:
        """The reference of every message the provider took, in order."""
        return [m["reference"] for m in self.server.messages]

    def close(self) -> None:
        for gw in self.gateways:
            gw.close()
        self.server.stop()


@pytest.fixture(params=["messagebird", "bird"])
def provider(request):
    p = Provider(request.param)
    yield p
    p.close()


def send(gw, reference: str = "ref-1"):
    return gw.send(originator="AntiRelou", recipient=RECIPIENT, body="Non, c'est non.",
                   reference=reference)


def assert_no_number(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert RECIPIENT not in text and RECIPIENT[2:] not in text


def through_deliver(gw, reference: str = "ref-1", attempts: int = 6):
    """The send stage's loop around one reply (retries, breaker) with sleeps skipped."""
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async def before(n: int) -> None:
        return

    async def call():
        return await asyncio.to_thread(send, gw, reference)

    return asyncio.run(deliver(call, before, retry=RetryPolicy(max_attempts=attempts),
                               breaker=CircuitBreaker(threshold=50), rng=random.Random(1),
                               sleep=sleep)), slept


# -- after the request was written: uncertain, never resent ----------------------------


def test_a_reset_after_the_provider_accepted_is_uncertain_and_accepted_once(provider):
    gw = provider.gateway()
    send(gw, "ref-0")  # a kept-alive connection, reused by the next send
    provider.server.reset_next(10)
    with pytest.raises(GatewayConnectionLost) as info:
        send(gw)
    assert_no_number(info.value)
    assert provider.accepted() == ["ref-0", "ref-1"]
    # Through the send stage's retries: one call, uncertain, nothing sent again.
    outcome, _ = through_deliver(gw, "ref-2")
    assert (outcome.kind, outcome.reason, outcome.attempts) == (
        "uncertain", "connection_lost", 1)
    assert provider.accepted().count("ref-2") == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_after_the_provider_accepted_is_uncertain_and_accepted_once(provider, status):
    gw = provider.gateway()
    provider.server.accept_then_fail_next(10, status)
    with pytest.raises(GatewayUncertain) as info:
        send(gw)
    assert (info.value.status, info.value.reason) == (status, "server_error")
    assert_no_number(info.value)
    outcome, _ = through_deliver(gw, "ref-2")
    assert (outcome.kind, outcome.reason, outcome.attempts) == ("uncertain", "server_error", 1)
    assert provider.accepted() == ["ref-1", "ref-2"]


def test_a_5xx_other_than_503_is_uncertain_even_when_nothing_was_accepted(provider):
    # The provider does not say it refused it: we cannot know, so it is never resent.
    provider.server.fail_next(1, 500)
    outcome, _ = through_deliver(provider.gateway())
    assert (outcome.kind, outcome.reason) == ("uncertain", "server_error")


# -- known not accepted: retried -------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_a_refusal_is_retried_and_the_reply_goes_out_once(provider, status):
    provider.server.fail_next(2, status)
    gw = provider.gateway()
    with pytest.raises(GatewayUnavailable) as info:
        send(gw, "ref-0")
    assert info.value.status == status
    assert_no_number(info.value)
    outcome, slept = through_deliver(gw)
    assert (outcome.kind, outcome.attempts) == ("sent", 2)
    assert provider.accepted() == ["ref-1"]


def test_retry_after_is_honoured_up_to_a_bound(provider):
    provider.server.fail_next(1, 429)  # both local servers say Retry-After: 1
    with pytest.raises(GatewayUnavailable) as info:
        send(provider.gateway())
    assert info.value.retry_after_s == 1.0
    assert retry_after_s("7") == 7.0 and retry_after_s("86400") == RETRY_AFTER_CAP_S
    assert retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT") is None and retry_after_s(None) is None


def test_nobody_listening_is_unavailable(provider):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GatewayUnavailable) as info:
        send(provider.gateway(endpoint=f"http://127.0.0.1:{port}/"))
    assert_no_number(info.value)


def test_a_reused_connection_closed_with_no_byte_back_is_retried_once(provider):
    # The keep-alive race: the provider closes the idle connection as our request goes
    # out, and takes nothing. Tried once more, on another connection.
    gw = provider.gateway()
    send(gw, "ref-0")
    provider.server.close_next(1)
    send(gw)
    assert provider.accepted() == ["ref-0", "ref-1"]
    provider.server.close_next(2)  # closed again on the retry: not tried a third time
    with pytest.raises(GatewayConnectionLost):
        send(gw, "ref-2")
    assert provider.accepted() == ["ref-0", "ref-1"]


def test_a_fresh_connection_closed_with_no_byte_back_is_not_retried(provider):
    provider.server.close_next(1)  # nothing was reused: the provider may have taken it
    with pytest.raises(GatewayConnectionLost):
        send(provider.gateway())
    assert provider.accepted() == []


# -- Bird: the idempotency key on every attempt ------------------------------------------


def test_every_bird_attempt_of_one_reply_carries_the_same_idempotency_key():
    p = Provider("bird")
    try:
        p.server.fail_next(2, 503)
        outcome, _ = through_deliver(p.gateway(), "in-42")
        assert (outcome.kind, outcome.attempts) == ("sent", 3)
        keys = [r["idempotency_key"] for r in p.server.sends]
        assert keys == [idempotency_key("in-42")] * 3
        assert len(keys[0]) <= 255 and keys[0] == idempotency_key("in-42")
        assert idempotency_key("in-43") != keys[0]
        (message,) = p.server.messages
        assert message["idempotency_key"] == keys[0]
    finally:
        p.close()
