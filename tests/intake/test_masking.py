"""Phone numbers written in a text's body are masked whatever their separators (issue 31).

``infra.privacy.mask_numbers`` runs at the webhook before a body is stored, journaled or
logged. It used to be one pattern of digits joined by spaces, dots, dashes or brackets:
``06/12/34/56/78``, ``06_12_34_56_78`` or ``06 12 34 56 78`` with a zero-width space
between the groups were stored and journaled in clear.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlencode

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infra.privacy import NUMBER_MASK, mask_numbers
from streams.intake.messagebird import parse_inbound

ZWSP = "\u200b"
FORM = "application/x-www-form-urlencoded"
FIELDS = {"id": "abc123", "originator": "33612345678", "recipient": "33644630001",
          "createdDatetime": "2017-10-16T20:15:00+00:00"}


def digits_left(text: str) -> str:
    """Every character of ``text`` a reader could take for a digit (any script, ①, ²)."""
    return "".join(c for c in text if unicodedata.normalize("NFKC", c).isdigit()
                   or c.isdigit())


@pytest.mark.parametrize("number", [
    "06/12/34/56/78", "06_12_34_56_78", ZWSP.join(["06 ", "12 ", "34 ", "56 ", "78"]),
    ZWSP.join(["06", "12", "34", "56", "78"]), "06,12,34,56,78", "06:12:34:56:78",
    "06 / 12 / 34 / 56 / 78", "06\u00a012\u00a034\u00a056\u00a078",
    "06\u202f12\u202f34\u202f56\u202f78",
    "06\u200d12\u2060" "34\ufeff56\u00ad78", ZWSP.join("0612345678"),
    "06" + ZWSP * 6 + "12" + ZWSP * 6 + "34 56 78", "06|12|34|56|78", "06*12*34*56*78",
    "au0612345678", "+33\u200b6\u200b12\u200b34\u200b56\u200b78", "06\u3164" "12\u3164" "34 56 78",
    "⓪⑥①②③④⑤⑥⑦⑧", "０６／１２／３４／５６／７８", "06 12 34 56 78", "+33 (0)6 12 34 56 78",
    "0033612345678", "06.12.34.56.78", "06-12-34-56-78", "tel:+33-6-12-34-56-78",
    "+44 7911 123456", "07911 123456", "0470 12 34 56", "+1 (415) 555-2671",
])
def test_a_number_in_a_body_is_masked_whatever_its_separators(number):
    # given a text holding a number written as people (or trolls) write it, when the
    # webhook parses it, then no digit of it is left and the rest of the text is kept
    sms = parse_inbound(FORM, urlencode({**FIELDS, "body": f"appelle moi {number} bisous"}).encode())
    assert digits_left(sms.body) == ""
    assert sms.body.startswith("appelle moi ") and sms.body.endswith(" bisous")
    assert NUMBER_MASK in sms.body


@pytest.mark.parametrize("body", [
    "Test 123", "il est 12:30", "j'ai 25 ans et 2 enfants", "rdv le 12/03 a 20h",
    "3615 ulla", "Test 123, 12:30", "code 1234",
])
def test_short_digit_runs_are_no_number_and_left_alone(body):
    assert mask_numbers(body, "FR") == body


def test_masking_is_deterministic_and_keeps_test_texts_apart():
    # The audit replays the test-text rule on what the webhook kept: the same input always
    # gives the same masked body.
    from actors.textfilter import is_test_text

    body = "rappelle moi au 06/12/34/56/78"
    assert mask_numbers(body, "FR") == mask_numbers(body, "FR") == "rappelle moi au [numero]"
    assert not is_test_text(mask_numbers(body, "FR"))
    assert is_test_text(mask_numbers("test", "FR"))


def test_a_body_without_digits_is_returned_as_is():
    body = "t'es charmante " + ZWSP + " on se voit ?"
    assert mask_numbers(body, "FR") is body


# --- property: the formats phonenumbers writes, any separators, invisible characters ------

REGIONS = ("FR", "BE", "CH", "DE", "GB", "ES", "IT", "PT", "NL", "US", "MA", "DZ", "SN", "RE")
FORMATS = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
           phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.RFC3966)
SEPARATORS = (" ", ".", "-", "/", "_", ",", ":", ";", " / ", " - ", "\u00a0", "\u202f",
              "\u2009", "\u2007", "·", "•", "–", "—", "|", "*", "~", "\\", "'", "  ", "")
INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u200f",
             "\u2062", "\u2063", "\u034f", "\ufe0f", "\u180e", "\u3164", "\u202c", "\u2066")
WORDS = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzéèàçùABCDEZ '!?"),
                max_size=20)


@st.composite
def written_numbers(draw):
    """A possible number of a region, as phonenumbers formats it, its groups joined again
    by drawn separators, with invisible characters drawn in anywhere inside it."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(st.sampled_from((phonenumbers.PhoneNumberType.MOBILE,
                                 phonenumbers.PhoneNumberType.FIXED_LINE)))
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    national = phonenumbers.national_significant_number(example)
    # Another number of the same shape: the last digits drawn.
    tail = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    national = national[:-4] + tail
    number = phonenumbers.parse("+" + str(example.country_code) + national, None)
    assume(phonenumbers.is_possible_number(number))
    form = draw(st.sampled_from(FORMATS + ("00", "digits")))
    if form == "00":
        written = "00" + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    elif form == "digits":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        written = "".join(c for c in written if c.isdigit())
    else:
        written = phonenumbers.format_number(number, form)
    groups = [g for g in written.replace("-", " ").replace(".", " ").replace("/", " ").split(" ")
              if g]
    joined = groups[0]
    for group in groups[1:]:
        joined += draw(st.sampled_from(SEPARATORS)) + group
    chars = list(joined)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(chars)))
        chars.insert(at, draw(st.sampled_from(INVISIBLE)) * draw(st.integers(1, 4)))
    return region, "".join(chars)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(written=written_numbers(), before=WORDS, after=WORDS,
       campaign_region=st.sampled_from(("FR", "BE", "GB", None)))
def test_property_no_digit_of_a_written_number_survives_the_mask(written, before, after,
                                                                 campaign_region):
    region, number = written
    masked = mask_numbers(f"{before} {number} {after}", campaign_region)
    assert digits_left(masked) == "", (region, number, masked)
    assert NUMBER_MASK in masked
