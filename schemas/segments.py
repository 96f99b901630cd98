"""How many SMS segments (parts) a text costs.

Pure and deterministic: standard library only, no I/O. Part of the decision core.

Rules (3GPP TS 23.038 / 23.040, as applied by real encoders):

* If every character is in the GSM 03.38 default alphabet or its extension table,
  the text is sent as GSM-7. Basic characters cost 1 septet, extension characters
  cost 2 (ESC + char). One part holds 160 septets; a concatenated message holds
  153 septets per part (the UDH takes the rest). An escape pair is never split
  across parts: a 2-septet character that does not fit in the part's last septet
  moves whole to the next part.
* Otherwise the text is sent as UCS-2 (UTF-16 in practice): each BMP character is
  1 code unit, a character outside the BMP (e.g. most emoji) is a surrogate pair
  of 2 units. One part holds 70 units; a concatenated message holds 67 per part.
  A surrogate pair is never split across parts.
* The empty text costs 0 segments and is reported as GSM-7.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7",
    "UCS2",
    "SegmentInfo",
    "segment_info",
    "count_segments",
    "segments_as",
]

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# 3GPP TS 23.038 default alphabet, in code-point order 0x00..0x7F.
# 0x1B (ESC, the escape to the extension table) is not a character of its own and is
# excluded, so this set holds 127 characters.
_GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10-0x1F (0x1B = ESC, dropped below)
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)
assert len(_GSM7_BASIC_TABLE) == 128

GSM7_BASIC: frozenset[str] = frozenset(_GSM7_BASIC_TABLE) - {"\x1b"}

# Extension table (each costs ESC + char = 2 septets). "\x0c" is form feed.
GSM7_EXTENSION: frozenset[str] = frozenset("^{}\\[~]|€\x0c")

_GSM7_SINGLE = 160
_GSM7_PER_PART = 153
_UCS2_SINGLE = 70
_UCS2_PER_PART = 67


@dataclass(frozen=True)
class SegmentInfo:
    """Encoding and cost of a text.

    encoding:  "GSM-7" or "UCS-2".
    units:     septets for GSM-7 (extension chars count 2); UTF-16 code units for UCS-2
               (a character outside the BMP counts 2).
    segments:  number of SMS parts; 0 for the empty text.
    offending: for UCS-2, the distinct characters (in order of first appearance) that
               are not GSM-7 encodable and so forced UCS-2; empty for GSM-7.
    """

    encoding: str
    units: int
    segments: int
    offending: tuple[str, ...] = ()


def _pack(costs: Iterable[int], single: int, per_part: int) -> tuple[int, int]:
    """Return (total units, parts) for atomic items of the given costs.

    Fits in one part if the total is <= ``single``; otherwise items are packed greedily
    into parts of ``per_part`` units, an item that doesn't fit in what remains of the
    current part starting the next part (items are never split).
    """
    costs = list(costs)
    total = sum(costs)
    if total == 0:
        return 0, 0
    if total <= single:
        return total, 1
    parts = 1
    used = 0
    for cost in costs:
        if used + cost > per_part:
            parts += 1
            used = 0
        used += cost
    return total, parts


def _gsm7_cost(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def segment_info(text: str) -> SegmentInfo:
    """Compute the encoding, unit count, segment count and offending chars of ``text``."""
    offending: dict[str, None] = {}
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            offending.setdefault(ch, None)

    if not offending:
        units, segments = _pack(
            (_gsm7_cost(ch) for ch in text), _GSM7_SINGLE, _GSM7_PER_PART
        )
        return SegmentInfo(GSM7, units, segments, ())

    units, segments = _pack(
        (_utf16_units(ch) for ch in text), _UCS2_SINGLE, _UCS2_PER_PART
    )
    return SegmentInfo(UCS2, units, segments, tuple(offending))


def count_segments(text: str) -> int:
    """Number of SMS parts ``text`` costs (0 for the empty text)."""
    return segment_info(text).segments


def segments_as(text: str, encoding: str) -> int:
    """Parts ``text`` costs when sent in ``encoding`` whatever it holds (a gateway's forced
    ``plain`` substitutes a non-GSM character with one septet; ``unicode`` always UCS-2)."""
    if encoding == UCS2:
        return _pack((_utf16_units(ch) for ch in text), _UCS2_SINGLE, _UCS2_PER_PART)[1]
    return _pack((_gsm7_cost(ch) for ch in text), _GSM7_SINGLE, _GSM7_PER_PART)[1]
