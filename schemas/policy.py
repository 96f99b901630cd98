"""The campaign policy: versioned, changed live by operators, recorded in every decision.

A ``Policy`` is what the decision core reads besides the state: price per segment, the
reserve (a budget floor that is never spent) and the per-sender cooldown. Version 1 comes
from the campaign file; every ``PolicyChanged`` event makes the next version.

Operators write changes as ``key=value`` in EUR and days (``price_per_segment_eur=0.07``,
``reserve_eur=50``, ``cooldown_days=30`` or ``cooldown_days=never``); the events hold them in
the core's units (micro-euros, milliseconds).

Errors::

    PolicyError           an unknown key or a value out of range
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

MICROS_PER_EUR = 1_000_000
DAY_MS = 86_400_000


class PolicyError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Policy:
    version: int
    price_per_segment_micros: int
    reserve_micros: int = 0
    cooldown_ms: int | None = None  # None: never answer a sender twice

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "price_per_segment_micros": self.price_per_segment_micros,
            "reserve_micros": self.reserve_micros,
            "cooldown_ms": self.cooldown_ms,
        }


# Core field -> (operator key, parser of the operator's text).
def parse_eur(text: str, key: str, positive: bool) -> int:
    try:
        micros = Decimal(text) * MICROS_PER_EUR
    except InvalidOperation:
        raise PolicyError(f"{key}: {text!r} is not an amount in EUR") from None
    if micros != micros.to_integral_value() or micros < 0 or (positive and micros == 0):
        raise PolicyError(f"{key}: must be {'>' if positive else '>='} 0 with at most 6 decimals")
    return int(micros)


def _days(text: str, key: str) -> int | None:
    if text.strip().lower() in ("never", "none"):
        return None
    try:
        days = Decimal(text)
    except InvalidOperation:
        raise PolicyError(f"{key}: {text!r} is not a number of days (or 'never')") from None
    if days <= 0:
        raise PolicyError(f"{key}: must be a positive number of days, or 'never'")
    return int(days * DAY_MS)


OPERATOR_KEYS = {
    "price_per_segment_eur": ("price_per_segment_micros", lambda t, k: parse_eur(t, k, True)),
    "reserve_eur": ("reserve_micros", lambda t, k: parse_eur(t, k, False)),
    "cooldown_days": ("cooldown_ms", _days),
}
CORE_FIELDS = {field for field, _ in OPERATOR_KEYS.values()}


def parse_changes(pairs: list[str]) -> dict[str, Any]:
    """``["price_per_segment_eur=0.07", ...]`` -> ``{"price_per_segment_micros": 70000, ...}``."""
    if not pairs:
        raise PolicyError("no change given; use key=value with keys " + ", ".join(OPERATOR_KEYS))
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep:
            raise PolicyError(f"{pair!r}: expected key=value")
        if key not in OPERATOR_KEYS:
            raise PolicyError(f"unknown policy key {key!r}; known: {', '.join(OPERATOR_KEYS)}")
        field, parse = OPERATOR_KEYS[key]
        changes[field] = parse(text.strip(), key)
    return changes


def check_changes(changes: dict[str, Any]) -> str | None:
    """Why these core-unit changes are invalid, or None. The core calls it: data from the log
    is checked again, not trusted to have come through ``parse_changes``."""
    if not changes:
        return "no change"
    for field, value in changes.items():
        if field not in CORE_FIELDS:
            return f"unknown policy field {field!r}"
        if field == "cooldown_ms":
            if value is not None and (not isinstance(value, int) or value <= 0):
                return "cooldown_ms must be a positive integer or null"
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{field} must be a non-negative integer"
        elif field == "price_per_segment_micros" and value == 0:
            return "price_per_segment_micros must be positive"
    return None


def apply_changes(policy: Policy, changes: dict[str, Any], version: int) -> Policy:
    return replace(policy, version=version, **changes)


def describe(policy: Policy) -> dict[str, Any]:
    """The policy in operator units, for display."""
    return {
        "version": policy.version,
        "price_per_segment_eur": str(Decimal(policy.price_per_segment_micros) / MICROS_PER_EUR),
        "reserve_eur": str(Decimal(policy.reserve_micros) / MICROS_PER_EUR),
        "cooldown_days": "never" if policy.cooldown_ms is None
        else str(Decimal(policy.cooldown_ms) / DAY_MS),
    }
