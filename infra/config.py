"""Campaign configuration: a TOML file with one ``[[campaign]]`` table per city.

Example (see ``infra/campaigns.example.toml``)::

    [[campaign]]
    id = "paris"
    number = "+33644630001"        # the virtual number texts arrive on
    reply_text = "..."
    language = "fr"
    budget_eur = "3700.00"          # strings or numbers; kept exact as micro-euros
    price_per_segment_eur = "0.08"
    start = 2017-10-16              # first day (UTC), inclusive
    end = 2018-10-15                # last day (UTC), inclusive
    # optional: country = "FR" (default: from the number), originator = "AntiRelou"
    # (default: the number), cooldown_days = 30 (default: never answer a sender twice),
    # pacing = false (default true: spread the budget over the campaign's days)

The same file declares the operators (``[[operator]]`` tables), read by
``infra.operators.load_operators``; this module ignores them.

Errors::

    ConfigError           the file is missing, not TOML, or a campaign is invalid
"""

from __future__ import annotations

import datetime as dt
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import phonenumbers

from infra.privacy import normalize_msisdn
from schemas.campaign import Campaign
from schemas.events import MICROS_PER_EUR

_DAY_MS = 86_400_000
_KNOWN = {
    "id", "number", "reply_text", "language", "budget_eur", "price_per_segment_eur",
    "start", "end", "country", "originator", "cooldown_days", "pacing",
    "provider", "bird_channel_id",  # checked by infra.providers (which provider sends)
}


class ConfigError(ValueError):
    pass


def read_campaign_file(path: str | Path) -> dict:
    """The campaign file as TOML data; ConfigError when missing or not TOML."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: campaign file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_campaigns(path: str | Path) -> list[Campaign]:
    return parse_campaigns(read_campaign_file(path), source=str(path))


def parse_campaigns(data: dict[str, Any], source: str = "<config>") -> list[Campaign]:
    tables = data.get("campaign")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{source}: no [[campaign]] tables")
    campaigns = [_campaign(t, f"{source}: campaign #{i + 1}") for i, t in enumerate(tables)]
    for attr in ("id", "number"):
        seen: set[str] = set()
        for c in campaigns:
            value = getattr(c, attr)
            if value in seen:
                raise ConfigError(f"{source}: two campaigns share the {attr} of campaign {c.id!r}")
            seen.add(value)
    return campaigns


def _campaign(t: dict[str, Any], where: str) -> Campaign:
    unknown = sorted(set(t) - _KNOWN)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    for key in ("id", "number", "reply_text", "language", "budget_eur",
                "price_per_segment_eur", "start", "end"):
        if key not in t:
            raise ConfigError(f"{where}: missing {key!r}")
    cid = _text(t, "id", where)
    where = f"{where} ({cid!r})"
    number = normalize_msisdn(_text(t, "number", where))
    if number is None:
        raise ConfigError(f"{where}: 'number' must be an international phone number")
    country = t.get("country") or phonenumbers.region_code_for_number(
        phonenumbers.parse("+" + number)
    )
    if not country or country == "ZZ":
        raise ConfigError(f"{where}: cannot tell the country of 'number'; set 'country'")
    start, end = _date(t, "start", where), _date(t, "end", where)
    if end < start:
        raise ConfigError(f"{where}: 'end' is before 'start'")
    price = _money(t, "price_per_segment_eur", where)
    if price <= 0:
        raise ConfigError(f"{where}: 'price_per_segment_eur' must be positive")
    cooldown = t.get("cooldown_days")
    if cooldown is not None and (not isinstance(cooldown, int | float) or cooldown <= 0):
        raise ConfigError(f"{where}: 'cooldown_days' must be a positive number")
    pacing = t.get("pacing", True)
    if not isinstance(pacing, bool):
        raise ConfigError(f"{where}: 'pacing' must be true or false")
    return Campaign(
        id=cid,
        number=number,
        reply_text=_text(t, "reply_text", where),
        language=_text(t, "language", where),
        country=str(country).upper(),
        budget_micros=_money(t, "budget_eur", where),
        price_per_segment_micros=price,
        starts_at=_epoch_ms(start),
        ends_at=_epoch_ms(end) + _DAY_MS,
        originator=str(t.get("originator") or number),
        cooldown_ms=None if cooldown is None else int(cooldown * _DAY_MS),
        pacing=pacing,
    )


def _text(t: dict[str, Any], key: str, where: str) -> str:
    value = t[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def _money(t: dict[str, Any], key: str, where: str) -> int:
    try:
        eur = Decimal(str(t[key]))
    except InvalidOperation:
        raise ConfigError(f"{where}: {key!r} is not an amount in EUR") from None
    micros = eur * MICROS_PER_EUR
    if micros != micros.to_integral_value() or micros < 0:
        raise ConfigError(f"{where}: {key!r} must be >= 0 with at most 6 decimals")
    return int(micros)


def _date(t: dict[str, Any], key: str, where: str) -> dt.date:
    value = t[key]
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise ConfigError(f"{where}: {key!r} must be a TOML date like 2017-10-16")
    return value


def _epoch_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
