"""The campaign policy: versioned, changed live by operators, recorded in every decision.

A ``Policy`` is what the decision core reads besides the state: price per segment, the
reserve (a budget floor that is never spent) and the per-sender cooldown. Version 1 comes
from the campaign file; every ``PolicyChanged`` event makes the next version.

Operators write changes as ``key=value`` in EUR, days and minutes (``price_per_segment_eur=0.07``,
``reserve_eur=50``, ``cooldown_days=30`` or ``never``, ``allowed_countries=FR,BE``,
``blocked_prefixes=33-756,33-757``, ``sender_burst=5``, ``sender_period_minutes=10``,
``filter_test_texts=false``, ``pacing=false``, ``allowance_burst_percent=40``,
``prefix_burst=20``, ``prefix_period_minutes=1``, ``reply_delay_minutes=30``,
``surge_multiple=5`` (or ``off``), ``surge_min_rate=10``, ``surge_expected_per_minute=3``,
``surge_quiet_minutes=10``, ``surge_queue=20000``, ``surge_watch_minutes=5``,
``surge_ttl_minutes=360``, ``surge_release_per_minute=0`` (0: as fast as the allowance
allows), ``surge_spend_percent=50``); the events hold them in the core's units
(micro-euros, milliseconds).

Errors::

    PolicyError           an unknown key or a value out of range
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

MICROS_PER_EUR = 1_000_000
DAY_MS = 86_400_000


class PolicyError(ValueError):
    pass


TUPLE_FIELDS = ("allowed_countries", "blocked_prefixes")


@dataclass(frozen=True, slots=True)
class Policy:
    version: int
    price_per_segment_micros: int
    reserve_micros: int = 0
    cooldown_ms: int | None = None  # None: never answer a sender twice
    # Who may be answered: valid mobile numbers of these countries (the campaign's own by
    # default), outside these coarse ranges ("33-756": country code - 3 national digits).
    allowed_countries: tuple[str, ...] = ()
    blocked_prefixes: tuple[str, ...] = ()
    # A sender sending more than ``sender_burst`` texts faster than one per
    # ``sender_period_ms`` is a flooder: logged, never answered again.
    sender_burst: int = 5
    sender_period_ms: int = 10 * 60_000
    filter_test_texts: bool = True  # "test", "c'est vrai ce numéro ?" are not answered
    # The allowance (actors.pacing): a token bucket refilled over the time left until the end
    # date, holding at most ``burst_percent`` % of the spendable balance. Off: the budget
    # and the reserve are the only bounds.
    pacing: bool = True
    burst_percent: int = 40
    # Per number range ("33-612"): more than ``prefix_burst`` first texts faster than one per
    # ``prefix_period_ms`` are denied ``prefix_flood`` (SIM-rotating trolls). 0: off (the
    # ranges' load still ranks the surge queue).
    prefix_burst: int = 0
    prefix_period_ms: int = 60_000
    # The safety delay: every request waits this long in the queue after its text, then is
    # judged on what the events showed by then (``actors.evidence``) and, if paid, sent at
    # once. The 2017 number delayed its replies about an hour so that the woman could leave
    # before the pest learned the number was fake; 30 minutes keeps most of that and the
    # promise: genuine pests answered within 60 minutes (p95) outside raids. 0: requests are
    # decided as they come (deferred only during a surge, for ``surge_watch_ms``).
    reply_delay_ms: int = 30 * 60_000
    # Surges: when first texts in a minute exceed ``surge_multiple`` x the baseline (the mean
    # of the last hour's minutes, unseen minutes at ``surge_expected_per_minute``; texts
    # carrying a raid's words left out) and ``surge_min_rate``, that minute's requests are a
    # surge's cohort: at the end of their delay (at least ``surge_watch_ms`` during a surge)
    # those whose words are not a raid's wait ranked (``ReplyHeldBack``) and are released as
    # the allowance allows while the surge has spent less than its spend bound (the surges
    # of one TTL share ``surge_spend_percent`` % of the allowance before them), at most
    # ``surge_release_per_minute`` a minute (0: no limit). A queue of at most
    # ``surge_queue``; what is still waiting after ``surge_ttl_ms`` expires. The surge ends
    # after ``surge_quiet_minutes`` quiet minutes. ``surge_multiple`` 0: off.
    # ``surge_human_percent``: read by older journals only.
    surge_multiple: int = 5
    surge_min_rate: int = 10
    surge_expected_per_minute: int = 3
    surge_quiet_minutes: int = 10
    surge_queue: int = 20_000
    surge_watch_ms: int = 5 * 60_000
    surge_ttl_ms: int = 6 * 3_600_000
    surge_release_per_minute: int = 0
    surge_human_percent: int = 10
    surge_spend_percent: int = 50

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in TUPLE_FIELDS:
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        return cls(**_normalise(data))


# The policy of a campaign the config no longer knows (texts stored before it was removed):
# the defaults. The campaign stage then denies them (unknown_campaign).
UNKNOWN_CAMPAIGN_POLICY = Policy(version=1, price_per_segment_micros=1)


def _normalise(changes: dict[str, Any]) -> dict[str, Any]:
    # JSON gives lists; the policy holds tuples, so that equal policies compare equal.
    return {k: tuple(v) if k in TUPLE_FIELDS and v is not None else v for k, v in changes.items()}


# Core field -> (operator key, parser of the operator's text).
# Amounts above this are a typo (and past it, a balance would outgrow a 64-bit integer).
MAX_EUR = 1_000_000_000
# Policy values travel as JSON numbers: above 2**53 a browser (the dashboard) misreads them.
MAX_VALUE = 2**53


def parse_eur(text: str, key: str, positive: bool) -> int:
    if not _AMOUNT.match(text.strip()):  # Decimal takes "1e3", "NaN", "Infinity"
        raise PolicyError(f"{key}: {text!r} is not an amount in EUR (write it like 250.00)")
    try:
        micros = Decimal(text) * MICROS_PER_EUR
    except InvalidOperation:
        raise PolicyError(f"{key}: {text!r} is not an amount in EUR") from None
    if micros != micros.to_integral_value() or micros < 0 or (positive and micros == 0):
        raise PolicyError(f"{key}: must be {'>' if positive else '>='} 0 with at most 6 decimals")
    if micros > MAX_EUR * MICROS_PER_EUR:
        raise PolicyError(f"{key}: {text.strip()} is more than EUR {MAX_EUR:,}: not an amount "
                          "this system takes")
    return int(micros)


def _decimal(text: str, key: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise PolicyError(f"{key}: {text!r} is not {what}") from None
    if not value.is_finite():  # "NaN", "Infinity"
        raise PolicyError(f"{key}: {text!r} is not {what}")
    return value


def _days(text: str, key: str) -> int | None:
    if text.strip().lower() in ("never", "none"):
        return None
    days = _decimal(text, key, "a number of days (or 'never')")
    if int(days * DAY_MS) <= 0:
        raise PolicyError(f"{key}: must be a positive number of days, or 'never'")
    return int(days * DAY_MS)


def _bool(text: str, key: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise PolicyError(f"{key}: {text!r} is not true or false")


def _count(text: str, key: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise PolicyError(f"{key}: must be a whole number >= 1")
    return int(text)


def _minutes(text: str, key: str) -> int:
    minutes = _decimal(text, key, "a number of minutes")
    if int(minutes * 60_000) <= 0:
        raise PolicyError(f"{key}: must be positive (at least a millisecond)")
    return int(minutes * 60_000)


def _count_or_off(text: str, key: str) -> int:
    if text.strip().lower() in ("off", "0", "none"):
        return 0
    return _count(text, key)


def _minutes_or_zero(text: str, key: str) -> int:
    minutes = _decimal(text, key, "a number of minutes")
    if minutes < 0:
        raise PolicyError(f"{key}: must be 0 or more")
    return int(minutes * 60_000)


def _delay(text: str, key: str) -> int:
    ms = _minutes_or_zero(text, key)
    if ms > MAX_REPLY_DELAY_MS:
        raise PolicyError(f"{key}: at most {MAX_REPLY_DELAY_MS // 60_000} minutes (a day)")
    return ms


def _ttl(text: str, key: str) -> int:
    ms = _minutes(text, key)
    if ms > MAX_TTL_MS:
        raise PolicyError(f"{key}: at most {MAX_TTL_MS // 60_000} minutes (a week)")
    return ms


MAX_REPLY_DELAY_MS = 24 * 3_600_000
MAX_TTL_MS = 7 * 24 * 3_600_000


def policy_problem(policy: Policy) -> str | None:
    """Why this policy, its fields valid one by one, cannot work as a whole (None: it can).
    The core refuses a change to such a policy; the command line and the campaign file say
    so in one line."""
    if policy.surge_ttl_ms <= max(policy.reply_delay_ms, policy.surge_watch_ms):
        longest = ("reply_delay_minutes" if policy.reply_delay_ms >= policy.surge_watch_ms
                   else "surge_watch_minutes")
        return (f"surge_ttl_minutes ({policy.surge_ttl_ms // 60_000}) must be longer than "
                f"{longest} ({max(policy.reply_delay_ms, policy.surge_watch_ms) // 60_000}): "
                "every request would expire before it is judged")
    if policy.reply_delay_ms > MAX_REPLY_DELAY_MS or policy.surge_ttl_ms > MAX_TTL_MS:
        return "reply_delay_minutes at most a day, surge_ttl_minutes at most a week"
    return None


def _percent(text: str, key: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise PolicyError(f"{key}: must be a whole number of percent, 1 to 100")
    return int(text)


def _percent_or_zero(text: str, key: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 100:
        raise PolicyError(f"{key}: must be a whole number of percent, 0 to 100")
    return int(text)


def _list(text: str, key: str) -> list[str]:
    if text.strip().lower() in ("", "none"):
        return []
    items = [item.strip().upper() for item in text.split(",") if item.strip()]
    if key == "allowed_countries":
        import phonenumbers  # only for operator input: the core never needs it

        bad = [c for c in items if c not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise PolicyError(f"{key}: {', '.join(bad)} not ISO country codes (e.g. FR,BE)")
    elif key == "blocked_prefixes":
        bad = [p for p in items if not _PREFIX.match(p)]
        if bad:
            raise PolicyError(f"{key}: {', '.join(bad)}: write a range as country code - 3 "
                              "digits, e.g. 33-756")
    return items


_AMOUNT = re.compile(r"^-?\d+(\.\d+)?$")  # the sign is checked below
_PREFIX = re.compile(r"^\d{1,3}-\d{3}$")


OPERATOR_KEYS = {
    "price_per_segment_eur": ("price_per_segment_micros", lambda t, k: parse_eur(t, k, True)),
    "reserve_eur": ("reserve_micros", lambda t, k: parse_eur(t, k, False)),
    "cooldown_days": ("cooldown_ms", _days),
    "allowed_countries": ("allowed_countries", _list),
    "blocked_prefixes": ("blocked_prefixes", _list),
    "sender_burst": ("sender_burst", _count),
    "sender_period_minutes": ("sender_period_ms", _minutes),
    "filter_test_texts": ("filter_test_texts", _bool),
    "pacing": ("pacing", _bool),
    "allowance_burst_percent": ("burst_percent", _percent),
    "prefix_burst": ("prefix_burst", _count_or_off),
    "prefix_period_minutes": ("prefix_period_ms", _minutes),
    "reply_delay_minutes": ("reply_delay_ms", _delay),
    "surge_multiple": ("surge_multiple", _count_or_off),
    "surge_min_rate": ("surge_min_rate", _count),
    "surge_expected_per_minute": ("surge_expected_per_minute", _count),
    "surge_quiet_minutes": ("surge_quiet_minutes", _count),
    "surge_queue": ("surge_queue", _count),
    "surge_watch_minutes": ("surge_watch_ms", _minutes_or_zero),
    "surge_ttl_minutes": ("surge_ttl_ms", _ttl),
    "surge_release_per_minute": ("surge_release_per_minute", _count_or_off),
    "surge_spend_percent": ("surge_spend_percent", _percent_or_zero),
}
MAX_SURGE_QUEUE = 100_000  # the queue is part of every campaign snapshot
# Fields older journals changed that no rule reads any more: still valid in their events.
LEGACY_FIELDS = frozenset({"surge_human_percent"})
CORE_FIELDS = {field for field, _ in OPERATOR_KEYS.values()} | LEGACY_FIELDS


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
            import difflib

            close = difflib.get_close_matches(key, OPERATOR_KEYS, n=1)
            raise PolicyError(f"unknown policy key {key!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; known: {', '.join(OPERATOR_KEYS)}")
        field, parse = OPERATOR_KEYS[key]
        value = parse(text.strip(), key)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_VALUE:
            raise PolicyError(f"{key}: {text.strip()} is too large")
        changes[field] = value
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
        elif field in TUPLE_FIELDS:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                return f"{field} must be a list of strings"
        elif field in ("filter_test_texts", "pacing"):
            if not isinstance(value, bool):
                return f"{field} must be true or false"
        elif field in ("sender_burst", "sender_period_ms", "prefix_period_ms", "surge_min_rate",
                       "surge_quiet_minutes", "surge_queue", "surge_ttl_ms",
                       "surge_expected_per_minute", "burst_percent"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                return f"{field} must be a positive integer"
            if field == "surge_queue" and value > MAX_SURGE_QUEUE:
                return f"surge_queue must be at most {MAX_SURGE_QUEUE}"
            if field == "burst_percent" and value > 100:
                return f"{field} must be at most 100"
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{field} must be a non-negative integer"
        elif field in ("surge_human_percent", "surge_spend_percent") and value > 100:
            return f"{field} must be at most 100"
        elif field == "price_per_segment_micros" and value == 0:
            return "price_per_segment_micros must be positive"
    return None


def apply_changes(policy: Policy, changes: dict[str, Any], version: int) -> Policy:
    return replace(policy, version=version, **_normalise(changes))


def next_version(current: Policy, version: int, changes: dict[str, Any]) -> Policy | None:
    """Policy ``version`` from a ``PolicyChanged`` (its ``version`` and ``changes``) on top of
    ``current``; None unless it is the version right after ``current`` (a repeat, or one
    that comes before the version it builds on). The one rule of the chain of versions: the
    campaign (``evolve_campaign``), the workers' live policies (``follow_policies``) and the
    audit (``PolicyChain``) all go through it."""
    if version != current.version + 1:
        return None
    return apply_changes(current, changes, version)


class PolicyChain:
    """Every known version of one campaign's policy, from version 1 (the config). Changes may
    be learnt out of order: one that comes early waits until the versions before it are
    known."""

    __slots__ = ("versions", "_early")

    def __init__(self, first: Policy) -> None:
        self.versions = [first]  # index = version - 1
        self._early: dict[int, dict[str, Any]] = {}

    def learn(self, version: int, changes: dict[str, Any]) -> None:
        """A ``PolicyChanged``'s version and changes (a repeat changes nothing)."""
        versions = self.versions
        if version > len(versions):
            self._early.setdefault(version, changes)
        while len(versions) + 1 in self._early:
            nxt = len(versions) + 1
            policy = next_version(versions[-1], nxt, self._early.pop(nxt))
            assert policy is not None  # nxt is the next version by construction
            versions.append(policy)

    def policy_at(self, version: int) -> Policy | None:
        """Policy ``version``, None while it (or one before it) is not known."""
        return self.versions[version - 1] if 0 < version <= len(self.versions) else None

    @property
    def latest(self) -> Policy:
        return self.versions[-1]

    @property
    def waiting(self) -> int:
        """The highest version learnt that waits for a version before it (0: none)."""
        return max(self._early, default=0)


