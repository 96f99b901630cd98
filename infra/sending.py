"""Sending one approved reply: bounded retries with backoff and jitter, behind a circuit
breaker, with an outcome that says whether the SMS was sent, was not, or may have been.

This is shell code (it sleeps and draws jitter); the decisions about money stay in the core.
What is retried is only what proves that nothing was sent:

=========================  =================================  ===========================
gateway error              meaning                            outcome
=========================  =================================  ===========================
``GatewayUnavailable``     5xx, 429, refused, connect timeout  retried, then ``failed``
``GatewayRejected``        4xx / ``errors`` JSON               ``failed`` at once
``GatewayTimeout``         no answer after the request left    ``uncertain``: never resent
``GatewayConnectionLost``  dropped after the request was sent  ``uncertain``: never resent
``GatewayError``           an answer we cannot read            ``uncertain``: never resent
=========================  =================================  ===========================

Whatever the errors, a reply makes at most ``max_calls`` calls, probes included: nothing
that goes wrong with the provider sends one reply without limit.

MessageBird's classic REST API has no idempotency key, so a request that may have reached it
is not sent again blindly: retrying a read timeout is how a reply gets sent twice. An
uncertain reply is settled later by its delivery report, if one comes.

The breaker is shared by every send of a worker. After ``threshold`` consecutive
``GatewayUnavailable`` it opens: sends wait until ``cooldown_s`` has passed, then one probe
goes through; its success closes the breaker, its failure opens it again. Waiting and failed
probes do not count against a reply's ``max_attempts``: a provider outage delays replies
instead of failing them (they wait in Kafka), while a reply the provider keeps refusing
with 5xx when it answers others fails after ``max_attempts`` calls and is refunded. A
reply that was the probe so often that it reached ``max_calls`` fails too (each of those
calls was refused: nothing was sent). Any exception during the probe gives it back (a
reply whose number does not open must not hold the breaker half-open for ever).

``send_replies`` (streams/stages/send.py) sends in batches: ``deliver`` runs for every reply of a
batch at once, bounded by ``slots`` (the sending threads), and ``GroupCommit`` stores what
they journal at about the same time (the batch's attempts, their outcomes) in one
acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from infra.gateway import (
    GatewayConnectionLost,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
)
from schemas.reasons import (
    CONNECTION_LOST,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    TIMEOUT,
    UNREADABLE_ANSWER,
)

log = logging.getLogger("antirelou.sending")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # > the breaker threshold: an outage opens the breaker first
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_calls: int = 20  # every call of one reply, failed probes included: a hard cap
    # (at least max_attempts: more attempts asked for raise the cap with them)

    @property
    def call_cap(self) -> int:
        return max(self.max_calls, self.max_attempts)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if not 0 <= self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


class CircuitBreaker:
    """Closed -> (threshold consecutive failures) -> open -> (cooldown) -> one probe."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or cooldown_s <= 0:
            raise ValueError("threshold must be >= 1 and cooldown_s > 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened = 0  # how many times it opened, for /health and tests

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    async def acquire(self) -> bool:
        """Wait until a call may go out; True when this call is the half-open probe."""
        while True:
            if self._opened_at is None:
                return False
            if not self._probing and self._clock() - self._opened_at >= self.cooldown_s:
                self._probing = True
                return True
            wait = self.cooldown_s - (self._clock() - self._opened_at)
            await asyncio.sleep(min(max(wait, 0.05), 0.5))

    def success(self, probe: bool) -> None:
        self._failures = 0
        if self._opened_at is not None:
            log.warning("MessageBird answers again: circuit closed")
            self._opened_at = None
        if probe:
            self._probing = False

    def failure(self, probe: bool) -> None:
        self._failures += 1
        if probe:
            self._probing = False
            self._opened_at = self._clock()  # still down: wait another cooldown
        elif self._opened_at is None and self._failures >= self.threshold:
            self._opened_at = self._clock()
            self.opened += 1
            log.warning("MessageBird unavailable %d times in a row: circuit open for %g s",
                        self._failures, self.cooldown_s)

    def release(self, probe: bool) -> None:
        """The probe ended with an outcome that says nothing about availability."""
        if probe:
            self._probing = False


@dataclass(frozen=True)
class Outcome:
    kind: str  # "sent" | "failed" | "uncertain"
    attempts: int
    result: SendResult | None = None
    error: GatewayError | None = None
    # Why it was not sent ("failed": FAILURE_REASONS) or may have been ("uncertain":
    # UNCERTAIN_REASONS), from schemas.reasons.
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.reason is None) != (self.kind == "sent"):
            raise ValueError(f"a {self.kind} outcome with reason {self.reason!r}")

    @property
    def retryable(self) -> bool:
        return isinstance(self.error, GatewayUnavailable)


