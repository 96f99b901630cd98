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
``infra.operators.load_operators``; this module ignores them. At its top (before the first
table), ``body_retention_days = 30``: how long texts' bodies are kept (0: never; read by
``load_body_retention_days``).

Errors::

    ConfigError           the file is missing, not TOML, or a campaign is invalid
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import phonenumbers

from infra.privacy import normalize_msisdn
from schemas.campaign import Campaign
from schemas.events import MICROS_PER_EUR
from schemas.policy import (
    MAX_EUR,
    Policy,
    PolicyError,
    apply_changes,
    parse_changes,
    policy_problem,
)

_DAY_MS = 86_400_000
_KNOWN = {
    "id", "number", "reply_text", "language", "budget_eur", "price_per_segment_eur",
    "start", "end", "country", "originator", "cooldown_days", "pacing",
    "provider", "bird_channel_id",  # checked by infra.providers (which provider sends)
    "policy",  # [campaign.policy]: operator keys for the policy's version 1
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
        raise ConfigError(f"{path}: {_bad_date(path, exc) or f'not valid TOML: {exc}'}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the campaign file: {exc}") from None


_DATE_LINE = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*=\s*(\d{4}-\d{2}-\d{2})\b")
_AMOUNT = re.compile(r"^\d+(\.\d+)?$")
_ORIGINATOR = re.compile(r"^[A-Za-z0-9]{1,11}$")


def _bad_date(path: Path, exc: tomllib.TOMLDecodeError) -> str | None:
    """TOML reads ``start = 2026-13-01`` as a syntax error: say that the date is wrong."""
    m = re.search(r"line (\d+)", str(exc))
    if not m:
        return None
    try:
        line = path.read_text(encoding="utf-8").splitlines()[int(m.group(1)) - 1]
    except (OSError, IndexError):
        return None
    date = _DATE_LINE.match(line)
    if not date:
        return None
    try:
        dt.date.fromisoformat(date.group(2))
    except ValueError as bad:
        return f"line {m.group(1)}: {date.group(1)!r}: {date.group(2)} is not a date ({bad})"
    return None


DEFAULT_BODY_RETENTION_DAYS = 30
MAX_BODY_RETENTION_DAYS = 3_650


def load_body_retention_days(path: str | Path) -> int:
    return parse_body_retention_days(read_campaign_file(path), source=str(path))


def parse_body_retention_days(data: dict[str, Any], source: str = "<config>") -> int:
    """``body_retention_days`` at the top of the file: how long a text's body is kept
    (streams.rules.retention); 0 keeps none. Default 30."""
    days = data.get("body_retention_days", DEFAULT_BODY_RETENTION_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) \
            or not 0 <= days <= MAX_BODY_RETENTION_DAYS:
        raise ConfigError(f"{source}: 'body_retention_days' must be a whole number of days "
                          f"from 0 (bodies not kept) to {MAX_BODY_RETENTION_DAYS}, got {days!r}")
    return days


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


# ISO 639-1: the reply's language (``fr``, or a tag such as ``fr-FR``).
LANGUAGES = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht
hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky
la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny
oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss
st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo
za zh zu""".split())
# A campaign id names topics' keys, metrics labels and URLs: letters, digits, - and _.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def unknown_keys(given: set[str], known: set[str], where: str) -> None:
    """ConfigError naming each unknown key, with the known one it was probably meant to be."""
    import difflib

    unknown = sorted(given - known)
    if unknown:
        said = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            said.append(repr(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{where}: unknown key{'s' if len(said) > 1 else ''} "
                          f"{', '.join(said)}")


def _campaign(t: dict[str, Any], where: str) -> Campaign:
    named = f"{where} ({t['id']!r})" if isinstance(t.get("id"), str) else where
    unknown_keys(set(t), _KNOWN, named)
    for key in ("id", "number", "reply_text", "language", "budget_eur",
                "price_per_segment_eur", "start", "end"):
        if key not in t:
            raise ConfigError(f"{where}: missing {key!r}")
    cid = _text(t, "id", where)
    if not _ID.match(cid):
        raise ConfigError(f"{where}: 'id' {cid!r} must be 1 to 64 letters, digits, - or _ "
                          "(it names the campaign in topics, metrics and URLs)")
    where = f"{where} ({cid!r})"
    language = _text(t, "language", where)
    if re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower() not in LANGUAGES:
        raise ConfigError(f"{where}: 'language' {language!r} is not an ISO 639-1 language "
                          "code (e.g. fr, en, de)")
    country = t.get("country")
    if country is not None:
        if not isinstance(country, str) or country.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"{where}: 'country' {country!r} is not an ISO country code "
                              "(e.g. FR, BE)")
        country = country.upper()
    number = _number(_text(t, "number", where), country, where)
    if country is None:
        country = phonenumbers.region_code_for_number(phonenumbers.parse("+" + number))
    if not country or country == "ZZ":
        raise ConfigError(f"{where}: cannot tell the country of 'number'; set 'country'")
    originator = t.get("originator")
    if originator is not None:
        if not isinstance(originator, str) or not (
                _ORIGINATOR.match(originator) or normalize_msisdn(originator)):
            raise ConfigError(f"{where}: 'originator' {originator!r} must be a phone number or "
                              "1 to 11 letters and digits (what MessageBird shows as sender)")
        if not _ORIGINATOR.match(originator):
            originator = normalize_msisdn(originator)
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
    policy = _policy(t.get("policy", {}), where)
    return Campaign(
        id=cid,
        number=number,
        reply_text=_text(t, "reply_text", where),
        language=language,
        country=str(country).upper(),
        budget_micros=_money(t, "budget_eur", where),
        price_per_segment_micros=price,
        starts_at=_epoch_ms(start),
        ends_at=_epoch_ms(end) + _DAY_MS,
        originator=str(originator or number),
        cooldown_ms=None if cooldown is None else int(cooldown * _DAY_MS),
        pacing=pacing,
        policy=policy,
    )


def _policy(table: Any, where: str) -> tuple[tuple[str, Any], ...]:
    """``[campaign.policy]``: operator keys (as for ``antirelou policy set``), checked by the
    same parser, in the core's units, for the policy's version 1."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'policy' must be a table of policy keys")
    if not table:
        return ()
    pairs = []
    for key, value in table.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        pairs.append(f"{key}={text}")
    try:
        changes = parse_changes(pairs)
    except PolicyError as exc:
        raise ConfigError(f"{where}: policy: {exc}") from None
    problem = policy_problem(apply_changes(Policy(version=1, price_per_segment_micros=1), changes, 1))
    if problem is not None:
        raise ConfigError(f"{where}: policy: {problem}")
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in changes.items()))


