"""The allowance: a token bucket that funds demand and guarantees the number survives.

A launch is when genuine pests come (2017: 10,000 texts in 48 h on a EUR 3,700 budget); a
linear share of a year's budget (EUR 10 a day) cannot pay it. So the spendable balance
(``balance - reserve``) is split in two parts:

- **tokens**: money released for spending now. A reply is paid from the tokens; when they
  cannot pay it the reply is denied ``allowance`` (and the sender is answered on a later
  text, once the bucket has refilled: screening reopens a denied sender).
- **locked**: the rest, ``spendable - tokens``. It is released into the tokens linearly over
  the time left until ``ends_at``: ``released = locked * elapsed // (ends_at - since)``.
  The tokens are capped at ``burst_percent`` % of the spendable balance (the burst capacity);
  what the cap holds back stays locked.

The bucket starts full (``burst_percent`` % of the spendable budget, the launch is paid) and
refills on event time. All money is integer micro-euros, all time integer epoch ms; time
never moves back (a late event is counted at the latest time seen).

Guarantee (``tests/actors/test_allowance.py`` checks it over arbitrary traffic):
spending only takes tokens, and the locked money falls at most linearly, since the floor
division only ever releases less. So, without credits or refunds, for every time ``t`` in
``[t0, ends_at]``::

    locked(t) * (ends_at - t0) >= locked(t0) * (ends_at - t)

and the balance never goes below ``reserve + locked(t)``: whatever the traffic, the number
is never dark before its end date (some money stays for the days left, in proportion to
them), and a flood over any window ``[t1, t2]`` takes at most
``tokens(t1) + locked(t1) * (t2 - t1) // (ends_at - t1)`` — at most the burst capacity plus
that window's share of the locked money. A credit adds ``burst_percent`` % of its amount to
the tokens at once (capped), the rest to the locked money; a refund gives its tokens back.

``allowance_check`` decides without mutating; ``allowance_spend`` records a paid reply.
The caller applies it exactly when it debits the balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_BURST_PERCENT = 40
NOT_STARTED = -1  # AllowanceState.at before the first decision: the bucket is still full


@dataclass(slots=True)
class AllowanceState:
    tokens: int = 0  # micro-euros released for spending
    at: int = NOT_STARTED  # event time (epoch ms) the tokens were last refilled to

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "at": self.at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AllowanceState:
        if "tokens" not in data:  # a daily/hourly pacing state of older snapshots: start full
            return cls()
        return cls(tokens=data["tokens"], at=data["at"])


# Comparisons rather than min()/max() below: the view is taken twice for every reply decided
# (the check, then the spend), and a builtin call costs several comparisons.


def capacity(spendable: int, burst_percent: int) -> int:
    return (spendable if spendable > 0 else 0) * burst_percent // 100


def allowance_view(state: AllowanceState, balance: int, reserve: int, burst_percent: int,
                   now: int, ends_at: int) -> tuple[int, int]:
    """``(tokens, at)`` refilled to ``now`` (never back), without touching the state."""
    spendable = balance - reserve if balance > reserve else 0
    cap = capacity(spendable, burst_percent)
    last = state.at
    if last == NOT_STARTED:
        return cap, now
    until = now if now <= ends_at else ends_at
    at = until if until > last else last  # never back
    tokens = state.tokens
    tokens = 0 if tokens < 0 else spendable if tokens > spendable else tokens
    if at > last and tokens < cap:
        locked = spendable - tokens
        span = ends_at - last
        released = locked if span <= 0 else locked * (at - last) // span
        tokens = cap if tokens + released > cap else tokens + released
    return tokens, at


def allowance_left(state: AllowanceState, balance: int, reserve: int, burst_percent: int,
                   now: int, ends_at: int) -> int:
    """Micro-euros that may be spent at ``now``."""
    return allowance_view(state, balance, reserve, burst_percent, now, ends_at)[0]


def allowance_check(state: AllowanceState, cost: int, balance: int, reserve: int,
                    burst_percent: int, now: int, ends_at: int) -> str | None:
    """None when a reply of ``cost`` fits, else the reason: ``"budget_exhausted"``,
    ``"reserve_reached"`` or ``"allowance"`` (in that order)."""
    if cost > balance:
        return "budget_exhausted"
    if balance - cost < reserve:
        return "reserve_reached"
    if cost > allowance_view(state, balance, reserve, burst_percent, now, ends_at)[0]:
        return "allowance"
    return None


def allowance_spend(state: AllowanceState, cost: int, balance_before: int, reserve: int,
                    burst_percent: int, now: int, ends_at: int) -> None:
    """Record a paid reply of ``cost`` at ``now`` (``balance_before``: before the debit)."""
    tokens, state.at = allowance_view(state, balance_before, reserve, burst_percent, now, ends_at)
    state.tokens = max(0, tokens - cost)


def allowance_credit(state: AllowanceState, amount: int, balance_before: int, reserve: int,
                     burst_percent: int, now: int, ends_at: int, *, refund: bool = False) -> None:
    """Money in at ``now``: a credit releases ``burst_percent`` % of it at once, a refund (a
    reply not sent) gives all its tokens back; within the burst capacity of the new balance,
    the rest is locked."""
    if state.at == NOT_STARTED:
        return  # still full: the capacity of the new balance is its start
    tokens, state.at = allowance_view(state, balance_before, reserve, burst_percent, now, ends_at)
    cap = capacity(balance_before + amount - reserve, burst_percent)
    released = amount if refund else amount * burst_percent // 100
    state.tokens = min(cap, tokens + released)
