"""The test-text filter: the curious are recognised, the pests are not mistaken for them."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.textfilter import DEFAULT_TEST_PATTERNS, is_test_text, normalise


@pytest.mark.parametrize("body", [
    "test", "Test", "TEST !!!", "test.", "  test  ", "Test 123", "test test", "un test",
    "C'est vrai ce numéro ?", "c est vrai ce numero", "C’EST VRAI CE NUMÉRO??", "ça marche ?",
    "Ca marche ou pas ?", "Est-ce que ça marche ?", "ceci est un test 😀", "essai",
    "is this real?", "Is this real lol", "Does this work?", "Testing", "just testing 1",
    "This is a test.",
])
def test_a_curious_persons_text_is_a_test_text(body):
    # given someone trying the number out, then the text is recognised as a test
    assert is_test_text(body)


@pytest.mark.parametrize("body", [
    "",
    "   ?!  ",
    "coucou c'est moi du bar, tu te souviens ?",
    "salut",
    "t'as cru que j'allais pas tester ton numéro ?",
    "test de merde, réponds-moi connasse",
    "je voulais juste faire un test pour voir si tu réponds",
    "is this real or did you just give me a fake number",
    "attestation",
    "ça marche pour ce soir ?",  # a date, not a test
    "contest",
])
def test_a_pests_text_that_merely_contains_the_words_is_not_a_test_text(body):
    # given a real message, even one containing "test" or "ça marche", then it is no test
    assert not is_test_text(body)


def test_patterns_are_replaceable_and_normalised_like_the_text():
    assert is_test_text("Probando", patterns=("probando",))
    assert is_test_text("PRUEBA!", patterns=("¿Prueba?",))
    assert not is_test_text("test", patterns=("probando",))
    assert not is_test_text("test", patterns=("?!",))  # a pattern of punctuation matches nothing


def test_normalisation_drops_accents_case_and_punctuation():
    assert normalise("Ça, c'est VRAIMENT élevé…") == ("ca", "c", "est", "vraiment", "eleve")


def test_every_default_pattern_matches_itself():
    assert all(is_test_text(p) for p in DEFAULT_TEST_PATTERNS)


@given(st.text(max_size=60))
def test_any_text_is_classified_without_error(body):
    assert is_test_text(body) in (True, False)


@given(st.lists(st.sampled_from(["voir", "numero", "elle", "moi", "bonjour", "ce", "soir"]),
                min_size=3, max_size=8))
def test_test_with_three_or_more_other_words_is_not_a_test_text(words):
    # given "test" inside a message of 3+ other words, then it is not a test text
    assert not is_test_text(" ".join(["test", *words]))


def reference_normalise(text):
    decomposed = unicodedata.normalize("NFKD", text)
    return tuple("".join(c if c.isalnum() else " " for c in decomposed.casefold()
                         if not unicodedata.combining(c)).split())


def reference_is_test_text(body: str, patterns=DEFAULT_TEST_PATTERNS) -> bool:
    """The rule as first written (general normalisation, every pattern at every place):
    the oracle for the fast paths (ASCII, token count)."""
    tokens = reference_normalise(body)
    for pattern in filter(None, map(reference_normalise, patterns)):
        n = len(pattern)
        for start in range(len(tokens) - n + 1):
            rest = tokens[:start] + tokens[start + n:]
            if tokens[start:start + n] == pattern and len(rest) <= 2 and all(
                    len(t) <= 4 for t in rest):
                return True
    return False


WORDS = st.sampled_from(["test", "Test", "TESTING", "ça", "marche", "vrai", "numéro", "numero",
                         "is", "this", "real", "ok", "123", "lol", "t'es", "où", "ﬁn", "Ｔｅｓｔ",
                         "c'est", "un", "e\u0301", "?", "!!!", "🙂", "-", " "])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.lists(WORDS, max_size=9).map(" ".join), st.text(max_size=40)))
def test_the_fast_paths_decide_exactly_as_the_rule(body):
    assert normalise(body) == reference_normalise(body)
    assert is_test_text(body) == reference_is_test_text(body)


@given(st.lists(st.sampled_from(["test", "ça", "marche", "?", "vrai", "numéro", "1", "lol",
                                 "x" * 200]), max_size=6))
def test_a_body_asked_about_again_or_too_long_to_cache_gets_the_rules_answer(words):
    # given the same body asked about twice (the second answer comes from the cache), or a
    # body past the cached length, then both answers are the rule's, computed afresh
    body = " ".join(words)
    expected = reference_is_test_text(body)
    assert is_test_text(body) is expected
    assert is_test_text(body) is expected
