"""Retries, backoff and the circuit breaker of the reply sender, against scripted gateways
(the real gateway errors; the HTTP side has its own tests with the local MessageBird)."""

import asyncio
import random

import pytest

from infra.messagebird_gateway import (
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
)
from streams.sending import CircuitBreaker, RetryPolicy, deliver

OK = SendResult("mb-1", 160_000, "EUR", 2, dry_run=False)
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.002)


class Script:
    """Answers calls from a list: an exception to raise or a result to return."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0
        self.log = []

    async def call(self):
        self.calls += 1
        self.log.append(f"call{self.calls}")
        answer = self.answers.pop(0) if self.answers else OK
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def before(self, n):
        self.log.append(f"attempt{n}")


def run(script, breaker=None, retry=FAST):
    return asyncio.run(deliver(script.call, script.before, retry=retry,
                               breaker=breaker or CircuitBreaker(100, 0.05),
                               rng=random.Random(1)))


def test_unavailable_is_retried_and_each_attempt_is_recorded_before_its_call():
    script = Script(GatewayUnavailable("503"), GatewayUnavailable("429"), OK)
    outcome = run(script)
    assert (outcome.kind, outcome.attempts, outcome.result) == ("sent", 3, OK)
    assert script.log == ["attempt1", "call1", "attempt2", "call2", "attempt3", "call3"]


def test_a_reply_the_provider_keeps_refusing_fails_after_max_attempts():
    script = Script(*[GatewayUnavailable("503")] * 10)
    outcome = run(script)
    assert (outcome.kind, outcome.attempts, outcome.retryable) == ("failed", 4, True)
    assert script.calls == 4


@pytest.mark.parametrize("error", [GatewayRejected("422", code=9, status=422)])
def test_a_rejection_fails_at_once(error):
    script = Script(error)
    outcome = run(script)
    assert (outcome.kind, outcome.attempts, outcome.retryable) == ("failed", 1, False)


@pytest.mark.parametrize("error, reason", [(GatewayTimeout("read"), "timeout"),
                                           (GatewayError("not json"), "unreadable_answer")])
def test_a_call_that_may_have_reached_the_provider_is_never_repeated(error, reason):
    script = Script(error, OK)
    outcome = run(script)
    assert (outcome.kind, outcome.reason, script.calls) == ("uncertain", reason, 1)


def test_an_outage_opens_the_breaker_and_delays_instead_of_failing():
    breaker = CircuitBreaker(threshold=2, cooldown_s=0.05)
    # Down for 7 calls: more than max_attempts (4), but the breaker opens after 2 and the
    # failed probes do not count against the reply.
    script = Script(*[GatewayUnavailable("503")] * 7, OK)
    outcome = run(script, breaker)
    assert outcome.kind == "sent" and script.calls == 8
    assert breaker.opened == 1 and breaker.state == "closed"


def test_an_open_breaker_holds_calls_until_the_cooldown_then_lets_one_probe():
    clock = [0.0]
    breaker = CircuitBreaker(threshold=1, cooldown_s=10, clock=lambda: clock[0])
    breaker.failure(probe=False)
    assert breaker.state == "open"

    async def scenario():
        waiter = asyncio.ensure_future(breaker.acquire())
        await asyncio.sleep(0.1)
        assert not waiter.done()  # still inside the cooldown
        clock[0] = 11
        probe = await asyncio.wait_for(waiter, 2)
        assert probe is True and breaker.state == "half-open"
        second = asyncio.ensure_future(breaker.acquire())
        await asyncio.sleep(0.1)
        assert not second.done()  # one probe at a time
        breaker.success(probe=True)
        assert await asyncio.wait_for(second, 2) is False
        assert breaker.state == "closed"

    asyncio.run(scenario())


def test_backoff_is_jittered_and_capped():
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=4)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 9) for _ in range(50)]
    assert all(0 <= d <= 4 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not a fixed ladder
    assert max(policy.delay(1, rng) for _ in range(100)) <= 0.5


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)
