"""What the simulated texts say: genuine pests' words, raid bodies (copied, varied or
mimicking the pests'), seeded.

People write their own words, but share common ones too ("cc", "ça va ?", "t'es où ?").
``PestWords`` draws a pest's first text and his follow-ups in one of two vocabularies:

- ``diverse``: a Zipf mixture of common short phrases and personal texts built from
  templates (a name, a place, a question), most of them unique;
- ``fixed``: the twelve first texts of the 2017 generator (``generation.GENUINE_FIRST``),
  so that many pests send the very same words, as a small or naive generator would.

A raid's bodies (``RaidWords``): ``copied`` (a handful of slogans pasted by every number),
``varied`` (the slogans with decorations: emoji, digits, stretched letters, a junk word, a
typo), or ``mimic`` (drawn from the pests' own vocabulary: a troll who has read the
README). Every draw comes from the caller's ``random.Random``.
"""

from __future__ import annotations

import random

from streams.simulate.generation import GENUINE_FIRST, GENUINE_FOLLOW_UP, TROLL_BODIES

VOCABULARIES = ("diverse", "fixed")
RAID_BODIES = ("copied", "varied", "mimic")

_COMMON = (
    "salut", "coucou", "cc", "slt", "bonsoir", "hey", "ça va ?", "cv ?", "slt cv", "coucou ça va ?",
    "t'es où ?", "tu fais quoi ?", "tu dors ?", "hello", "coucou toi", "bsr", "yo", "salut toi",
    "coucou c'est moi", "tu rentres bien ?", "on se voit quand ?", "t'es dispo ?", "bien rentrée ?",
    "salut ça va ?", "hey toi", "coucou 😊", "re", "tu m'as oublié ?", "c'est moi", "bonsoir toi",
)
_NAMES = (
    "Marc", "Julien", "Karim", "Thomas", "Nico", "Maxime", "Yanis", "Hugo", "Lucas", "Mehdi",
    "Antoine", "Kevin", "Alex", "Romain", "Sofiane", "Bastien", "Quentin", "Adrien", "Rayan",
    "Théo", "Florian", "Jérémy", "Samir", "Damien", "Vincent", "Pierre", "Paul", "Louis",
    "Arthur", "Enzo", "Mathis", "Baptiste", "Clément", "Dylan", "Steven", "Jordan", "Bilal",
    "Ilyes", "Nabil", "Olivier", "Sébastien", "Fabien", "Guillaume", "Benoît", "Cédric", "Jonathan",
    "Anthony", "Mickaël", "Loïc", "Yohan", "Axel", "Gabriel", "Raphaël", "Noah", "Léo", "Tom",
    "Jules", "Victor", "Simon", "Valentin", "Tristan", "Malik", "Ismaël", "Hamza", "Moussa",
    "Franck", "Eric", "Stéphane", "Laurent", "David", "Christophe", "Frédéric", "Mathieu",
)
_PLACES = (
    "au bar", "à la soirée", "dans le métro", "à la fac", "au concert", "à la salle", "au Monop",
    "devant le ciné", "au festival", "dans le bus", "au taf", "à la gare", "au parc", "en boîte",
    "à la terrasse", "au marché", "à la laverie", "au resto", "chez Léa", "à l'anniv de Sam",
    "dans le tram", "à la plage", "au kebab", "à la BU", "au match", "à la piscine",
)
_QUESTIONS = (
    "on se revoit quand ?", "tu fais quoi ce week-end ?", "on boit un verre ?", "t'es bien rentrée ?",
    "tu réponds ?", "ça te dit un café ?", "tu te souviens de moi ?", "t'es libre demain ?",
    "on se capte ?", "tu sors ce soir ?", "je peux t'appeler ?", "t'as passé une bonne soirée ?",
)
_TEMPLATES = (
    "Salut c'est {name}, on s'est vus {place}",
    "Coucou c'est {name} {place} 😉",
    "C'est {name}, tu m'as donné ton numéro {place}",
    "Hey c'est {name} ! {q}",
    "Bonsoir, c'est {name} {place}",
    "{greet} c'est {name}, {q}",
    "{greet} ! C'était sympa {place}, {q}",
    "C'est le mec {place}, {q}",
    "{greet}, {q} c'est {name}",
    "Je suis {name}, on a parlé {place}. {q}",
)
_GREETINGS = ("Salut", "Coucou", "Hey", "Bonsoir", "Slt", "Cc", "Yo", "Hello")
_FOLLOW_UP = GENUINE_FOLLOW_UP + (
    "{name} ?", "je t'ai fait quoi ?", "c'est {name}, tu te souviens ?", "bon ok", "t'es là ?",
    "réponds moi", "c'est nul de faire ça", "j'ai compris", "wow ok", "ça se fait pas",
)
_SLOGANS = TROLL_BODIES + (
    "la cagnotte est à nous", "on est des milliers", "numéro anti-relou mon cul", "raid du 18-25",
    "le forum te salue", "vidons la cagnotte", "bonjour c'est le raid", "ahah ça marche plus",
    "coucou le féminisme", "AYAAAA", "on passe par là", "le 18-25 vous salue",
)
_EMOJI = ("😂", "🤣", "😹", "🔥", "💀", "🐸", "👀", "🤡")
_JUNK = ("xd", "mdr", "ptdr", "lol", "wesh", "frr", "jpp", "zbeub")


