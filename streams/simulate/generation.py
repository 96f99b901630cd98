"""The synthetic week: ``Scenario``, ``generate`` (every text, seeded) and its ground truth."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MICROS_PER_EUR = 1_000_000
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

KINDS = ("genuine", "tester", "persistent_troll", "sim_rotating_troll", "one_shot_troll")
TROLL_KINDS = frozenset({"persistent_troll", "sim_rotating_troll", "one_shot_troll"})

DEFAULT_START_MS = int(dt.datetime(2017, 10, 16, tzinfo=dt.UTC).timestamp() * 1000)

# French mobile ranges (06 / 07) as 3-digit national prefixes. A copy of the mobile pattern in
# phonenumbers' metadata for FR (9.0): (?:6(?:[0-24-8]\d|3[0-8]|9[589])|7[3-9]\d)\d{6}.
# tests/simulate/test_simulate.py checks every prefix against the installed phonenumbers.
_FR_MOBILE_RANGE = re.compile(r"6(?:[0-24-8]\d|3[0-8]|9[589])|7[3-9]\d")
FR_MOBILE_PREFIXES: tuple[str, ...] = tuple(
    p for p in (f"{n:03d}" for n in range(600, 800)) if _FR_MOBILE_RANGE.fullmatch(p)
)
_PREFIXES_06 = tuple(p for p in FR_MOBILE_PREFIXES if p.startswith("6"))
PREFIXES_07 = tuple(p for p in FR_MOBILE_PREFIXES if p.startswith("7"))
_SHARE_06 = 0.7  # most people still had an 06 number in 2017

# Arrival rhythm. Day weights: launch buzz on days 1-2, then a steady tail.
_GENUINE_DAY_WEIGHTS = (0.45, 0.20, 0.09)
_GENUINE_TAIL_WEIGHT = 0.065
_TESTER_DAY_WEIGHTS = (0.60, 0.25, 0.06)
_TESTER_TAIL_WEIGHT = 0.0225
# Hour-of-day weights (00:00 .. 23:00 from start_ms): pests text in the evening and at night,
# testers when they read about it (day and evening).
_GENUINE_HOUR_WEIGHTS = (6, 4, 3, 2, 1, 1, 1, 2, 3, 3, 3, 4, 5, 4, 4, 4, 5, 6, 8, 9, 10, 11, 11, 9)
_TESTER_HOUR_WEIGHTS = (2, 1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 9, 8, 7, 7, 7, 8, 9, 10, 10, 9, 7, 4)
_TESTER_SECOND_TEXT = 0.35

GENUINE_FIRST = (
    "Salut c'est Marc, on s'est vus au bar tout à l'heure",
    "coucou c'est moi",
    "t'es où ?",
    "Bonsoir, c'est Julien de la soirée",
    "tu rentres bien ?",
    "c'était sympa ce soir, on se revoit quand ?",
    "Hey c'est Karim du métro 😉",
    "salut ma belle",
    "C'est Thomas, tu m'as donné ton numéro à la fête",
    "On boit un verre demain ?",
    "Coucou, c'est le mec de la file d'attente",
    "slt cv ?",
)
GENUINE_FOLLOW_UP = (
    "?", "allo ?", "pourquoi tu réponds pas ?", "t'es sérieuse là ?", "c'est quoi ce numéro ?",
    "ok...", "sympa le faux numéro", "tu pouvais juste dire non", "réponds stp", "??",
)
TESTER_BODIES = (
    "test", "Test", "test test", "c'est vrai ce numéro ?", "ça marche ?", "is this real",
    "is this real?", "coucou je teste", "je teste le numéro anti-relou", "ça répond vraiment ?",
    "lol c'est vrai ?", "Test du numéro vu sur Twitter", "hello?", "testing",
)
_TESTER_SECOND = ("ça marche vraiment ?", "test 2", "?", "re test", "ok ça marche !", "bien joué")
TROLL_BODIES = (
    "lol", "relou toi-même", "ayaaa", "on vide ta cagnotte", "ahi", "JVC représente",
    "risitas", "18-25 en force", "spam", "😂😂😂", "c'est non ? c'est oui", "bonjour madame",
    "allo", "noel", "[ALERTE]", "chancla", "issou", "force à toi la cagnotte",
)


@dataclass(frozen=True)
class SimText:
    """One inbound text. ``sender`` is E.164 digits without '+'; never print it."""

    at_ms: int
    sender: str
    body: str
    message_id: str
    kind: str  # one of KINDS
    campaign: str = ""  # which campaign's number it was sent to ("": the only one)

    # As the providers' parsers give a text (streams.intake.build.ParsedText): the
    # simulator's texts reach the core through the same intake.
    @property
    def originator(self) -> str:
        return self.sender

    @property
    def created_at_ms(self) -> int:
        return self.at_ms


@dataclass(frozen=True)
class Scenario:
    """The week to simulate; defaults model the 2017 French launch and flood.

    Counts are numbers of senders before ``scale``; per-sender text counts are (low, high),
    inclusive, and do not scale. ``budget_micros`` / ``reply_cost_micros`` are the 2017
    campaign's (EUR 3,700; EUR 0.16 per two-segment reply), for callers that want them.
    """

    seed: int = 2017
    scale: float = 1.0
    start_ms: int = DEFAULT_START_MS
    days: int = 7
    genuine_pests: int = 8000
    genuine_texts: tuple[int, int] = (1, 3)
    testers: int = 3000
    flood_day: int = 3  # 1-based
    flood_start_hour: int = 20
    flood_hours: int = 4
    persistent_trolls: int = 5
    persistent_texts: tuple[int, int] = (300, 800)
    sim_rotating_trolls: int = 40
    sim_texts: tuple[int, int] = (3, 10)
    sim_prefixes: int = 3  # how many 3-digit national ranges the rotating SIMs share
    one_shot_trolls: int = 6000
    budget_micros: int = 3_700 * MICROS_PER_EUR
    reply_cost_micros: int = 160_000

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError("scale must be positive")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not 1 <= self.flood_day <= self.days:
            raise ValueError("flood_day must be within the simulated days")
        if not 0 <= self.flood_start_hour <= 23 or self.flood_hours < 1:
            raise ValueError("the flood needs a start hour in 0..23 and at least one hour")
        if self.flood_window_ms[1] > self.end_ms:
            raise ValueError("the flood must end within the simulated days")
        for name in ("genuine_pests", "testers", "persistent_trolls", "sim_rotating_trolls",
                     "one_shot_trolls"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("genuine_texts", "persistent_texts", "sim_texts"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 1 <= low <= high")
        if not 1 <= self.sim_prefixes <= len(PREFIXES_07):
            raise ValueError("sim_prefixes out of range")

    def count(self, n: int) -> int:
        """``n`` senders after scaling (at least one when ``n`` > 0)."""
        return 0 if n <= 0 else max(1, round(n * self.scale))

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    @property
    def flood_window_ms(self) -> tuple[int, int]:
        """[start, end) of the flood in ms since the epoch."""
        start = self.start_ms + (self.flood_day - 1) * DAY_MS + self.flood_start_hour * HOUR_MS
        return start, start + self.flood_hours * HOUR_MS


# --------------------------------------------------------------------------- generation


class Draw:
    """All randomness of one generation, from one seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.numbers: set[str] = set()
        self.ids: set[str] = set()

    def message_id(self) -> str:
        while True:
            mid = f"{self.rng.getrandbits(128):032x}"
            if mid not in self.ids:
                self.ids.add(mid)
                return mid

    def number(self, prefixes: Sequence[str], block: str = "") -> str:
        """A new, unused number "33" + prefix + block + random digits (9 national digits)."""
        free = 6 - len(block)
        while True:
            number = "33" + self.rng.choice(prefixes) + block + f"{self.rng.randrange(10**free):0{free}d}"
            if number not in self.numbers:
                self.numbers.add(number)
                return number

    def any_mobile(self) -> str:
        return self.number(_PREFIXES_06 if self.rng.random() < _SHARE_06 else PREFIXES_07)

    def moment(self, scenario: Scenario, day_weights: Sequence[float], tail: float,
               hour_weights: Sequence[int]) -> int:
        weights = [day_weights[d] if d < len(day_weights) else tail for d in range(scenario.days)]
        day = self.rng.choices(range(scenario.days), weights)[0]
        hour = self.rng.choices(range(24), hour_weights)[0]
        return (scenario.start_ms + day * DAY_MS + hour * HOUR_MS
                + self.rng.randrange(3600) * SECOND_MS)

    def text(self, out: list[SimText], at_ms: int, sender: str, body: str, kind: str) -> None:
        out.append(SimText(at_ms, sender, body, self.message_id(), kind))


