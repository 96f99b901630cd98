"""Number classification at the edge: is a sender's number one we should answer?

Runs in the webhook, before the number is pseudonymised (so it may see the number, and uses
``phonenumbers``' metadata; nothing here logs or keeps it). ``classify`` turns E.164 digits
(without ``+``) into a ``NumberInfo``, which the webhook records on the text; the screening
(``streams.rules.screening.number_refusal``) says why a reply must not be sent to it: replying to a
premium-rate number, a short code or a fixed line wastes money or feeds a scam.

``NumberInfo.prefix`` is a coarse range for per-prefix rate limiting, not a phone number: the
country calling code and at most the first 3 national digits (``"33-612"``); for short codes
``"sc-"`` and at most their first 3 digits; ``"invalid"`` when the input does not even parse.

Kinds: ``mobile``, ``fixed_line``, ``premium_rate``, ``short_code``, ``toll_free``, ``voip``,
``other``, ``invalid``. Numbers the plan cannot tell apart (``FIXED_LINE_OR_MOBILE``, as in
the US) count as ``mobile``; the allowed-countries list is the guard for those.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, phonenumberutil

SHORT_CODE_DIGITS = range(3, 7)  # 3 to 6 digits
E164_MAX_DIGITS = 15
PREFIX_NATIONAL_DIGITS = 3

KINDS = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.VOIP: "voip",
}


@dataclass(frozen=True, slots=True)
class NumberInfo:
    valid: bool
    kind: str
    country: str | None  # ISO 3166 region ("FR"), None for short codes and non-geographic numbers
    prefix: str  # "33-612": country code + at most 3 national digits; never a phone number


INVALID = NumberInfo(valid=False, kind="invalid", country=None, prefix="invalid")


def classify(msisdn_digits: str) -> NumberInfo:
    """Classify E.164 digits without ``+`` (``"33612345678"``) or a 3-6 digit short code."""
    digits = msisdn_digits
    if not (digits.isascii() and digits.isdigit()) or len(digits) > E164_MAX_DIGITS:
        return INVALID
    if len(digits) in SHORT_CODE_DIGITS:
        return NumberInfo(True, "short_code", None, "sc-" + digits[:PREFIX_NATIONAL_DIGITS])
    if len(digits) < SHORT_CODE_DIGITS.stop:
        return INVALID
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return INVALID
    national = phonenumbers.national_significant_number(number)
    prefix = f"{number.country_code}-{national[:PREFIX_NATIONAL_DIGITS]}"
    region = phonenumbers.region_code_for_number(number)
    country = region if region and region not in ("001", "ZZ") else None
    valid, kind = _validity_and_type(number, region, national)
    if not valid:
        return NumberInfo(False, "invalid", country, prefix)
    return NumberInfo(True, KINDS.get(kind, "other"), country, prefix)


_type_for = getattr(phonenumberutil, "_number_type_helper", None)  # (national, metadata)


def _validity_and_type(number: phonenumbers.PhoneNumber, region: str | None,
                       national: str) -> tuple[bool, int]:
    """``(is_valid_number(number), number_type(number))`` with the region and the type
    found once: both find the region again (a pattern match per region for a shared
    calling code, as +1's) and ``is_valid_number`` the type too (its patterns matched
    twice: a third of a classification). The same steps as phonenumbers' own:
    ``number_type`` is the type against the region's metadata, ``is_valid_number`` that a
    known region whose calling code is the number's gives a type. With a phonenumbers that
    lacks the helper, its public functions."""
    if _type_for is None:
        return phonenumbers.is_valid_number(number), phonenumbers.number_type(number)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(number.country_code, region)
    if metadata is None:
        return False, PhoneNumberType.UNKNOWN
    kind = _type_for(national, metadata)
    valid = (region is not None and kind != PhoneNumberType.UNKNOWN
             and (region == phonenumberutil.REGION_CODE_FOR_NON_GEO_ENTITY
                  or number.country_code == phonenumbers.country_code_for_valid_region(region)))
    return valid, kind


@lru_cache(maxsize=1024)
def region_of(msisdn_digits: str) -> str | None:
    """The region (``"FR"``) of a number in E.164 digits, None if it has none: the
    region of a campaign's number, whose texts write numbers in its national format
    (``infra.privacy.mask_numbers``). Remembered: a deployment has a few numbers."""
    return classify(msisdn_digits).country
