"""Generic Cell Rate Algorithm (GCRA) on event time: a rate limit with a burst.

At most ``burst`` events at once, then one per ``period_ms``; idle time restores the burst.
The state is one integer, the theoretical arrival time ``tat`` (epoch ms): the time at which
the limited stream would be "on schedule" again. An event at ``now`` is allowed when
``tat - now <= (burst - 1) * period_ms``; an allowed event moves ``tat`` to
``max(tat, now) + period_ms``.

Pure: no clock, the time is the event's ``occurred_at``. ``gcra_check`` decides without
mutating; ``gcra_apply`` records an allowed event (the shell applies it when it persists the
decision, so a replay reproduces the same state).

Out-of-order events (``now`` earlier than an earlier event's) never crash and never let more
through than the limit: ``tat`` only grows, so a late event sees a larger debt. Over any
window of length ``W`` ms (in event time, whatever the arrival order) at most
``burst + W // period_ms`` events are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Gcra:
    tat: int = 0  # theoretical arrival time, epoch ms

    def to_dict(self) -> dict[str, Any]:
        return {"tat": self.tat}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gcra:
        return cls(tat=data["tat"])


def gcra_check(state: Gcra, now: int, period_ms: int, burst: int) -> tuple[bool, int]:
    """``(allowed, new_tat)`` for an event at ``now``; ``new_tat == state.tat`` when refused.

    Raises ``ValueError`` unless ``period_ms >= 1`` and ``burst >= 1``.
    """
    if period_ms < 1 or burst < 1:
        raise ValueError("gcra needs period_ms >= 1 and burst >= 1")
    tat = state.tat
    if tat - now > (burst - 1) * period_ms:
        return False, tat
    return True, (tat if tat > now else now) + period_ms  # max(tat, now): no builtin call


def gcra_apply(state: Gcra, new_tat: int) -> None:
    """Record an allowed event: ``tat`` becomes ``new_tat`` (it never moves back)."""
    if new_tat > state.tat:
        state.tat = new_tat