def uncertain_reason(error: GatewayError) -> str:
    """Why a reply whose call raised ``error`` (not ``GatewayUnavailable`` nor
    ``GatewayRejected``: those prove nothing was sent) may have been sent."""
    if isinstance(error, GatewayTimeout):
        return TIMEOUT
    if isinstance(error, GatewayConnectionLost):
        return CONNECTION_LOST
    return UNREADABLE_ANSWER


async def deliver(
    call: Callable[[], Awaitable[SendResult]],
    before_attempt: Callable[[int], Awaitable[None]],
    *,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    slots: asyncio.Semaphore | None = None,
) -> Outcome:
    """Send with retries; ``before_attempt(n)`` runs (and must persist) before each call.

    ``slots`` bounds the calls under way at once (a worker's sending threads): a slot is
    taken before the breaker is asked, so a call never waits for a thread after the
    breaker let it through (it could have opened meanwhile), and it is given back during
    the backoff, so a reply that is retried does not hold up the others.
    """
    rng = rng or random.Random()
    attempt = failures = 0
    while True:
        delay = None
        async with slots if slots is not None else contextlib.nullcontext():
            probe = await breaker.acquire()
            attempt += 1
            try:
                await before_attempt(attempt)
                result = await call()
            except GatewayUnavailable as exc:
                breaker.failure(probe)
                if not probe:  # a failed probe says the provider is down, not this reply
                    failures += 1
                    if failures >= retry.max_attempts:
                        return Outcome("failed", attempt, error=exc, reason=PROVIDER_UNAVAILABLE)
                    delay = retry.delay(failures, rng)
                if attempt >= retry.call_cap:
                    return Outcome("failed", attempt, error=exc, reason=PROVIDER_UNAVAILABLE)
            except GatewayRejected as exc:
                breaker.release(probe)
                return Outcome("failed", attempt, error=exc, reason=PROVIDER_REJECTED)
            except GatewayError as exc:  # the request may have reached the provider
                breaker.release(probe)
                return Outcome("uncertain", attempt, error=exc, reason=uncertain_reason(exc))
            except BaseException:  # not the gateway's (a number that does not open, a
                breaker.release(probe)  # cancelled task): the probe must not stay taken
                raise
            else:
                breaker.success(probe)
                return Outcome("sent", attempt, result=result)
        if delay is not None:
            await sleep(delay)


class GroupCommit:
    """One acknowledged write for what concurrent senders journal at about the same time.

    ``await commit.write(events, flush=...)`` returns once ``events`` are stored: the
    events of every caller that arrived while the previous write was under way go out
    together in the next one (and its ``flush`` if any caller asked for it), so a batch of
    replies costs one broker round trip for its attempts and about one for its outcomes,
    not two per reply. A failed write fails every caller of that write.
    """

    def __init__(self, store: Callable[[list[Any], bool], Awaitable[None]]) -> None:
        self._store = store
        self._events: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush = False
        self._task: asyncio.Task[None] | None = None
        self.writes = 0  # round trips so far, for tests and benchmarks

    async def write(self, events: Sequence[Any], flush: bool = False) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events.extend(events)
        self._waiters.append(waiter)
        self._flush = self._flush or flush
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        await waiter

    async def _drain(self) -> None:
        try:
            while self._waiters:
                events, waiters, flush = self._events, self._waiters, self._flush
                self._events, self._waiters, self._flush = [], [], False
                self.writes += 1
                try:
                    await self._store(events, flush)
                except asyncio.CancelledError:
                    for w in waiters + self._waiters:
                        w.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to every caller
                    for w in waiters:
                        if not w.done():
                            w.set_exception(exc)
                    continue
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._task = None
