"""Sender number classification at the edge, on phonenumbers' own example numbers."""

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from infra.numbers import NumberInfo, classify
from schemas.commands import ScreenText
from schemas.policy import Policy
from streams.rules.screening import number_refusal

FRANCE = frozenset({"FR"})


def refusal(info, allowed_countries):
    """The live rule (the screening's) on what the webhook records of the number."""
    command = ScreenText(message_id="m1", campaign_id="paris", sender="s_a", body="salut", occurred_at=0,
                         reply_to="sealed", number_kind=info.kind, country=info.country, prefix=info.prefix)
    policy = Policy(version=1, price_per_segment_micros=80_000,
                    allowed_countries=tuple(sorted(allowed_countries)))
    return number_refusal(command, policy)


def example(region, kind):
    number = phonenumbers.example_number_for_type(region, kind)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def test_a_french_mobile_is_answerable_in_a_french_campaign():
    info = classify(example("FR", PhoneNumberType.MOBILE))
    assert info == NumberInfo(True, "mobile", "FR", "33-612")
    assert refusal(info, FRANCE) is None


@pytest.mark.parametrize(("kind", "name"), [
    (PhoneNumberType.PREMIUM_RATE, "premium_rate"),
    (PhoneNumberType.FIXED_LINE, "fixed_line"),
    (PhoneNumberType.TOLL_FREE, "toll_free"),
    (PhoneNumberType.VOIP, "voip"),
    (PhoneNumberType.SHARED_COST, "other"),
])
def test_french_non_mobile_numbers_are_not_answered(kind, name):
    # given a premium-rate (or fixed, toll-free...) French number, then it is no mobile
    info = classify(example("FR", kind))
    assert (info.valid, info.kind, info.country) == (True, name, "FR")
    assert refusal(info, FRANCE) == "not_mobile"


def test_a_premium_rate_number_gets_a_coarse_prefix_only():
    info = classify(example("FR", PhoneNumberType.PREMIUM_RATE))
    assert info.prefix == "33-891"


def test_a_short_code_is_valid_but_not_answered():
    info = classify("36180")
    assert info == NumberInfo(True, "short_code", None, "sc-361")
    assert refusal(info, FRANCE) == "not_mobile"


def test_a_foreign_mobile_is_refused_by_country():
    info = classify(example("GB", PhoneNumberType.MOBILE))
    assert (info.kind, info.country, info.prefix) == ("mobile", "GB", "44-740")
    assert refusal(info, FRANCE) == "country_not_allowed"
    assert refusal(info, frozenset({"FR", "GB"})) is None


@pytest.mark.parametrize("raw", ["", "+33612345678", "33 612345678", "abc", "12", "3361234567890123",
                                 "٣٣٦١٢٣٤٥٦٧٨", "0000000", "3361x"])
def test_malformed_input_is_an_invalid_number(raw):
    info = classify(raw)
    assert not info.valid and info.kind == "invalid"
    assert refusal(info, FRANCE) == "invalid_number"


def test_a_well_formed_but_unassigned_number_is_invalid_with_its_range():
    info = classify("33012345678")  # a French number cannot start with 0 after the country code
    assert (info.valid, info.kind, info.prefix) == (False, "invalid", "33-012")


def test_a_non_geographic_number_has_no_country():
    number = phonenumbers.example_number_for_non_geo_entity(800)
    info = classify(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:])
    assert (info.kind, info.country, info.prefix) == ("toll_free", None, "800-123")
    assert refusal(info, FRANCE) == "not_mobile"


PREFIX = re.compile(r"(\d{1,3}-\d{1,3}|sc-\d{3}|invalid)")


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.text(alphabet="0123456789", max_size=18),
    st.sampled_from(["33", "44", "1", "39", "49", "800"]).flatmap(
        lambda cc: st.text(alphabet="0123456789", min_size=4, max_size=12).map(lambda n: cc + n)),
    st.text(max_size=20),
))
def test_the_prefix_never_holds_more_than_country_code_plus_3_digits(raw):
    info = classify(raw)
    assert PREFIX.fullmatch(info.prefix)
    digits = re.sub(r"\D", "", info.prefix)
    assert len(digits) <= 6
    assert info.valid == (info.kind != "invalid")


@pytest.mark.parametrize("region", ["FR", "GB", "US", "IT", "DE", "BE"])
def test_every_example_mobile_has_a_prefix_of_country_code_and_3_digits(region):
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    info = classify(example(region, PhoneNumberType.MOBILE))
    assert info.kind == "mobile" and info.country == region
    national = phonenumbers.national_significant_number(number)
    assert info.prefix == f"{number.country_code}-{national[:3]}"


def reference_classify(digits):
    """``classify`` as phonenumbers' public functions give it (before the one-pass one)."""
    from infra.numbers import INVALID, KINDS, PREFIX_NATIONAL_DIGITS, SHORT_CODE_DIGITS
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 15:
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
    if not phonenumbers.is_valid_number(number):
        return NumberInfo(False, "invalid", country, prefix)
    return NumberInfo(True, KINDS.get(phonenumbers.number_type(number), "other"), country, prefix)


def test_one_pass_classification_is_phonenumbers_public_answer_for_every_example():
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example_number = phonenumbers.example_number_for_type(region, kind)
            if example_number is not None:
                numbers.append(phonenumbers.format_number(
                    example_number, phonenumbers.PhoneNumberFormat.E164)[1:])
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example_number = phonenumbers.example_number_for_non_geo_entity(code)
        if example_number is not None:
            numbers.append(phonenumbers.format_number(
                example_number, phonenumbers.PhoneNumberFormat.E164)[1:])
    assert len(numbers) > 1000
    for digits in numbers:
        # the example, and neighbours one digit longer, shorter or changed (invalid ones too)
        for variant in (digits, digits + "7", digits[:-1], digits[:-1] + "0", digits[:4] + "99"
                        + digits[6:]):
            assert classify(variant) == reference_classify(variant), variant


@settings(max_examples=3000, deadline=None)
@given(st.text("0123456789", min_size=7, max_size=15))
def test_one_pass_classification_is_phonenumbers_public_answer_for_any_digits(digits):
    assert classify(digits) == reference_classify(digits)
