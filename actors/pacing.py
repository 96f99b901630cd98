"""Budget pacing: spread the spendable budget evenly over the rest of the campaign.

A flood can only spend what the pacing allows, so a crowd of trolls drains one day's share,
not the year's. All money is integer micro-euros, all time integer epoch ms; days and hours
are UTC, computed by integer division (``day = now // DAY_MS``, ``hour = now // HOUR_MS``).

The rules:

- **daily allowance** = ``(balance at the start of today - reserve) // remaining_days``, where
  ``remaining_days`` counts the current UTC day through the one holding ``ends_at`` (at least
  1). "Balance at the start of today" is ``balance + spent_in_day``, so the allowance stays the
  same all day while replies are paid (a credit raises it). Unused allowance rolls over by
  itself: tomorrow's share is recomputed from a balance that a quiet day left higher.
- **hourly allowance** = ``daily * hourly_burst_hours // 24`` may be spent within one UTC
  hour: a reply-time burst of a few hours' worth, so a flood at 9 a.m. cannot take the whole
  day's share before noon. An hour in which nothing was spent yet always lets one reply
  through if the day has room, so a small last-days budget is never stranded by rounding.
- never below the reserve, never more than the balance.

``pacing_check`` decides without mutating; ``pacing_apply`` records a paid reply. The caller
applies it exactly when it debits the balance. Events out of order never reopen a past day:
the state's day and hour only move forward, and a late event counts against the current ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DEFAULT_HOURLY_BURST_HOURS = 2


@dataclass(slots=True)
class PacingState:
    day: int = 0  # UTC day number (epoch ms // DAY_MS) that spent_in_day belongs to
    spent_in_day: int = 0  # micro-euros
    hour: int = 0  # UTC hour number (epoch ms // HOUR_MS) that spent_in_hour belongs to
    spent_in_hour: int = 0  # micro-euros

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "spent_in_day": self.spent_in_day,
                "hour": self.hour, "spent_in_hour": self.spent_in_hour}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PacingState:
        return cls(day=data["day"], spent_in_day=data["spent_in_day"],
                   hour=data["hour"], spent_in_hour=data["spent_in_hour"])


def remaining_days(now: int, ends_at: int) -> int:
    """UTC days from the one holding ``now`` through the one holding ``ends_at - 1``; >= 1."""
    day_start = now // DAY_MS * DAY_MS
    return max(1, -(-(ends_at - day_start) // DAY_MS))


def daily_allowance(
    balance_micros: int, reserve_micros: int, spent_in_day_micros: int, now: int, ends_at: int
) -> int:
    """Today's share of the spendable budget: ``(balance + spent_in_day - reserve) // remaining_days``."""
    spendable = balance_micros + spent_in_day_micros - reserve_micros
    return max(0, spendable // remaining_days(now, ends_at))


def hourly_allowance(daily_micros: int, hourly_burst_hours: int = DEFAULT_HOURLY_BURST_HOURS) -> int:
    """What one UTC hour may spend: ``daily * hourly_burst_hours // 24``."""
    return daily_micros * hourly_burst_hours // 24


def _current(state: PacingState, now: int) -> tuple[int, int, int, int]:
    """``(day, spent_in_day, hour, spent_in_hour)`` seen from ``now``; never moves back."""
    day, hour = max(state.day, now // DAY_MS), max(state.hour, now // HOUR_MS)
    return (
        day, state.spent_in_day if day == state.day else 0,
        hour, state.spent_in_hour if hour == state.hour else 0,
    )


def pacing_check(
    state: PacingState,
    cost_micros: int,
    balance_micros: int,
    reserve_micros: int,
    now: int,
    ends_at: int,
    hourly_burst_hours: int = DEFAULT_HOURLY_BURST_HOURS,
) -> str | None:
    """None when a reply of ``cost_micros`` fits, else the reason: ``"budget_exhausted"``,
    ``"reserve_reached"``, ``"daily_allowance"`` or ``"hourly_allowance"`` (in that order)."""
    if cost_micros > balance_micros:
        return "budget_exhausted"
    if balance_micros - cost_micros < reserve_micros:
        return "reserve_reached"
    day, spent_in_day, _, spent_in_hour = _current(state, now)
    daily = daily_allowance(balance_micros, reserve_micros, spent_in_day, day * DAY_MS, ends_at)
    if spent_in_day + cost_micros > daily:
        return "daily_allowance"
    if spent_in_hour > 0 and spent_in_hour + cost_micros > hourly_allowance(daily, hourly_burst_hours):
        return "hourly_allowance"
    return None


def pacing_apply(state: PacingState, cost_micros: int, now: int) -> None:
    """Record a paid reply of ``cost_micros`` at ``now``."""
    state.day, state.spent_in_day, state.hour, state.spent_in_hour = _current(state, now)
    state.spent_in_day += cost_micros
    state.spent_in_hour += cost_micros