def _zipf_index(rng: random.Random, n: int, s: float = 1.1) -> int:
    weights = _ZIPF.get((n, s))
    if weights is None:
        weights = _ZIPF[(n, s)] = [1 / (i + 1) ** s for i in range(n)]
    return rng.choices(range(n), weights)[0]


_ZIPF: dict[tuple[int, float], list[float]] = {}


class PestWords:
    """A genuine pest's words in one vocabulary (``VOCABULARIES``)."""

    def __init__(self, vocabulary: str, common_share: float = 0.35) -> None:
        if vocabulary not in VOCABULARIES:
            raise ValueError(f"unknown vocabulary {vocabulary!r}")
        self.vocabulary = vocabulary
        self.common_share = common_share

    def first(self, rng: random.Random) -> str:
        if self.vocabulary == "fixed":
            return rng.choice(GENUINE_FIRST)
        if rng.random() < self.common_share:
            return _COMMON[_zipf_index(rng, len(_COMMON))]
        return rng.choice(_TEMPLATES).format(
            name=rng.choice(_NAMES), place=rng.choice(_PLACES), q=rng.choice(_QUESTIONS),
            greet=rng.choice(_GREETINGS))

    def follow_up(self, rng: random.Random) -> str:
        if self.vocabulary == "fixed":
            return rng.choice(GENUINE_FOLLOW_UP)
        return rng.choice(_FOLLOW_UP).format(name=rng.choice(_NAMES))


class RaidWords:
    """One raid's bodies: ``kind`` in ``RAID_BODIES``; ``slogans`` for copied and varied."""

    def __init__(self, kind: str, rng: random.Random, pests: PestWords,
                 slogans: tuple[str, ...] | None = None) -> None:
        if kind not in RAID_BODIES:
            raise ValueError(f"unknown raid bodies {kind!r}")
        self.kind = kind
        self.pests = pests
        self.slogans = slogans or tuple(rng.sample(_SLOGANS, rng.randint(1, 20)))

    def body(self, rng: random.Random) -> str:
        if self.kind == "mimic":
            return self.pests.first(rng)
        slogan = rng.choice(self.slogans)
        return slogan if self.kind == "copied" else _decorate(rng, slogan)

    def again(self, rng: random.Random) -> str:
        """A raid number's later text: pests' follow-up words when mimicking."""
        return self.pests.follow_up(rng) if self.kind == "mimic" else self.body(rng)


def _decorate(rng: random.Random, text: str) -> str:
    """The slogan made different to the letter: what a raider does to dodge a copy filter."""
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        what = rng.randrange(7)
        i = rng.randrange(len(words))
        w = words[i]
        if what == 0:
            words.append(rng.choice(_EMOJI) * rng.randint(1, 3))
        elif what == 1:
            words.append(str(rng.randrange(10_000)))
        elif what == 2 and any(c in "aeiouy" for c in w.lower()):
            j = max(k for k, c in enumerate(w.lower()) if c in "aeiouy")
            words[i] = w[:j] + w[j] * rng.randint(2, 6) + w[j + 1:]
        elif what == 3:
            words[i] = w.upper() if rng.random() < 0.5 else w.capitalize()
        elif what == 4:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_JUNK))
        elif what == 5:
            words[-1] = words[-1] + rng.choice(("!!", "!!!", "??", "...", " !", " ?!"))
        elif len(w) > 4:  # a typo: one letter dropped
            j = rng.randrange(1, len(w) - 1)
            words[i] = w[:j] + w[j + 1:]
    return " ".join(words)
