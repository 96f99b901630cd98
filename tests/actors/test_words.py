"""Content evidence: a text's word keys, and which words are a raid's."""

import random

from actors.evidence import (
    MARK_MEMORY_MINUTES,
    MINUTE_MS,
    WINDOW_MINUTES,
    Cohorts,
    WordStats,
    in_raid,
    is_pasted,
    lifted,
    marked,
    observe,
    pasted_by,
    words_observe,
)
from actors.words import MAX_WORDS, key_of, word_keys
from schemas.policy import Policy

T0 = 1_796_148_000_000  # a minute boundary
M0 = T0 // MINUTE_MS
POLICY = Policy(version=1, price_per_segment_micros=80_000)
PEOPLE = ["Salut c'est {n}, on s'est vus au bar", "Coucou c'est {n} du métro", "{n} de la soirée",
          "t'es où ?", "salut", "C'est {n}, tu m'as donné ton numéro", "on boit un verre {n} ?"]
NAMES = ["Marc", "Julien", "Karim", "Thomas", "Nico", "Hugo", "Lucas", "Mehdi", "Yanis", "Enzo",
         "Léo", "Tom", "Axel", "Noah", "Rayan", "Adam", "Sami", "Paul", "Louis", "Jules"]


def pest(rng):
    return rng.choice(PEOPLE).format(n=rng.choice(NAMES))


