"""The campaign model: what a campaign is and the policy its decisions follow.

A ``Campaign`` is plain data (no I/O); ``infra.config`` builds it from the TOML file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    number: str  # the campaign's virtual number, E.164 digits without '+'
    reply_text: str
    language: str
    country: str  # ISO 3166 region of the number, e.g. "FR"
    budget_micros: int  # initial budget, micro-euros
    price_per_segment_micros: int
    starts_at: int  # epoch ms, inclusive
    ends_at: int  # epoch ms, exclusive
    originator: str  # what the reply shows as its sender (number or alphanumeric id)
    cooldown_ms: int | None = None  # None: a sender is never answered twice
    pacing: bool = True  # spread the budget over the campaign's days (policy, changeable live)
    # The config's [campaign.policy]: changes (core units) to the defaults, for version 1.
    policy: tuple[tuple[str, object], ...] = ()
