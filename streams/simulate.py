"""Flood simulator: a synthetic week of texts to an anti-pest number, modelled on 2017.

What it simulates
-----------------
One campaign number during the week after its launch (the 2017 French numbers got about
25,000 texts in 72 h, ~3,000 of them curious testers; each reply cost EUR 0.16; EUR 3,700
was raised to run a year; on day 3 forum trolls sent 20,000+ texts in four hours and the
number was switched off). ``generate(Scenario(...))`` returns every inbound text as a
``SimText`` with its ground-truth ``kind``:

- ``genuine``: a pest who was given the number; 1-3 texts minutes or hours apart, arriving
  all week with a day/night rhythm, most of them on days 1-2 (the launch buzz);
- ``tester``: a curious person checking the number ("test", "c'est vrai ce numéro ?"),
  mostly on days 1-2, sometimes a second text a few minutes later;
- the flood, from day 3 20:00 for 4 hours (hours count from ``start_ms``):
  ``persistent_troll`` (a few numbers sending hundreds of texts each),
  ``sim_rotating_troll`` (many SIMs with 3-10 texts each, numbers clustered in a few
  3-digit national ranges, which is what a per-prefix rate limit catches) and
  ``one_shot_troll`` (thousands of unrelated numbers, one text each).
  Genuine pests keep arriving during the flood.

Every number is a fake but *valid* French mobile number (``phonenumbers`` agrees); all draws
come from ``random.Random(scenario.seed)``, so a seed always gives the same texts; times are
whole seconds (MessageBird's ``createdDatetime`` has no fraction), so a text replayed through
the webhook carries exactly the same time. ``scale`` multiplies the number of senders of each
kind (for quick runs); how many texts one sender sends does not scale.

Outcomes
--------
A policy is judged by the replies it approves: ``outcome_from_decisions`` turns
``{message_id: cost_micros or None}`` into an ``Outcome`` (EUR spent, genuine senders and
testers answered, spend on trolls, when the budget ran out, a time series). The two
baselines (``answer_every_text``, the 2017 behaviour, and ``answer_once_per_sender``) and
the real policy (any ``PolicyRunner``, see ``run_policy``) all go through it, so their
columns are computed the same way. ``render_report`` prints them side by side and
``write_plot_html`` draws them (one self-contained HTML file, inline SVG, no JS).

``drive_webhook`` posts the texts to a running antirelou webhook, form-encoded and signed
exactly like MessageBird, for an end-to-end run on your own machine.

How to run it
-------------
::

    python -m streams.simulate                      # the 2017 week, both baselines
    python -m streams.simulate --scale 0.1 --seed 7 --html /tmp/sim.html
    MESSAGEBIRD_SIGNING_KEY=... python -m streams.simulate --scale 0.05 \\
        --webhook http://127.0.0.1:6066/webhooks/messagebird/sms --recipient 33644630001

No output ever shows a sender's number.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlencode, urlsplit

from infra.mb_signature import sign_webhook
from infra.numbers import NumberInfo, classify
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, ScreenText
from schemas.events import ReplyApproved
from schemas.policy import PolicyError, parse_changes
from streams.pipeline import Pipeline

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
# tests/core/test_simulate.py checks every prefix against the installed phonenumbers.
_FR_MOBILE_RANGE = re.compile(r"6(?:[0-24-8]\d|3[0-8]|9[589])|7[3-9]\d")
FR_MOBILE_PREFIXES: tuple[str, ...] = tuple(
    p for p in (f"{n:03d}" for n in range(600, 800)) if _FR_MOBILE_RANGE.fullmatch(p)
)
_PREFIXES_06 = tuple(p for p in FR_MOBILE_PREFIXES if p.startswith("6"))
_PREFIXES_07 = tuple(p for p in FR_MOBILE_PREFIXES if p.startswith("7"))
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

_GENUINE_FIRST = (
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
_GENUINE_FOLLOW_UP = (
    "?", "allo ?", "pourquoi tu réponds pas ?", "t'es sérieuse là ?", "c'est quoi ce numéro ?",
    "ok...", "sympa le faux numéro", "tu pouvais juste dire non", "réponds stp", "??",
)
_TESTER_BODIES = (
    "test", "Test", "test test", "c'est vrai ce numéro ?", "ça marche ?", "is this real",
    "is this real?", "coucou je teste", "je teste le numéro anti-relou", "ça répond vraiment ?",
    "lol c'est vrai ?", "Test du numéro vu sur Twitter", "hello?", "testing",
)
_TESTER_SECOND = ("ça marche vraiment ?", "test 2", "?", "re test", "ok ça marche !", "bien joué")
_TROLL_BODIES = (
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
        if not 1 <= self.sim_prefixes <= len(_PREFIXES_07):
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


class _Draw:
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
        return self.number(_PREFIXES_06 if self.rng.random() < _SHARE_06 else _PREFIXES_07)

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
    s, draw = scenario, _Draw(scenario.seed)
    rng, out = draw.rng, []
    end = s.end_ms

    for _ in range(s.count(s.genuine_pests)):
        sender = draw.any_mobile()
        at = draw.moment(s, _GENUINE_DAY_WEIGHTS, _GENUINE_TAIL_WEIGHT, _GENUINE_HOUR_WEIGHTS)
        draw.text(out, at, sender, rng.choice(_GENUINE_FIRST), "genuine")
        for _ in range(rng.randint(*s.genuine_texts) - 1):
            if rng.random() < 0.6:  # minutes later
                at += rng.randint(1 * 60, 45 * 60) * SECOND_MS
            else:  # hours later
                at += rng.randint(1 * 3600, 10 * 3600) * SECOND_MS
            if at >= end:
                break  # the simulated week is over
            draw.text(out, at, sender, rng.choice(_GENUINE_FOLLOW_UP), "genuine")

    for _ in range(s.count(s.testers)):
        sender = draw.any_mobile()
        at = draw.moment(s, _TESTER_DAY_WEIGHTS, _TESTER_TAIL_WEIGHT, _TESTER_HOUR_WEIGHTS)
        draw.text(out, at, sender, rng.choice(_TESTER_BODIES), "tester")
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
        favourites = rng.sample(_TROLL_BODIES, 3)
        for i in range(rng.randint(*s.persistent_texts)):
            body = rng.choice(favourites) if rng.random() < 0.7 else f"{rng.choice(_TROLL_BODIES)} {i}"
            draw.text(out, flood_at(rng.randrange(joined_s, span_s)), sender, body, "persistent_troll")

    prefixes = rng.sample(_PREFIXES_07, s.sim_prefixes)
    blocks = {p: f"{rng.randrange(100):02d}" for p in prefixes}  # a batch of SIMs: 7 56 12 xx xx
    for _ in range(s.count(s.sim_rotating_trolls)):
        prefix = rng.choice(prefixes)
        sender = draw.number((prefix,), blocks[prefix])
        burst_len_s = rng.randint(60, 20 * 60)
        burst_start_s = rng.randrange(max(1, span_s - burst_len_s))
        for _ in range(rng.randint(*s.sim_texts)):
            at = flood_at(burst_start_s + rng.randrange(burst_len_s))
            draw.text(out, at, sender, rng.choice(_TROLL_BODIES), "sim_rotating_troll")

    for _ in range(s.count(s.one_shot_trolls)):
        sender = draw.any_mobile()
        # The forum thread spreads fast, then interest fades: most texts in the first hour.
        at = flood_at(int(rng.triangular(0, span_s, span_s * 0.2)))
        draw.text(out, at, sender, rng.choice(_TROLL_BODIES), "one_shot_troll")

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


# --------------------------------------------------------------------------- outcomes

# A policy under test: takes the texts (sorted by time) and returns, per message id, the cost
# in micro-euros of the reply it approved, or None when it sent none. Ids left out count as
# None. Report progress through a closure (e.g. a ``Progress``) if you want it.
PolicyRunner = Callable[[Sequence[SimText]], Mapping[str, int | None]]


@dataclass
class Outcome:
    """What a policy did with the texts. Money is in micro-euros (1 EUR = 1_000_000)."""

    name: str
    eur_spent: int  # micro-euros, despite the name
    genuine_senders_answered: int  # distinct genuine senders who got at least one reply
    testers_answered: int  # distinct testers who got at least one reply
    troll_spend_micros: int  # spend on replies to any troll kind
    budget_ran_out_at_ms: int | None  # after this reply the budget could not pay another
    # (at_ms, cumulative spend micros, cumulative genuine senders answered), on a regular grid
    series: list[tuple[int, int, int]] = field(default_factory=list)
    texts_answered: int = 0
    budget_micros: int = 0
    start_ms: int = 0  # origin of "day N hh:mm" (UTC midnight of the first text's day)
    flood_window_ms: tuple[int, int] | None = None  # first and last troll text, if any


def _sorted(texts: Iterable[SimText]) -> list[SimText]:
    return sorted(texts, key=lambda t: (t.at_ms, t.message_id))


def outcome_from_decisions(
    name: str,
    texts: Iterable[SimText],
    decisions: Mapping[str, int | None],
    budget_micros: int,
    *,
    reply_cost_micros: int | None = None,
    start_ms: int | None = None,
    sample_every_ms: int = 15 * MINUTE_MS,
) -> Outcome:
    """Score approved replies (``{message_id: cost_micros or None}``) against the ground truth.

    Each reply is counted at its text's time. The budget has "run out" at the reply after which
    ``budget_micros - spent < reply_cost_micros`` (default: the cheapest approved reply); a
    policy that pauses or paces replies without emptying the budget never runs out.
    """
    ordered = _sorted(texts)
    known = {t.message_id for t in ordered}
    unknown = [mid for mid in decisions if mid not in known]
    if unknown:
        raise ValueError(f"{len(unknown)} decisions name message ids that are not in the texts")
    costs = {}
    for mid, cost in decisions.items():
        if cost is None:
            continue
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError("a decision's cost must be a non-negative int (micros) or None")
        costs[mid] = cost
    threshold = reply_cost_micros if reply_cost_micros is not None else min(costs.values(), default=None)
    if start_ms is None:
        start_ms = (ordered[0].at_ms // DAY_MS) * DAY_MS if ordered else 0
    if sample_every_ms <= 0:
        raise ValueError("sample_every_ms must be positive")

    spent = troll = answered_texts = 0
    genuine: set[str] = set()
    testers: set[str] = set()
    ran_out = None
    if ordered and threshold is not None and budget_micros < threshold:
        ran_out = ordered[0].at_ms  # could not pay a single reply
    series: list[tuple[int, int, int]] = []
    next_sample = start_ms
    trolls = [t.at_ms for t in ordered if t.kind in TROLL_KINDS]

    for t in ordered:
        while next_sample < t.at_ms:
            series.append((next_sample, spent, len(genuine)))
            next_sample += sample_every_ms
        cost = costs.get(t.message_id)
        if cost is None:
            continue
        spent += cost
        answered_texts += 1
        if t.kind == "genuine":
            genuine.add(t.sender)
        elif t.kind == "tester":
            testers.add(t.sender)
        elif t.kind in TROLL_KINDS:
            troll += cost
        if ran_out is None and threshold is not None and budget_micros - spent < threshold:
            ran_out = t.at_ms
    series.append((next_sample, spent, len(genuine)))

    return Outcome(
        name=name, eur_spent=spent, genuine_senders_answered=len(genuine),
        testers_answered=len(testers), troll_spend_micros=troll, budget_ran_out_at_ms=ran_out,
        series=series, texts_answered=answered_texts, budget_micros=budget_micros,
        start_ms=start_ms, flood_window_ms=(trolls[0], trolls[-1]) if trolls else None,
    )


def run_policy(name: str, runner: PolicyRunner, texts: Sequence[SimText], budget_micros: int,
               *, reply_cost_micros: int | None = None) -> Outcome:
    """Run a policy over the texts (sorted by time) and score its decisions."""
    ordered = _sorted(texts)
    return outcome_from_decisions(name, ordered, runner(ordered), budget_micros,
                                  reply_cost_micros=reply_cost_micros)


def answer_every_text(texts: Iterable[SimText], reply_cost_micros: int, budget_micros: int) -> Outcome:
    """The 2017 behaviour: every text gets a reply while the budget lasts."""
    decisions: dict[str, int | None] = {}
    spent = 0
    for t in _sorted(texts):
        if spent + reply_cost_micros <= budget_micros:
            decisions[t.message_id] = reply_cost_micros
            spent += reply_cost_micros
    return outcome_from_decisions("answer every text (2017)", texts, decisions, budget_micros,
                                  reply_cost_micros=reply_cost_micros)


def answer_once_per_sender(texts: Iterable[SimText], reply_cost_micros: int,
                           budget_micros: int) -> Outcome:
    """One reply per sender (his first text) while the budget lasts; nothing else."""
    decisions: dict[str, int | None] = {}
    answered: set[str] = set()
    spent = 0
    for t in _sorted(texts):
        if t.sender not in answered and spent + reply_cost_micros <= budget_micros:
            decisions[t.message_id] = reply_cost_micros
            spent += reply_cost_micros
            answered.add(t.sender)
    return outcome_from_decisions("answer once per sender", texts, decisions, budget_micros,
                                  reply_cost_micros=reply_cost_micros)


# --------------------------------------------------------------------------- report


def format_eur(micros: int) -> str:
    return f"{micros / MICROS_PER_EUR:,.2f}"


def format_day_time(at_ms: int | None, start_ms: int) -> str:
    """``"day 3 22:41"`` (day 1 starts at ``start_ms``), or ``"never"`` for None."""
    if at_ms is None:
        return "never"
    day, within = divmod(at_ms - start_ms, DAY_MS)
    return f"day {day + 1} {within // HOUR_MS:02d}:{within % HOUR_MS // MINUTE_MS:02d}"


REPORT_ROWS = ("budget EUR", "EUR spent", "texts answered", "genuine senders answered",
               "testers answered", "troll spend EUR", "budget ran out")


def render_report(outcomes: Sequence[Outcome], truth: Mapping[str, Mapping[str, int]]) -> str:
    """The outcomes side by side as an aligned text table, under a ground-truth summary."""

    def share(n: int, total: int) -> str:
        return f"{n:,} ({100 * n / total:.1f}%)" if total else f"{n:,}"

    genuine_total = truth["genuine"]["senders"]
    tester_total = truth["tester"]["senders"]
    columns = [[
        format_eur(o.budget_micros),
        format_eur(o.eur_spent),
        f"{o.texts_answered:,}",
        share(o.genuine_senders_answered, genuine_total),
        share(o.testers_answered, tester_total),
        format_eur(o.troll_spend_micros),
        format_day_time(o.budget_ran_out_at_ms, o.start_ms),
    ] for o in outcomes]
    label_w = max(len(r) for r in REPORT_ROWS)
    widths = [max(len(o.name), *(len(c) for c in col)) for o, col in zip(outcomes, columns, strict=True)]

    def line(label: str, cells: Sequence[str]) -> str:
        return "  ".join([label.ljust(label_w), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))])

    summary = ", ".join(f"{kind} {truth[kind]['texts']:,} texts / {truth[kind]['senders']:,} senders"
                        for kind in KINDS)
    lines = [f"texts: {truth['total']['texts']:,} from {truth['total']['senders']:,} senders ({summary})",
             "", line("", [o.name for o in outcomes]),
             line("-" * label_w, ["-" * w for w in widths])]
    lines += [line(label, [col[i] for col in columns]) for i, label in enumerate(REPORT_ROWS)]
    return "\n".join(line.rstrip() for line in lines) + "\n"


# --------------------------------------------------------------------------- plot

_COLORS = ("#c0392b", "#2471a3", "#1e8449", "#8e44ad", "#d68910", "#17202a")


def _nice_max(value: float) -> tuple[float, float]:
    """(axis max, tick step) with about 5 ticks at 1/2/5 x 10^k."""
    if value <= 0:
        return 1.0, 0.2
    raw = value / 5
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    top = step * -(-value // step)
    return top, step


def _fmt_tick(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:g}"


def _chart(outcomes: Sequence[Outcome], title: str, pick: Callable[[tuple[int, int, int]], float],
           flood: tuple[int, int] | None, hline: tuple[float, str] | None) -> str:
    w, h, left, right, top, bottom = 900, 340, 80, 20, 30, 40
    pw, ph = w - left - right, h - top - bottom
    x0 = min(o.start_ms for o in outcomes)
    x1 = max([o.series[-1][0] for o in outcomes if o.series] + [x0 + DAY_MS])
    x1 = x0 + -(-(x1 - x0) // DAY_MS) * DAY_MS  # whole days
    ymax = max([pick(p) for o in outcomes for p in o.series] + [hline[0] if hline else 0])
    ytop, ystep = _nice_max(ymax)

    def sx(ms: int) -> float:
        return left + pw * (ms - x0) / (x1 - x0)

    def sy(v: float) -> float:
        return top + ph - ph * v / ytop

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>']
    if flood:
        fx0, fx1 = sx(max(flood[0], x0)), sx(min(flood[1], x1))
        parts.append(f'<rect class="flood" x="{fx0:.1f}" y="{top}" width="{max(fx1 - fx0, 2):.1f}" '
                     f'height="{ph}" fill="#f5b7b1" fill-opacity="0.45"/>')
        parts.append(f'<text x="{fx0 + 3:.1f}" y="{top + ph - 6}" font-size="11" fill="#922b21">flood</text>')
    v = 0.0
    while v <= ytop + ystep / 1000:
        y = sy(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{_fmt_tick(v)}</text>')
        v += ystep
    for d in range(int((x1 - x0) // DAY_MS) + 1):
        x = sx(x0 + d * DAY_MS)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        if d < (x1 - x0) // DAY_MS:
            parts.append(f'<text x="{sx(x0 + d * DAY_MS + DAY_MS // 2):.1f}" y="{top + ph + 16}" '
                         f'font-size="11" text-anchor="middle">day {d + 1}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    if hline:
        y = sy(hline[0])
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" '
                     f'stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{left + pw - 4}" y="{y - 4:.1f}" font-size="11" text-anchor="end">'
                     f'{html.escape(hline[1])}</text>')
    colors = [_COLORS[i % len(_COLORS)] for i in range(len(outcomes))]
    for o, color in zip(outcomes, colors, strict=True):
        points = " ".join(f"{sx(p[0]):.1f},{sy(pick(p)):.1f}" for p in o.series)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
    legend_w = 40 + 7 * max(len(o.name) for o in outcomes)
    parts.append(f'<rect x="{left + 6}" y="{top + 4}" width="{legend_w}" height="{18 * len(outcomes) + 4}" '
                 f'fill="#fff" fill-opacity="0.85" stroke="#ccc"/>')
    for i, (o, color) in enumerate(zip(outcomes, colors, strict=True)):
        ly = top + 16 + 18 * i
        parts.append(f'<rect x="{left + 12}" y="{ly - 5}" width="14" height="4" fill="{color}"/>')
        parts.append(f'<text x="{left + 32}" y="{ly}" font-size="12">{html.escape(o.name)}</text>')
    parts.append(f'<text x="{left}" y="{top - 10}" font-size="13" font-weight="bold">'
                 f'{html.escape(title)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_plot_html(outcomes: Sequence[Outcome], path: str | os.PathLike[str], *,
                    title: str = "antirelou flood simulation",
                    flood_window_ms: tuple[int, int] | None = None,
                    report: str | None = None) -> Path:
    """One self-contained HTML file: cumulative EUR spent and cumulative genuine senders
    answered over time, one line per outcome, the flood shaded (default: the outcomes' own
    flood window). Optionally embeds a text report. Returns the path written."""
    if not outcomes:
        raise ValueError("nothing to plot")
    flood = flood_window_ms or next((o.flood_window_ms for o in outcomes if o.flood_window_ms), None)
    budgets = {o.budget_micros for o in outcomes}
    budget_line = ((budgets.pop() / MICROS_PER_EUR, "budget") if len(budgets) == 1
                   and 0 < next(iter(budgets)) else None)
    spend = _chart(outcomes, "Cumulative EUR spent", lambda p: p[1] / MICROS_PER_EUR, flood, budget_line)
    people = _chart(outcomes, "Cumulative genuine senders answered", lambda p: p[2], flood, None)
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:24px;color:#17202a}"
        "svg{display:block;margin:12px 0}pre{background:#f8f9f9;padding:12px}</style>",
        "</head>", "<body>", f"<h1>{html.escape(title)}</h1>", spend, people,
        f"<pre>{html.escape(report)}</pre>" if report else "", "</body>", "</html>", "",
    ])
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out


# --------------------------------------------------------------------------- progress


class Progress:
    """A text progress bar on a stream: ``\\r[#####.....] 52% 13000/25000 texts``.

    Redraws at most every ``min_interval_s``; does nothing when disabled or when the stream is
    not a TTY, unless ``force`` is set. ``stream`` defaults to ``sys.stderr`` at creation.
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True, *,
                 force: bool = False, unit: str = "texts", width: int = 30,
                 min_interval_s: float = 0.1) -> None:
        self.total, self.done, self.unit, self.width = max(0, total), 0, unit, width
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.active = enabled and (force or bool(isatty and isatty()))
        self._interval = min_interval_s
        self._last_draw = float("-inf")
        self._drawn_at: int | None = None
        self._closed = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.active or self._closed:
            return
        now = time.monotonic()
        if now - self._last_draw >= self._interval or self.done >= self.total:
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {int(100 * frac):3d}% {self.done}/{self.total} {self.unit}")
        self.stream.flush()
        self._drawn_at = self.done

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.active:
            if self._drawn_at != self.done:
                self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- webhook driver


