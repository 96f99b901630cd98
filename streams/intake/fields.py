"""What both providers' parsers share: the limits, and the checks of the fields they both
carry (a phone number, an ISO 8601 time, a JSON object). Errors: ``streams.intake.errors``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson

from infra.privacy import normalize_msisdn
from streams.intake.errors import BadRequest

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4096
MAX_ID_CHARS = 128


def json_object(raw: bytes, not_json: str) -> dict[str, Any]:
    """A webhook body that must be one JSON object; BadRequest ``bad_json`` (400) if not,
    saying ``not_json`` when it is no JSON at all."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("bad_json", not_json, status=400) from None
    if not isinstance(data, dict):
        raise BadRequest("bad_json", "body must be a JSON object", status=400)
    return data


_ASCII_MSISDN = re.compile(r"\+?[0-9]{6,15}")


def msisdn(value: str, name: str) -> str:
    """``value`` as E.164 digits; BadRequest naming the field ``name`` if it is no phone
    number."""
    # ASCII digits only: Python's \d also takes fullwidth or Arabic-Indic digits, which would
    # give one phone number several pseudonyms (and dodge "already answered").
    if not _ASCII_MSISDN.fullmatch(value.replace(" ", "")):
        raise BadRequest("invalid_field", f"{name!r} is not a phone number", name)
    number = normalize_msisdn(value)
    if number is None:
        raise BadRequest("invalid_field", f"{name!r} is not a phone number", name)
    return number


_SPACED_OFFSET = re.compile(r"(T[\d:.]+) (\d\d:?\d\d)$")


def iso_ms(value: str) -> int:
    """An ISO 8601 time (UTC when it has no offset) in epoch milliseconds; BadRequest (as
    MessageBird's ``createdDatetime``: the callers that read another field say so)."""
    value = value.strip().replace("Z", "+00:00")
    # A '+' of the offset sent unescaped in a form body arrives as a space.
    value = _SPACED_OFFSET.sub(r"\1+\2", value)
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            "invalid_field", "'createdDatetime' is not ISO 8601", "createdDatetime"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)
