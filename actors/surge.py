"""Surge detection on first texts per minute, and a bounded queue for deferred replies.

**Surge.** ``SurgeState`` counts first texts (texts from senders never seen before) in the
current UTC minute (``minute = now // 60_000``) and keeps the counts of up to
``BASELINE_MINUTES`` (60) previous minutes in a bounded list; minutes without texts count
as 0. The baseline is the plain mean of that list, compared in integers
(``count * len(history) > multiple * sum(history)``, so no division and no rounding). The
current minute is a surge when it exceeds ``multiple`` x baseline and has at least
``min_rate`` first texts; with no history yet the baseline is 0 and ``min_rate`` decides.

While a surge is active, completed minutes are *not* added to the history: the baseline stays
the pre-surge one, so a flood lasting hours does not become its own normal and stay answered.

Hysteresis: ``surge_transition`` returns ``"enter"`` when the current minute surges and the
state was calm, and ``"leave"`` when it is active and more than ``exit_quiet_minutes`` full
minutes have passed since the last surging minute it saw; the caller turns these into
events. Call ``surge_observe`` then ``surge_transition`` for each first text (and on a timer
if leaving should be noticed without traffic). Both update the state in place;
``surge_level`` only reads it.

**Deferral queue.** ``DeferralQueue`` holds replies put off during a surge, at most
``capacity`` of them. Priority: fewer texts from the sender first, then the earlier
enqueued, then the smaller message id (a total order, so replays tie-break identically).
``push`` into a full queue evicts the lowest-priority item (possibly the one pushed) and
returns it; ``pop_ready`` first drops items older than the TTL and returns them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

MINUTE_MS = 60_000
BASELINE_MINUTES = 60
NO_MINUTE = -1  # SurgeState.minute before the first observed text

Transition = Literal["enter", "leave"]


@dataclass(slots=True)
class SurgeState:
    minute: int = NO_MINUTE  # the UTC minute (epoch ms // 60_000) that ``count`` belongs to
    count: int = 0  # first texts seen in that minute
    history: list[int] = field(default_factory=list)  # counts of previous minutes, oldest first
    active: bool = False
    last_surge_minute: int = NO_MINUTE  # the last minute seen surging by surge_transition

    def to_dict(self) -> dict[str, Any]:
        return {"minute": self.minute, "count": self.count, "history": list(self.history),
                "active": self.active, "last_surge_minute": self.last_surge_minute}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurgeState:
        return cls(minute=data["minute"], count=data["count"], history=list(data["history"]),
                   active=bool(data["active"]), last_surge_minute=data["last_surge_minute"])


def _rolled(state: SurgeState, now: int) -> tuple[int, int, list[int]]:
    """``(minute, count, history)`` as seen from ``now``, without touching the state.

    Minutes never move back: a late text counts in the current minute."""
    minute = now // MINUTE_MS
    if state.minute == NO_MINUTE:
        return minute, 0, state.history
    if minute <= state.minute:
        return state.minute, state.count, state.history
    if state.active:  # the baseline is frozen during a surge
        return minute, 0, state.history
    idle = min(minute - state.minute - 1, BASELINE_MINUTES)
    history = (state.history + [state.count] + [0] * idle)[-BASELINE_MINUTES:]
    return minute, 0, history


def _roll(state: SurgeState, now: int) -> None:
    state.minute, state.count, state.history = _rolled(state, now)


def _surging(count: int, history: list[int], multiple: int, min_rate: int) -> bool:
    return count >= min_rate and count * max(1, len(history)) > multiple * sum(history)


def surge_roll(state: SurgeState, now: int) -> None:
    """Move the state to the minute of ``now`` (never back); an event's time, so a replay
    rolls at the same moments."""
    _roll(state, now)


def surge_now(state: SurgeState, multiple: int, min_rate: int) -> bool:
    """Whether the state's current minute surges (after ``surge_roll``/``surge_observe``)."""
    return _surging(state.count, state.history, multiple, min_rate)


def surge_observe(state: SurgeState, now: int) -> None:
    """Count one first text at ``now``."""
    _roll(state, now)
    state.count += 1


def surge_level(state: SurgeState, now: int, multiple: int, min_rate: int) -> bool:
    """Whether the minute of ``now`` has > ``multiple`` x baseline and >= ``min_rate`` first texts."""
    _, count, history = _rolled(state, now)
    return _surging(count, history, multiple, min_rate)


def surge_transition(
    state: SurgeState, now: int, multiple: int, min_rate: int, exit_quiet_minutes: int
) -> Transition | None:
    """``"enter"``, ``"leave"`` or None; updates ``active`` (and the surge bookkeeping) in place."""
    _roll(state, now)
    if _surging(state.count, state.history, multiple, min_rate):
        state.last_surge_minute = state.minute
        if not state.active:
            state.active = True
            return "enter"
        return None
    if state.active and state.minute - state.last_surge_minute > exit_quiet_minutes:
        state.active = False
        return "leave"
    return None


class Deferred(NamedTuple):
    message_id: str
    priority_key: int  # texts from the sender so far: fewer is served first
    enqueued_at: int  # epoch ms


def _rank(item: Deferred) -> tuple[int, int, str]:
    return item.priority_key, item.enqueued_at, item.message_id


@dataclass(slots=True)
class DeferralQueue:
    capacity: int
    items: list[Deferred] = field(default_factory=list)  # highest priority first
    _ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("a deferral queue needs capacity >= 1")
        self.items = sorted((Deferred(*i) for i in self.items), key=_rank)
        self._ids = {i.message_id for i in self.items}

    def __len__(self) -> int:
        return len(self.items)

    def push(self, item: Deferred) -> Deferred | None:
        """Queue ``item``; return the item evicted to stay within capacity, if any.

        A message id already queued is ignored (at-least-once delivery), returning None."""
        if item.message_id in self._ids:
            return None
        bisect.insort(self.items, item, key=_rank)
        self._ids.add(item.message_id)
        if len(self.items) <= self.capacity:
            return None
        evicted = self.items.pop()
        self._ids.discard(evicted.message_id)
        return evicted

    def remove(self, message_id: str) -> Deferred | None:
        """Take one item out (released or expired); None when it is not queued."""
        if message_id not in self._ids:
            return None
        for i, item in enumerate(self.items):
            if item.message_id == message_id:
                self._ids.discard(message_id)
                return self.items.pop(i)
        return None  # pragma: no cover - _ids and items agree

    def pop_ready(self, now: int, ttl_ms: int) -> tuple[Deferred | None, list[Deferred]]:
        """``(best item or None, expired items)``: items enqueued more than ``ttl_ms`` before
        ``now`` are dropped and returned (in priority order); then the best remaining is popped."""
        expired = [i for i in self.items if now - i.enqueued_at > ttl_ms]
        if expired:
            self.items = [i for i in self.items if now - i.enqueued_at <= ttl_ms]
            self._ids.difference_update(i.message_id for i in expired)
        if not self.items:
            return None, expired
        ready = self.items.pop(0)
        self._ids.discard(ready.message_id)
        return ready, expired

    def to_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "items": [list(i) for i in self.items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeferralQueue:
        return cls(capacity=data["capacity"], items=[Deferred(*i) for i in data["items"]])