def created_datetime(at_ms: int) -> str:
    """MessageBird's ``createdDatetime``: ISO 8601 in UTC, whole seconds, ``+00:00``."""
    stamp = dt.datetime.fromtimestamp(at_ms // SECOND_MS, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def webhook_form(text: SimText, recipient: str) -> bytes:
    """The form-encoded body MessageBird posts for an inbound text."""
    return urlencode({"id": text.message_id, "originator": text.sender, "recipient": recipient,
                      "body": text.body, "createdDatetime": created_datetime(text.at_ms)}).encode()


def drive_webhook(texts: Iterable[SimText], url: str, recipient: str, signing_key: str | None, *,
                  rate_per_s: float | None = None, timeout_s: float = 10,
                  progress: Progress | None = None) -> dict[str, int]:
    """POST each text, in the given order, to ``url`` (your own antirelou webhook) as MessageBird
    would, signed when ``signing_key`` is given; at most ``rate_per_s`` requests a second.

    Returns how many requests got each HTTP status (``{"200": n, ...}``; ``"error"`` counts
    requests that got no answer). ``progress`` is advanced once per text, not closed.
    """
    import requests

    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("url must be an http(s) URL")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    counts: dict[str, int] = {}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    started = time.monotonic()
    with requests.Session() as session:
        for i, text in enumerate(texts):
            if rate_per_s is not None:
                wait = started + i / rate_per_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            body = webhook_form(text, recipient)
            if signing_key is not None:
                headers["MessageBird-Signature-JWT"] = sign_webhook(url, body, signing_key)
            try:
                response = session.post(url, data=body, headers=headers, timeout=timeout_s)
                key = str(response.status_code)
                response.close()
            except requests.RequestException:
                key = "error"
            counts[key] = counts.get(key, 0) + 1
            if progress is not None:
                progress.advance(1)
    return counts


# --------------------------------------------------------------------------- command line


REPLY_2017 = (
    "Bonjour. Ce numéro sert à tenir à distance les gens qui insistent. Par votre faute, une "
    "femme ne s'est pas sentie en sécurité. Non, c'est non : elle n'a pas à se justifier. Ne la "
    "contactez plus jamais. Ce message est automatique."
)  # 229 GSM-7 characters: two segments, EUR 0.16 at EUR 0.08 a segment


def campaign_2017(scenario: Scenario, budget_micros: int) -> Campaign:
    """The 2017 campaign: one year from the launch, pacing on, the default policy."""
    return Campaign(
        id="paris-2017", number="33644630001", reply_text=REPLY_2017, language="fr", country="FR",
        budget_micros=budget_micros, price_per_segment_micros=80_000,
        starts_at=scenario.start_ms, ends_at=scenario.start_ms + 365 * DAY_MS,
        originator="AntiRelou",
    )


# The flood rules the simulator tries beside the configured policy (core units): a surge is 5x
# the last hour's first texts a minute (and at least 20); deferred replies wait up to two
# hours, the best 1,000 of them, released at most 5 a minute; a number range may send 5 first
# texts at once, then one every 10 minutes.
FLOOD_RULES: dict[str, object] = {
    "surge_multiple": 5, "surge_min_rate": 20, "surge_quiet_minutes": 10, "surge_queue": 1_000,
    "surge_ttl_ms": 2 * HOUR_MS, "surge_release_per_minute": 5,
    "prefix_burst": 5, "prefix_period_ms": 10 * MINUTE_MS,
}


def core_runner(campaign: Campaign, changes: Mapping[str, object] | None = None,
                stats: dict[str, int] | None = None,
                pipelines: list[Pipeline] | None = None) -> PolicyRunner:
    """Run the texts through the real decision core (``streams.pipeline.Pipeline``:
    screening, the campaign shard, outcomes back to the senders), as the live system would,
    with the campaign's policy (plus ``changes``, core units).

    Between texts the clock ticks once a minute while the campaign has a queue or a surge
    (the live shell ticks every few seconds), and after the last text until the queue is
    empty. ``stats`` (if given) receives the counts of each campaign event type and denial
    reason; ``pipelines`` (if given) receives the pipeline, to read its events."""

    def run(texts: Sequence[SimText]) -> dict[str, int | None]:
        pipeline = Pipeline([campaign])
        if pipelines is not None:
            pipelines.append(pipeline)
        if changes:
            pipeline.shard.control([ChangePolicy("sim-policy", campaign.id, dict(changes),
                                                 "simulator", campaign.starts_at)])
        facts: dict[str, NumberInfo] = {}
        for text in texts:
            info = facts.get(text.sender) or facts.setdefault(text.sender, classify(text.sender))
            pipeline.text(ScreenText(text.message_id, campaign.id, text.sender, text.body,
                                     text.at_ms, "", info.kind, info.country, info.prefix))
        if texts:
            pipeline.tick_until(campaign.id, texts[-1].at_ms + pipeline.policy(campaign.id).surge_ttl_ms
                                + 2 * MINUTE_MS)
        out: dict[str, int | None] = {}
        for event in pipeline.events:
            if isinstance(event, ReplyApproved):
                out[event.message_id] = event.cost_micros
            if stats is not None and hasattr(event, "seq"):
                name = type(event).__name__
                reason = getattr(event, "reason", None)
                key = f"{name}:{reason}" if reason else name
                if name == "ReplyApproved" and event.deferred_at is not None:
                    key = "released"
                stats[key] = stats.get(key, 0) + 1
        return out

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=Scenario.seed)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sender count")
    parser.add_argument("--budget-eur", type=float, default=None,
                        help="default: EUR 3,700 x scale")
    parser.add_argument("--reply-cost-eur", type=float, default=None, help="default: EUR 0.16")
    parser.add_argument("--html", type=Path, help="write the charts to this HTML file")
    parser.add_argument("--webhook", help="also POST every text to this webhook URL (your own)")
    parser.add_argument("--recipient", help="the campaign number the texts are sent to (digits)")
    parser.add_argument("--rate", type=float, default=None, help="webhook requests per second")
    parser.add_argument("--unsigned", action="store_true",
                        help="do not sign (default: sign with MESSAGEBIRD_SIGNING_KEY)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-policy", action="store_true",
                        help="only the two baselines, not the decision core")
    parser.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE",
                        help="also run the core with these policy changes (operator keys, as "
                             "for `antirelou policy set`, e.g. surge_multiple=5); repeatable")
    args = parser.parse_args(argv)
    try:
        extra = parse_changes(args.policy) if args.policy else {}
    except PolicyError as exc:
        parser.error(str(exc))
    key = None
    if args.webhook:
        if not args.recipient:
            parser.error("--webhook needs --recipient")
        key = None if args.unsigned else os.environ.get("MESSAGEBIRD_SIGNING_KEY") or None
        if key is None and not args.unsigned:
            parser.error("set MESSAGEBIRD_SIGNING_KEY or pass --unsigned")

    scenario = Scenario(seed=args.seed, scale=args.scale)
    began = time.perf_counter()
    texts = generate(scenario)
    took = time.perf_counter() - began
    print(f"generated {len(texts):,} texts in {took:.2f} s", file=sys.stderr)
    truth = ground_truth(texts)
    cost = (scenario.reply_cost_micros if args.reply_cost_eur is None
            else round(args.reply_cost_eur * MICROS_PER_EUR))
    budget = round(scenario.budget_micros * args.scale if args.budget_eur is None
                   else args.budget_eur * MICROS_PER_EUR)
    outcomes = [answer_every_text(texts, cost, budget), answer_once_per_sender(texts, cost, budget)]
    if not args.no_policy:
        campaign = campaign_2017(scenario, budget)
        began = time.perf_counter()
        outcomes.append(run_policy("configured policy", core_runner(campaign), texts, budget,
                                   reply_cost_micros=cost))
        # The same screening without pacing: what the flood rules alone save.
        outcomes.append(run_policy("policy, pacing off", core_runner(campaign, {"pacing": False}),
                                   texts, budget, reply_cost_micros=cost))
        # Without pacing, with surge mode and the per-prefix limit (FLOOD_RULES).
        surge_stats: dict[str, int] = {}
        outcomes.append(run_policy(
            "pacing off, surge+prefix",
            core_runner(campaign, {"pacing": False, **FLOOD_RULES}, surge_stats),
            texts, budget, reply_cost_micros=cost))
        if extra:
            outcomes.append(run_policy("--policy", core_runner(campaign, extra), texts, budget,
                                       reply_cost_micros=cost))
        print(f"configured policy: {len(texts):,} texts through the core in "
              f"{time.perf_counter() - began:.2f} s", file=sys.stderr)
    report = render_report(outcomes, truth)
    print(report)
    if not args.no_policy:
        labels = {"SurgeStarted": "surges", "ReplyDeferred": "deferred", "released": "released",
                  "ReplyExpired:ttl": "expired (TTL)", "ReplyExpired:queue_full": "pushed out",
                  "ReplyDenied:queue_full": "refused (queue full)",
                  "ReplyDenied:prefix_flood": "prefix_flood"}
        print("pacing off, surge+prefix: " + ", ".join(
            f"{label} {surge_stats.get(k, 0):,}" for k, label in labels.items()))
    if args.html:
        write_plot_html(outcomes, args.html, flood_window_ms=scenario.flood_window_ms, report=report)
        print(f"charts written to {args.html}", file=sys.stderr)
    if args.webhook:
        with Progress(len(texts), enabled=not args.no_progress) as bar:
            counts = drive_webhook(texts, args.webhook, args.recipient, key, rate_per_s=args.rate,
                                   progress=bar)
        print("webhook answers: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