def generate(scenario: Scenario) -> list[SimText]:
    """Every text of the scenario, sorted by time (ties by message id); deterministic."""
    s, draw = scenario, Draw(scenario.seed)
    rng, out = draw.rng, []
    end = s.end_ms

    for _ in range(s.count(s.genuine_pests)):
        sender = draw.any_mobile()
        at = draw.moment(s, _GENUINE_DAY_WEIGHTS, _GENUINE_TAIL_WEIGHT, _GENUINE_HOUR_WEIGHTS)
        draw.text(out, at, sender, rng.choice(GENUINE_FIRST), "genuine")
        for _ in range(rng.randint(*s.genuine_texts) - 1):
            if rng.random() < 0.6:  # minutes later
                at += rng.randint(1 * 60, 45 * 60) * SECOND_MS
            else:  # hours later
                at += rng.randint(1 * 3600, 10 * 3600) * SECOND_MS
            if at >= end:
                break  # the simulated week is over
            draw.text(out, at, sender, rng.choice(GENUINE_FOLLOW_UP), "genuine")

    for _ in range(s.count(s.testers)):
        sender = draw.any_mobile()
        at = draw.moment(s, _TESTER_DAY_WEIGHTS, _TESTER_TAIL_WEIGHT, _TESTER_HOUR_WEIGHTS)
        draw.text(out, at, sender, rng.choice(TESTER_BODIES), "tester")
        if rng.random() < _TESTER_SECOND_TEXT:
            at += rng.randint(30, 15 * 60) * SECOND_MS
            if at < end:
                draw.text(out, at, sender, rng.choice(_TESTER_SECOND), "tester")

    flood_start, flood_end = s.flood_window_ms
    span_s = (flood_end - flood_start) // SECOND_MS

    def flood_at(offset_s: int) -> int:
        return flood_start + min(max(offset_s, 0), span_s - 1) * SECOND_MS

    for _ in range(s.count(s.persistent_trolls)):
        sender = draw.any_mobile()
        joined_s = rng.randrange(min(20 * 60, span_s))
        favourites = rng.sample(TROLL_BODIES, 3)
        for i in range(rng.randint(*s.persistent_texts)):
            body = rng.choice(favourites) if rng.random() < 0.7 else f"{rng.choice(TROLL_BODIES)} {i}"
            draw.text(out, flood_at(rng.randrange(joined_s, span_s)), sender, body, "persistent_troll")

    prefixes = rng.sample(PREFIXES_07, s.sim_prefixes)
    blocks = {p: f"{rng.randrange(100):02d}" for p in prefixes}  # a batch of SIMs: 7 56 12 xx xx
    for _ in range(s.count(s.sim_rotating_trolls)):
        prefix = rng.choice(prefixes)
        sender = draw.number((prefix,), blocks[prefix])
        burst_len_s = rng.randint(60, 20 * 60)
        burst_start_s = rng.randrange(max(1, span_s - burst_len_s))
        for _ in range(rng.randint(*s.sim_texts)):
            at = flood_at(burst_start_s + rng.randrange(burst_len_s))
            draw.text(out, at, sender, rng.choice(TROLL_BODIES), "sim_rotating_troll")

    for _ in range(s.count(s.one_shot_trolls)):
        sender = draw.any_mobile()
        # The forum thread spreads fast, then interest fades: most texts in the first hour.
        at = flood_at(int(rng.triangular(0, span_s, span_s * 0.2)))
        draw.text(out, at, sender, rng.choice(TROLL_BODIES), "one_shot_troll")

    out.sort(key=lambda t: (t.at_ms, t.message_id))
    return out


def ground_truth(texts: Iterable[SimText]) -> dict[str, dict[str, int]]:
    """``{kind: {"texts": n, "senders": distinct}}`` for every kind in KINDS, plus "total"."""
    counts = {kind: 0 for kind in KINDS}
    senders: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for t in texts:
        if t.kind not in counts:
            raise ValueError(f"unknown kind {t.kind!r}")
        counts[t.kind] += 1
        senders[t.kind].add(t.sender)
    truth = {kind: {"texts": counts[kind], "senders": len(senders[kind])} for kind in KINDS}
    truth["total"] = {"texts": sum(counts.values()),
                      "senders": len(set().union(*senders.values()))}
    return truth