def describe(policy: Policy) -> dict[str, Any]:
    """The policy in operator units, for display."""
    return {
        "version": policy.version,
        "price_per_segment_eur": str(Decimal(policy.price_per_segment_micros) / MICROS_PER_EUR),
        "reserve_eur": str(Decimal(policy.reserve_micros) / MICROS_PER_EUR),
        "cooldown_days": "never" if policy.cooldown_ms is None
        else str(Decimal(policy.cooldown_ms) / DAY_MS),
        "allowed_countries": ",".join(policy.allowed_countries),
        "blocked_prefixes": ",".join(policy.blocked_prefixes) or "none",
        "sender_burst": policy.sender_burst,
        "sender_period_minutes": str(Decimal(policy.sender_period_ms) / 60_000),
        "filter_test_texts": policy.filter_test_texts,
        "pacing": policy.pacing,
        "allowance_burst_percent": policy.burst_percent,
        "prefix_burst": policy.prefix_burst or "off",
        "prefix_period_minutes": str(Decimal(policy.prefix_period_ms) / 60_000),
        "reply_delay_minutes": str(Decimal(policy.reply_delay_ms) / 60_000),
        "surge_multiple": policy.surge_multiple or "off",
        "surge_min_rate": policy.surge_min_rate,
        "surge_expected_per_minute": policy.surge_expected_per_minute,
        "surge_quiet_minutes": policy.surge_quiet_minutes,
        "surge_queue": policy.surge_queue,
        "surge_watch_minutes": str(Decimal(policy.surge_watch_ms) / 60_000),
        "surge_ttl_minutes": str(Decimal(policy.surge_ttl_ms) / 60_000),
        "surge_release_per_minute": policy.surge_release_per_minute or "no limit",
        "surge_spend_percent": policy.surge_spend_percent,
    }