def _number(raw: str, country: str | None, where: str) -> str:
    """E.164 digits of the campaign number; a national form needs the campaign's country."""
    text = raw.replace(" ", "").strip()
    if not text.startswith(("+", "00")) and text.startswith("0"):
        if country is None:
            raise ConfigError(f"{where}: 'number' {raw!r} is in national form: write it in "
                              "international form (+33...) or set 'country'")
        try:
            parsed = phonenumbers.parse(text, country)
        except phonenumbers.NumberParseException:
            parsed = None
        if parsed is None or not phonenumbers.is_valid_number(parsed):
            raise ConfigError(f"{where}: 'number' {raw!r} is not a valid number of {country}")
        return f"{parsed.country_code}{parsed.national_number}"
    number = normalize_msisdn(text)
    if number is None:
        raise ConfigError(f"{where}: 'number' must be an international phone number")
    try:
        parsed = phonenumbers.parse("+" + number)
    except phonenumbers.NumberParseException:
        raise ConfigError(f"{where}: 'number' {raw!r} is not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ConfigError(f"{where}: 'number' {raw!r} is not a possible phone number")
    return number


def _text(t: dict[str, Any], key: str, where: str) -> str:
    value = t[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def _money(t: dict[str, Any], key: str, where: str) -> int:
    value = t[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: {key!r} is not an amount in EUR")
    if isinstance(value, str) and not _AMOUNT.match(value.strip()):
        raise ConfigError(f"{where}: {key!r} = {value!r} is not an amount in EUR (write "
                          "it like 3700.00)")
    try:
        eur = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{where}: {key!r} is not an amount in EUR") from None
    micros = eur * MICROS_PER_EUR
    if not micros.is_finite() or micros != micros.to_integral_value() or micros < 0:
        raise ConfigError(f"{where}: {key!r} must be >= 0 with at most 6 decimals")
    if micros > MAX_EUR * MICROS_PER_EUR:
        raise ConfigError(f"{where}: {key!r} is more than EUR {MAX_EUR:,}")
    return int(micros)


def _date(t: dict[str, Any], key: str, where: str) -> dt.date:
    value = t[key]
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise ConfigError(f"{where}: {key!r} must be a TOML date like 2017-10-16")
    return value


def _epoch_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
