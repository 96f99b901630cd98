"""The "test texts" filter: recognise people checking the number rather than pestering.

In 2017 about 3,000 of the first 25,000 texts were curious people trying the number out
("test", "c'est vrai ce numéro ?"). ``is_test_text`` recognises them so the core can treat
them apart from real pests.

Normalisation (``normalise``): Unicode NFKD, combining marks dropped (accents: "numéro" ->
"numero"), case folded, every character that is not a letter or digit becomes a space
(punctuation, apostrophes, emoji), then split into tokens. Patterns are normalised the same.

The rule: a text is a test text when its tokens contain a pattern's tokens as one contiguous
run and the rest of the text is at most ``MAX_EXTRA_TOKENS`` (2) tokens of at most
``MAX_EXTRA_CHARS`` (4) characters each ("Test 123", "ça marche ou pas ?"). A longer message
that merely contains "test" is not. Greetings ("salut", "coucou") are deliberately not
patterns: a pest who thinks he has the woman's number writes exactly those.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

MAX_EXTRA_TOKENS = 2
MAX_EXTRA_CHARS = 4

DEFAULT_TEST_PATTERNS: tuple[str, ...] = (
    # French
    "test", "tests", "teste", "un test", "essai", "c'est un test", "ceci est un test",
    "c'est vrai ce numéro ?", "c'est un vrai numéro ?", "ce numéro est vrai ?", "vrai numéro ?",
    "ça marche ?", "est-ce que ça marche ?", "ça fonctionne ?", "c'est réel ?",
    # English
    "testing", "just testing", "this is a test", "is this real", "is this a real number",
    "is this number real", "does this work", "does it work",
)


# ASCII letters and digits are kept, lowered; every other ASCII character becomes a space.
_ASCII_TOKENS = {i: (chr(i).lower() if chr(i).isalnum() else " ") for i in range(128)}


def normalise(text: str) -> tuple[str, ...]:
    """Tokens of ``text`` without accents, case or punctuation."""
    if text.isascii():
        # The same result, fast: NFKD changes no ASCII character and combines none, and
        # casefold() is lower() on ASCII. Most texts take this path.
        return tuple(text.translate(_ASCII_TOKENS).split())
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(
        c if c.isalnum() else " " for c in decomposed.casefold() if not unicodedata.combining(c)
    )
    return tuple(kept.split())


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[str, ...]) -> tuple[dict[str, list[tuple[str, ...]]], int]:
    """The patterns' tokens by their first token, and the most tokens a test text can have."""
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for tokens in map(normalise, patterns):
        if tokens:
            by_first.setdefault(tokens[0], []).append(tokens)
    longest = max((len(t) for ts in by_first.values() for t in ts), default=0)
    return by_first, longest + MAX_EXTRA_TOKENS


def _is_filler(tokens: tuple[str, ...]) -> bool:
    return len(tokens) <= MAX_EXTRA_TOKENS and all(len(t) <= MAX_EXTRA_CHARS for t in tokens)


def is_test_text(body: str, patterns: tuple[str, ...] = DEFAULT_TEST_PATTERNS) -> bool:
    """Whether ``body`` is essentially one of ``patterns`` (see the module rule).

    Bodies up to one SMS long are cached (the answer is a pure function of the arguments):
    a flood repeats the same few texts, and the audit screens every text again."""
    if len(body) <= CACHED_BODY_CHARS:
        return _is_test_text_cached(body, patterns)
    return _is_test_text(body, patterns)


CACHED_BODY_CHARS = 160  # bounds the cache's memory: at most 4,096 bodies this long


def _is_test_text(body: str, patterns: tuple[str, ...]) -> bool:
    by_first, most_tokens = _compiled(patterns)
    tokens = normalise(body)
    if len(tokens) > most_tokens:  # a pattern plus its filler cannot cover it
        return False
    for start, token in enumerate(tokens):
        for pattern in by_first.get(token, ()):
            end = start + len(pattern)
            if tokens[start:end] == pattern and _is_filler(tokens[:start] + tokens[end:]):
                return True
    return False


_is_test_text_cached = lru_cache(maxsize=4096)(_is_test_text)
