"""Surge detection on first texts per minute, and a bounded queue for deferred replies.

**Surge.** ``SurgeState`` counts first texts (requests that reach the campaign) in the
current UTC minute (``minute = now // 60_000``) and keeps the counts of up to
``BASELINE_MINUTES`` (60) previous minutes in a bounded list; minutes without texts count
as 0. The baseline is a mean over ``BASELINE_MINUTES`` minutes with a **prior**: the minutes
not yet seen count as ``expected`` first texts each (the policy's
``surge_expected_per_minute``), so a fresh deployment does not compare its launch with a
zero baseline; after an hour the campaign's own history has replaced the prior. In
integers: ``count * 60 > multiple * (sum(history) + expected * (60 - len(history)))``. The
current minute is a surge when it exceeds that and has at least ``min_rate`` first texts.

While a surge is active, completed minutes are *not* added to the history: the baseline stays
the pre-surge one, so a flood lasting hours does not become its own normal. The hysteresis
(enter on a surging minute, leave after ``surge_quiet_minutes`` minutes without one) is the
campaign's (``actors.campaign``), which turns it into events.

**Deferral queue.** ``DeferralQueue`` holds replies put off during a surge, at most
``capacity`` of them, best first by ``rank``: the priority key (smaller first: the campaign
computes it from what the events say about the sender and his number range), then the
earlier enqueued, then the smaller message id (a total order, so replays tie-break
identically). ``push`` into a full queue evicts the lowest-priority item (possibly the one
pushed) and returns it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, NamedTuple

MINUTE_MS = 60_000
BASELINE_MINUTES = 60
NO_MINUTE = -1  # SurgeState.minute before the first observed text


@dataclass(slots=True)
class SurgeState:
    minute: int = NO_MINUTE  # the UTC minute (epoch ms // 60_000) that ``count`` belongs to
    count: int = 0  # first texts seen in that minute
    # Counts of previous minutes, oldest first. Replaced when a minute rolls, never changed
    # in place: a decision's copy of the state shares it (``campaign_state._copy_surge``).
    history: list[int] = field(default_factory=list)
    active: bool = False
    last_surge_minute: int = NO_MINUTE  # the last minute seen surging

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


def baseline_sum(history: list[int], expected: int) -> int:
    """First texts in the baseline's ``BASELINE_MINUTES`` minutes, unseen minutes at the prior."""
    return sum(history) + expected * max(0, BASELINE_MINUTES - len(history))


def baseline_per_minute(state: SurgeState, expected: int) -> int:
    """The baseline rate, rounded up, at least 1 (what normal traffic would let through)."""
    return max(1, -(-baseline_sum(state.history, expected) // BASELINE_MINUTES))


def surge_roll(state: SurgeState, now: int) -> None:
    """Move the state to the minute of ``now`` (never back); an event's time, so a replay
    rolls at the same moments."""
    state.minute, state.count, state.history = _rolled(state, now)


def surge_now(state: SurgeState, multiple: int, min_rate: int, expected: int) -> bool:
    """Whether the state's current minute surges (after ``surge_roll``/``surge_observe``)."""
    count = state.count
    return (count >= min_rate
            and count * BASELINE_MINUTES > multiple * baseline_sum(state.history, expected))


def surge_observe(state: SurgeState, now: int) -> None:
    """Count one first text at ``now``."""
    state.minute, state.count, state.history = _rolled(state, now)
    state.count += 1


class Deferred(NamedTuple):
    message_id: str
    priority_key: int  # smaller is served first (``actors.campaign.priority_key``)
    enqueued_at: int  # epoch ms


def rank(item: Deferred) -> tuple[int, int, str]:
    return item.priority_key, item.enqueued_at, item.message_id


@dataclass(slots=True)
class DeferralQueue:
    capacity: int
    items: list[Deferred] = field(default_factory=list)  # highest priority first
    _ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("a deferral queue needs capacity >= 1")
        self.items = sorted((Deferred(*i) for i in self.items), key=rank)
        self._ids = {i.message_id for i in self.items}

    def __len__(self) -> int:
        return len(self.items)

    def push(self, item: Deferred) -> Deferred | None:
        """Queue ``item``; return the item evicted to stay within capacity, if any.

        A message id already queued is ignored (at-least-once delivery), returning None."""
        if item.message_id in self._ids:
            return None
        bisect.insort(self.items, item, key=rank)
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

    def to_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "items": [list(i) for i in self.items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeferralQueue:
        return cls(capacity=data["capacity"], items=[Deferred(*i) for i in data["items"]])
