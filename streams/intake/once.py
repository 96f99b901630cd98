"""Each provider event stored once, and never refused for having been tried: the rule of
both providers' webhooks (MessageBird classic's texts and delivery reports, Bird's
``sms.inbound`` and ``sms.outbound`` events).

Providers deliver at least once: what gets no 2xx is sent again (Bird: at growing intervals
for 8 hours, "Retries" in its Notifications API; MessageBird: retried too). So:

- an event **already stored** (its 200 lost on the way back) is answered 200 with
  ``"status": "duplicate"`` and stores nothing: journaled once. Before, Bird's re-delivery
  was refused 401 ``replayed_event``, and Bird retried it for 8 hours;
- an event **not stored** (a 503: the broker away, a write that failed) leaves no trace, so
  the provider's retry is taken: its event id is released, and so is the signature's
  ``jti`` (MessageBird classic), which is spent only when what it signed was stored. Before,
  a delivery report answered 503 burned its ``jti`` and the retry was refused 401 (its price
  never settled);
- an event being stored right now, delivered again meanwhile, is answered 503 (retry).

``StoredEvents`` remembers the ids of the events stored, for ``keep_s`` (9 hours: Bird's 8
hours of retries and a margin), in buckets of ``bucket_s`` by arrival: a bucket goes only
when its newest entry is ``keep_s`` old, so no entry is forgotten before its time. It is
bounded by refusing instead: past ``max_events`` remembered, new events are answered 503
(the provider retries; about 80 bytes an event, 24 MB at the default 300,000: more than 9
hours of a 2017 launch and raid together). Ids are kept as 16-byte BLAKE2b digests. The
memory is per process, as the classic ``jti`` store is: a re-delivery reaching another
worker is stored again (and screened as a text seen before: one decision, one reply).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("antirelou")

KEEP_S = 9 * 3600.0  # Bird retries for 8 hours
BUCKET_S = 600.0
MAX_EVENTS = 300_000

NEW = "new"  # not seen: stored by the caller, then ``stored()``, or ``release()``d
STORED = "stored"  # stored before: answer 2xx, store nothing
IN_FLIGHT = "in_flight"  # being stored by another request right now: answer 503


class StoredEvents:
    """The provider events stored lately (see the module docstring)."""

    def __init__(self, keep_s: float = KEEP_S, bucket_s: float = BUCKET_S,
                 max_events: int = MAX_EVENTS) -> None:
        if keep_s <= 0 or bucket_s <= 0 or max_events < 1:
            raise ValueError("keep_s, bucket_s and max_events must be positive")
        self.keep_s = keep_s
        self.bucket_s = bucket_s
        self.max_events = max_events
        self._buckets: OrderedDict[int, set[bytes]] = OrderedDict()  # by arrival
        self._count = 0
        self._in_flight: set[bytes] = set()

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _digest(event_id: str) -> bytes:
        return hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"),
                               digest_size=16).digest()

    def _expire(self, now: float) -> None:
        while self._buckets:
            start = next(iter(self._buckets))
            if (start + 1) * self.bucket_s + self.keep_s > now:
                break  # its newest entry is not keep_s old yet
            self._count -= len(self._buckets.popitem(last=False)[1])

    def claim(self, event_id: str, now: float) -> str:
        """``NEW`` (now in flight: the caller stores it, then calls ``stored`` or
        ``release``), ``STORED`` or ``IN_FLIGHT``; ``Busy`` when the memory is full."""
        self._expire(now)
        digest = self._digest(event_id)
        if digest in self._in_flight:
            return IN_FLIGHT
        if any(digest in bucket for bucket in reversed(self._buckets.values())):
            return STORED
        if self._count + len(self._in_flight) >= self.max_events:
            raise Busy()
        self._in_flight.add(digest)
        return NEW

    def stored(self, event_id: str, now: float) -> None:
        digest = self._digest(event_id)
        self._in_flight.discard(digest)
        bucket = int(now // self.bucket_s)
        self._buckets.setdefault(bucket, set()).add(digest)
        self._buckets.move_to_end(bucket)  # a clock stepping back keeps arrival order
        self._count += 1

    def release(self, event_id: str) -> None:
        """Not stored: its next delivery is taken."""
        self._in_flight.discard(self._digest(event_id))


class Busy(Exception):
    """More unexpired events remembered than allowed: new ones are refused (503) rather
    than an old one forgotten."""


# The answers, the same for both providers' views (JSON bodies).
BEING_STORED = {"error": "unavailable", "message": "this event is being stored; retry"}
BUSY = {"error": "busy", "message": "too many events to remember; retry"}


async def store_once(events: StoredEvents, event_id: str, now: float,
                     store: Callable[[], Awaitable[Any]], accepted: dict[str, Any],
                     not_stored: Callable[[], None] = lambda: None,
                     ) -> tuple[int, dict[str, Any]]:
    """Store one provider event once: ``store()`` runs only for an event not stored
    before. The status and body to answer: 200 ``accepted`` once stored; 200 ``accepted``
    with ``"status": "duplicate"`` for an event stored before (nothing stored again); 503
    while another copy is being stored or the memory is full. When ``store()`` raises, the
    event is released and ``not_stored()`` runs (it gives the signature's ``jti`` back)
    before the exception goes on to the view (its 503)."""
    try:
        claim = events.claim(event_id, now)
    except Busy:
        not_stored()
        log.warning("webhook: %d events remembered: new events refused (503) until some "
                    "expire", len(events))
        return 503, BUSY
    if claim == STORED:
        return 200, {**accepted, "status": "duplicate"}
    if claim == IN_FLIGHT:
        not_stored()
        return 503, BEING_STORED
    try:
        await store()
    except BaseException:
        events.release(event_id)
        not_stored()
        raise
    events.stored(event_id, now)
    return 200, accepted