class Campaign:
    """A campaign's cohorts and word statistics, fed first texts as evolve feeds them."""

    def __init__(self):
        self.cohorts, self.words = Cohorts(), WordStats()

    def text(self, at, body):
        words = word_keys(body)
        raid = marked(self.words, words, at // MINUTE_MS)
        observe(self.cohorts, at, POLICY, raid)
        words_observe(self.words, at, words, self.cohorts, POLICY)
        return words

    def minutes(self, start, n, per_minute, body, rng=None):
        for m in range(start, start + n):
            for i in range(per_minute):
                self.text(T0 + m * MINUTE_MS + i * MINUTE_MS // per_minute, body(rng) if rng else body)


def test_a_text_s_words_leave_out_accents_case_digits_stretching_and_common_words():
    assert word_keys("On vide ta CAGNOTTE !!!") == word_keys("on vide ta cagnote 4821")
    assert word_keys("ayaaaaa 😂") == word_keys("Ayaa")
    # common words are no content word, but every text has its body key
    assert word_keys("salut ça va ?").split() == ["~" + key_of("salut ca va")]
    assert word_keys("😂😂😂") == "~" + key_of("😂")
    assert word_keys("") == ""
    assert len(word_keys(" ".join(f"mot{c}xx" for c in "abcdefghijklmnopq")).split()) == MAX_WORDS + 1


def test_a_small_reference_proves_little_and_a_large_one_a_lot():
    # 18 of 330 recent texts carry a word that 0 of 40 earlier ones did: chance could do it;
    assert not lifted(18, 330, 0, 40)
    # 0 of 7,000 earlier ones: not chance.
    assert lifted(18, 330, 0, 7_000)
    # a common word at about its usual share never is, however large the counts.
    assert not lifted(400, 5_000, 350, 5_000)
    # five pests who wrote the same words in a few minutes are no raid (4x, but 10 texts).
    assert not lifted(10, 100, 20, 800)


def test_a_raid_s_pasted_words_are_marked_and_the_people_s_are_not():
    rng = random.Random(1)
    c = Campaign()
    c.minutes(0, 60, 5, pest, rng)  # an hour of people
    c.minutes(60, 5, 200, lambda r: r.choice(["on vide ta cagnotte", "issou la chancla"]), rng)
    assert marked(c.words, word_keys("issou la chancla"), M0 + 62)
    assert in_raid(c.words, M0 + 62) and not in_raid(c.words, M0 + 30)
    # the pests' words are not the raid's, nor their common ones
    assert not any(marked(c.words, word_keys(b.format(n="Marc")), M0 + 62) for b in PEOPLE)
    # and a pest who wrote one of the raid's words an hour before it is not marked for it.
    assert not marked(c.words, word_keys("issou la chancla"), M0 + 10)


def test_a_fresh_campaign_s_first_words_are_not_judged():
    # A step launch of 200 a minute on a campaign with no past, a few bodies repeating:
    c = Campaign()
    c.minutes(0, 20, 200, lambda r: r.choice(["coucou c'est moi", "t'es où ?", "salut ma belle"]),
              random.Random(2))
    assert c.words.marks == {}


def test_a_young_campaign_s_past_is_enough_to_see_a_raid_paste_new_bodies():
    # Half an hour of 2 people a minute, then a raid pasting 18 bodies the campaign never saw:
    rng = random.Random(3)
    c = Campaign()
    c.minutes(0, 30, 2, pest, rng)
    slogans = [f"slogan numero {w}" for w in ("un", "deux", "trois", "quatre", "cinq", "six",
                                              "sept", "huit", "neuf", "dix", "onze", "douze",
                                              "treize", "quatorze", "quinze", "seize", "dixsept",
                                              "dixhuit")]
    c.minutes(30, 4, 80, lambda r: r.choice(slogans), rng)
    c.text(T0 + 35 * MINUTE_MS, "t'es où ?")  # a minute closes: the cohort's test
    assert sum(marked(c.words, word_keys(s), M0 + 31) for s in slogans) >= 15
    assert not marked(c.words, word_keys("Salut c'est Karim, on s'est vus au bar"), M0 + 31)


def test_a_raid_s_number_texting_again_with_its_words_is_still_the_raid_s():
    rng = random.Random(4)
    c = Campaign()
    c.minutes(0, 60, 5, pest, rng)
    c.minutes(60, 5, 200, "on vide ta cagnotte", None)
    words = word_keys("on vide ta cagnotte")
    later = 65 + WINDOW_MINUTES + 30
    # a first text with those words half an hour after the raid: the raid is over,
    assert not marked(c.words, words, M0 + later)
    # a raid's number texting again with them then: still the raid's,
    assert marked(c.words, words, M0 + later, again=True)
    # until the marks are forgotten.
    assert not marked(c.words, words, M0 + 65 + MARK_MEMORY_MINUTES + WINDOW_MINUTES + 1,
                          again=True)


def test_word_statistics_survive_a_round_trip_through_a_dict():
    rng = random.Random(5)
    c = Campaign()
    c.minutes(0, 40, 5, pest, rng)
    c.minutes(40, 3, 100, "on vide ta cagnotte", None)
    assert c.words.marks and WordStats.from_dict(c.words.to_dict()) == c.words


def test_how_many_texts_pasted_a_body_is_counted_over_the_lag_and_the_reference():
    # The ranking's evidence among held-back requests: a text written once counts 1, a
    # pasted one as many as sent it; its words alone do not make two texts the same.
    c = Campaign()
    rng = random.Random(5)
    c.minutes(0, 40, 5, pest, rng)  # older minutes go to the reference
    c.minutes(40, 2, 300, "on vide ta cagnotte")
    mine = c.text(T0 + 42 * MINUTE_MS, "Salut c'est Marc, on s'est vus à la gare")
    assert pasted_by(mine, c.words) == 1
    assert pasted_by(word_keys("on vide ta cagnotte"), c.words) == 600
    assert pasted_by(word_keys("on vide ta cagnotte, lol"), c.words) == 0  # never sent
    assert pasted_by(word_keys("t'es où ?"), c.words) >= 10  # the people's own common text
    assert pasted_by("", c.words) == 0
    # and only the slogan stands out of the crowd of texts people share.
    assert c.words.paste_floor >= 2  # the people share a few texts
    assert is_pasted(word_keys("on vide ta cagnotte"), c.words)
    assert not is_pasted(mine, c.words)
    assert not is_pasted(word_keys("Salut c'est Marc, on s'est vus au bar"), c.words)
    assert not is_pasted(word_keys("t'es où ?"), c.words)  # common words: anyone's
