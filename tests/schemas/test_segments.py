"""SMS segment counting: GSM-7 vs UCS-2, single vs concatenated parts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentInfo,
    count_segments,
    segment_info,
)

# A 229-character GSM-7 reply (straight apostrophes only), like the 2017 one.
REPLY_2017 = (
    "Bonjour. Ce numéro sert à tenir à distance les gens qui insistent. "
    "Par votre faute, une femme ne s'est pas sentie en sécurité. "
    "Non, c'est non : elle n'a pas à se justifier. "
    "Ne la contactez plus jamais. Ce message est automatique."
)

GSM_PLAIN = sorted(GSM7_BASIC)
GSM_ALL = sorted(GSM7_BASIC | GSM7_EXTENSION)


def _is_gsm(ch: str) -> bool:
    return ch in GSM7_BASIC or ch in GSM7_EXTENSION


# --- alphabet -----------------------------------------------------------------------


def test_gsm7_basic_alphabet_has_127_characters_without_escape():
    assert len(GSM7_BASIC) == 127
    assert "\x1b" not in GSM7_BASIC
    assert {"\n", "\r", "@", "£", "¤", "§", "¡", "¿", "ß"} <= GSM7_BASIC
    assert set("ΔΦΓΛΩΠΨΣΘΞ") <= GSM7_BASIC


def test_gsm7_extension_table_is_the_ten_escaped_characters():
    assert GSM7_EXTENSION == frozenset("^{}\\[~]|€\x0c")
    assert not (GSM7_EXTENSION & GSM7_BASIC)


# --- the 2017 reply -----------------------------------------------------------------


def test_the_2017_reply_is_229_gsm7_characters_costing_two_segments():
    assert len(REPLY_2017) == 229
    info = segment_info(REPLY_2017)
    assert info == SegmentInfo("GSM-7", 229, 2, ())


def test_curly_apostrophe_doubles_the_cost_of_the_2017_reply():
    curly = REPLY_2017.replace("'", "’")
    assert curly != REPLY_2017
    info = segment_info(curly)
    assert info.encoding == "UCS-2"
    assert info.units == 229
    assert info.segments == 4
    assert info.offending == ("’",)
    assert count_segments(curly) == 2 * count_segments(REPLY_2017)


# --- French accents -----------------------------------------------------------------


@pytest.mark.parametrize("ch", list("éèùìòàÇ"))
def test_common_french_accents_stay_in_gsm7(ch):
    info = segment_info(f"voil{ch}")
    assert info.encoding == "GSM-7"
    assert info.units == 5
    assert info.offending == ()


def test_lowercase_c_cedilla_forces_ucs2_but_capital_does_not():
    assert segment_info("Ça va").encoding == "GSM-7"
    info = segment_info("ça va")
    assert info.encoding == "UCS-2"
    assert info.offending == ("ç",)


@pytest.mark.parametrize("ch", ["«", "»", "’", "ê", "À", "😀"])
def test_guillemets_and_other_non_gsm_characters_force_ucs2(ch):
    info = segment_info(f"Il a dit {ch}non{ch}")
    assert info.encoding == "UCS-2"
    assert info.offending == (ch,)


def test_offending_lists_distinct_characters_in_order_of_first_appearance():
    info = segment_info("« Non » c’est « non » ça")
    assert info.offending == ("«", "»", "’", "ç")


# --- empty text ---------------------------------------------------------------------


def test_empty_text_costs_nothing():
    assert segment_info("") == SegmentInfo("GSM-7", 0, 0, ())
    assert count_segments("") == 0


# --- GSM-7 boundaries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_plain_gsm7_text_fits_160_alone_then_153_per_part(n, segments):
    info = segment_info("a" * n)
    assert info.encoding == "GSM-7"
    assert info.units == n
    assert info.segments == segments


def test_eighty_euro_signs_fill_exactly_one_message():
    info = segment_info("€" * 80)
    assert info.units == 160
    assert info.segments == 1


def test_eighty_one_euro_signs_need_two_messages():
    info = segment_info("€" * 81)
    assert info.units == 162
    assert info.segments == 2


def test_extension_escape_pair_is_never_split_across_parts():
    # 306 septets would be 2 parts if the ESC pair could straddle a boundary;
    # the € lands on septets 153-154, so it moves to part 2, pushing one 'a' into part 3.
    text = "a" * 152 + "€" + "a" * 152
    info = segment_info(text)
    assert info.units == 306
    assert info.segments == 3


def test_extension_char_that_fits_exactly_at_end_of_part_stays():
    text = "a" * 151 + "€" + "a" * 153
    assert segment_info(text).units == 306
    assert count_segments(text) == 2


# --- UCS-2 boundaries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_text_fits_70_alone_then_67_per_part(n, segments):
    info = segment_info("«" * n)
    assert info.encoding == "UCS-2"
    assert info.units == n
    assert info.segments == segments


def test_emoji_outside_bmp_counts_two_units():
    info = segment_info("😀" * 35)
    assert info.units == 70
    assert info.segments == 1
    assert segment_info("😀" * 36).segments == 2


def test_surrogate_pair_is_never_split_across_parts():
    text = "«" * 66 + "😀" + "«" * 66
    info = segment_info(text)
    assert info.units == 134
    assert info.segments == 3


def test_gsm_characters_in_a_ucs2_text_cost_one_unit_each():
    # Extension characters are not escaped in UCS-2.
    info = segment_info("€" * 69 + "«")
    assert info.encoding == "UCS-2"
    assert info.units == 70
    assert info.segments == 1
    assert info.offending == ("«",)


# --- properties ---------------------------------------------------------------------

any_text = st.text(max_size=500)
any_char = st.characters()


@settings(max_examples=300)
@given(text=any_text, ch=any_char)
def test_appending_a_character_never_reduces_the_cost(text, ch):
    assert count_segments(text + ch) >= count_segments(text)


@settings(max_examples=300)
@given(text=st.text(alphabet=st.sampled_from(GSM_ALL), max_size=500), ch=any_char)
def test_appending_a_character_to_gsm_text_never_reduces_the_cost(text, ch):
    assert count_segments(text + ch) >= count_segments(text)


@given(text=st.text(alphabet=st.sampled_from(GSM_PLAIN), min_size=161, max_size=1500))
def test_long_plain_gsm_text_costs_one_part_per_153_characters(text):
    info = segment_info(text)
    assert info.encoding == "GSM-7"
    assert info.units == len(text)
    assert info.segments == math.ceil(len(text) / 153)


@given(text=st.text(min_size=1, max_size=500))
def test_any_non_empty_text_costs_at_least_one_segment(text):
    assert count_segments(text) >= 1


@given(text=st.text(max_size=300))
def test_any_non_gsm_character_forces_ucs2_and_is_listed_as_offending(text):
    info = segment_info(text)
    outside = [c for c in dict.fromkeys(text) if not _is_gsm(c)]
    if outside:
        assert info.encoding == "UCS-2"
        assert info.offending == tuple(outside)
        assert info.units == len(text.encode("utf-16-le")) // 2
    else:
        assert info.encoding == "GSM-7"
        assert info.offending == ()
        assert info.units == len(text) + sum(c in GSM7_EXTENSION for c in text)


@given(
    text=st.text(alphabet=st.sampled_from(GSM_ALL), max_size=200),
    bad=st.characters().filter(lambda c: not _is_gsm(c)),
    pos=st.integers(min_value=0),
)
def test_inserting_one_non_gsm_character_switches_to_ucs2(text, bad, pos):
    i = pos % (len(text) + 1)
    info = segment_info(text[:i] + bad + text[i:])
    assert info.encoding == "UCS-2"
    assert info.offending == (bad,)
