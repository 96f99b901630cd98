"""The grid's traffic: one cell's texts, drawn from ranges, never from one trace.

A cell is named by its shape (``raid`` timing, raid ``bodies``, ``compressed``, how many
``campaigns`` the raid hits); everything else is drawn from the seed (``draw_cell``):

- the launch: 5-200 first texts a minute (log-uniform) for 10-30 minutes on a fresh
  campaign, arriving as a step or as a climb over 3-15 minutes, after 10-60 quiet minutes
  of 0.2-2 texts a minute, then 2-15 a minute of ordinary traffic for four hours;
- the genuine pests: their words (``bodies.PestWords``: diverse or the fixed twelve), the
  share who text again (0-70 %), at what pace (minutes or hours apart, mixed);
- each raid: 500-20,000 numbers (log-uniform) over 1-10 minutes, of which 0-8 persistent
  numbers (tens to hundreds of texts), 0-30 % SIM-rotating (a few number ranges, 2-10 texts
  each) and the rest one-shot; 0-50 % of the one-shot numbers text again at a human pace;
- ``during`` the launch, ``after`` it (20-120 minutes), ``two`` waves (one during, one
  after, the second with the first's words half the time), or ``none``;
- ``compressed``: the whole cell's texts squeezed into 100 seconds, in order;
- two campaigns: the same raid numbers hit the second campaign 0-60 minutes later, beside
  its own ordinary traffic.

Pure generation: ``random.Random`` seeded by the cell's name and seed; no clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from actors.textfilter import normalise
from schemas.campaign import Campaign
from streams.simulate.bodies import RAID_BODIES, VOCABULARIES, PestWords, RaidWords
from streams.simulate.generation import (
    DAY_MS,
    MICROS_PER_EUR,
    MINUTE_MS,
    PREFIXES_07,
    SECOND_MS,
    TESTER_BODIES,
    Draw,
    SimText,
)
from streams.simulate.outcomes import REPLY_2017

RAIDS = ("none", "during", "after", "two")
CAMPAIGN_IDS = ("paris", "lyon")
START_MS = 1_796_148_000_000  # 2026-12-01T18:00:00Z: a fresh campaign, no history
COMPRESSED_SPAN_MS = 100 * SECOND_MS
RESERVE_EUR = 100


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: its shape (the name) and what the seed drew for it."""

    raid: str
    bodies: str | None  # None without a raid
    compressed: bool
    campaigns: int
    seed: int
    vocabulary: str = "diverse"
    launch_per_min: float = 50.0
    launch_minutes: int = 15
    launch_climb_minutes: int = 0  # 0: a step
    quiet_minutes: int = 30
    quiet_per_min: float = 1.0
    ordinary_per_min: float = 5.0
    genuine_retext: float = 0.3
    retext_minutes_share: float = 0.6  # of those who text again: minutes apart, else hours
    raid_numbers: tuple[int, ...] = ()
    raid_minutes: tuple[float, ...] = ()
    persistent: int = 0
    sim_share: float = 0.0
    raid_retext: float = 0.0
    second_wave_same_words: bool = False
    second_campaign_delay_minutes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        shape = "compressed" if self.compressed else "spread"
        bodies = self.bodies or "-"
        return f"{self.raid}/{bodies}/{shape}/{self.campaigns}c"

    @property
    def mimic(self) -> bool:
        return self.bodies == "mimic"

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out["name"] = self.name
        out["mimic"] = self.mimic
        return out


def grid_shapes() -> list[tuple[str, str | None, bool, int]]:
    """Every shape of the default grid: (raid, bodies, compressed, campaigns)."""
    shapes: list[tuple[str, str | None, bool, int]] = []
    for raid in RAIDS:
        for bodies in ((None,) if raid == "none" else RAID_BODIES):
            for compressed in (False, True):
                for campaigns in (1, 2):
                    shapes.append((raid, bodies, compressed, campaigns))
    return shapes


def draw_cell(raid: str, bodies: str | None, compressed: bool, campaigns: int, seed: int) -> Cell:
    """The shape's parameters drawn from ``seed`` (the same shape and seed: the same cell)."""
    rng = random.Random(f"cell:{raid}:{bodies}:{compressed}:{campaigns}:{seed}")
    waves = {"none": 0, "during": 1, "after": 1, "two": 2}[raid]
    return Cell(
        raid=raid, bodies=bodies, compressed=compressed, campaigns=campaigns, seed=seed,
        vocabulary=rng.choice(VOCABULARIES),
        launch_per_min=round(_log_uniform(rng, 5, 200), 1),
        launch_minutes=rng.randint(10, 30),
        launch_climb_minutes=rng.choice((0, rng.randint(3, 15))),
        quiet_minutes=rng.randint(10, 60),
        quiet_per_min=round(rng.uniform(0.2, 2), 2),
        ordinary_per_min=round(rng.uniform(2, 15), 1),
        genuine_retext=round(rng.uniform(0, 0.7), 2),
        retext_minutes_share=round(rng.random(), 2),
        raid_numbers=tuple(int(_log_uniform(rng, 500, 20_000)) for _ in range(waves)),
        raid_minutes=tuple(round(rng.uniform(1, 10), 1) for _ in range(waves)),
        persistent=rng.randint(0, 8) if waves else 0,
        sim_share=round(rng.uniform(0, 0.3), 2) if waves else 0.0,
        raid_retext=round(rng.uniform(0, 0.5), 2) if waves else 0.0,
        second_wave_same_words=rng.random() < 0.5,
        second_campaign_delay_minutes=rng.randint(0, 60),
    )


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


@dataclass
class CellTraffic:
    """A cell's texts (sorted), its campaigns, and the ground truth the score needs."""

    cell: Cell
    texts: list[SimText]
    campaigns: list[Campaign]
    raids: dict[str, list[tuple[int, int]]]  # campaign -> [first, last] troll text of each raid
    raid_words: dict[str, set[tuple[str, ...]]]  # campaign -> the raid bodies, normalised


def campaign(cid: str, start: int) -> Campaign:
    return Campaign(id=cid, number="3364463000" + str(CAMPAIGN_IDS.index(cid) + 1),
                    reply_text=REPLY_2017, language="fr", country="FR",
                    budget_micros=3_700 * MICROS_PER_EUR, price_per_segment_micros=80_000,
                    starts_at=start - DAY_MS, ends_at=start + 365 * DAY_MS, originator="AntiRelou")


class _Gen:
    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.draw = Draw(hash_seed(cell))
        self.rng = self.draw.rng
        self.pests = PestWords(cell.vocabulary)
        self.out: list[SimText] = []
        self.raid_bodies: dict[str, set[str]] = {cid: set() for cid in CAMPAIGN_IDS}

    def text(self, at: int, sender: str, body: str, kind: str, cid: str) -> None:
        self.out.append(SimText(at, sender, body, self.draw.message_id(), kind, cid))

    def pest(self, at: int, cid: str) -> None:
        rng, cell = self.rng, self.cell
        sender = self.draw.any_mobile()
        self.text(at, sender, self.pests.first(rng), "genuine", cid)
        if rng.random() < cell.genuine_retext:
            for _ in range(rng.randint(1, 2)):
                if rng.random() < cell.retext_minutes_share:
                    at += rng.randint(2 * 60, 45 * 60) * SECOND_MS
                else:
                    at += rng.randint(3600, 10 * 3600) * SECOND_MS
                self.text(at, sender, self.pests.follow_up(rng), "genuine", cid)

    def stream(self, cid: str, start: int, minutes: float, per_min: float,
               climb: int = 0) -> None:
        """Pests arriving at ``per_min`` (Poisson) for ``minutes``; ``climb``: the rate rises
        linearly from nothing over that many minutes first. A few testers among them."""
        at = float(start)
        end = start + minutes * MINUTE_MS
        while True:
            rate = per_min
            if climb and at < start + climb * MINUTE_MS:
                rate = max(per_min * (at - start) / (climb * MINUTE_MS), per_min / 20)
            at += self.rng.expovariate(rate) * MINUTE_MS
            if at >= end:
                return
            if self.rng.random() < 0.05:
                self.text(int(at), self.draw.any_mobile(), self.rng.choice(TESTER_BODIES),
                          "tester", cid)
            else:
                self.pest(int(at), cid)

    def raid(self, cid: str, start: int, numbers: int, minutes: float, words: RaidWords,
             senders: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        """One raid wave on ``cid``; ``senders``: the numbers of an earlier wave on another
        campaign (the same numbers again). Returns the wave's (number, kind)."""
        rng, cell = self.rng, self.cell
        span_s = max(1, int(minutes * 60))
        peak = rng.uniform(0, 0.6)
        if senders is None:
            senders = []
            for _ in range(cell.persistent):
                senders.append((self.draw.any_mobile(), "persistent_troll"))
            prefixes = rng.sample(PREFIXES_07, rng.randint(1, 4))
            for _ in range(int(numbers * cell.sim_share)):
                prefix = rng.choice(prefixes)
                senders.append((self.draw.number((prefix,), f"{rng.randrange(100):02d}"),
                                "sim_rotating_troll"))
            while len(senders) < numbers:
                senders.append((self.draw.any_mobile(), "one_shot_troll"))
        for number, kind in senders:
            offset = int(rng.triangular(0, span_s, span_s * peak))
            at = start + offset * SECOND_MS
            if kind == "persistent_troll":
                for _ in range(rng.randint(30, 300)):
                    self.raid_text(start + rng.randrange(span_s + 20 * 60) * SECOND_MS,
                                   number, words.body(rng), kind, cid)
            elif kind == "sim_rotating_troll":
                for _ in range(rng.randint(2, 10)):
                    self.raid_text(start + rng.randrange(span_s) * SECOND_MS, number,
                                   words.body(rng), kind, cid)
            else:
                self.raid_text(at, number, words.body(rng), kind, cid)
                if rng.random() < cell.raid_retext:  # again, at a human pace
                    self.text(at + rng.randint(2 * 60, 45 * 60) * SECOND_MS, number,
                              words.again(rng), kind, cid)
        return senders

    def raid_text(self, at: int, sender: str, body: str, kind: str, cid: str) -> None:
        self.raid_bodies[cid].add(body)
        self.text(at, sender, body, kind, cid)


def hash_seed(cell: Cell) -> int:
    return random.Random(f"traffic:{cell.name}:{cell.seed}").getrandbits(64)


def generate_cell(cell: Cell) -> CellTraffic:
    """Every text of the cell, sorted by time (ties by message id), with its ground truth."""
    g = _Gen(cell)
    rng = g.rng
    t0 = START_MS
    main, other = CAMPAIGN_IDS
    launch_at = t0 + cell.quiet_minutes * MINUTE_MS
    launch_end = launch_at + cell.launch_minutes * MINUTE_MS
    g.stream(main, t0, cell.quiet_minutes, cell.quiet_per_min)
    g.stream(main, launch_at, cell.launch_minutes, cell.launch_per_min, cell.launch_climb_minutes)
    g.stream(main, launch_end, 240, cell.ordinary_per_min)
    if cell.campaigns > 1:
        g.stream(other, t0, cell.quiet_minutes + cell.launch_minutes + 240,
                 max(0.5, cell.ordinary_per_min / 2))
    waves: list[int] = []
    if cell.raid in ("during", "two"):
        latest = max(launch_at, launch_end - int(cell.raid_minutes[0] * MINUTE_MS))
        waves.append(rng.randint(launch_at + MINUTE_MS, max(launch_at + MINUTE_MS, latest)))
    if cell.raid == "after":
        waves.append(launch_end + rng.randint(20, 120) * MINUTE_MS)
    if cell.raid == "two":
        waves.append(waves[0] + int(cell.raid_minutes[0] * MINUTE_MS)
                     + rng.randint(30, 120) * MINUTE_MS)
    first_words: RaidWords | None = None
    for i, at in enumerate(waves):
        assert cell.bodies is not None
        words = (first_words if i and cell.second_wave_same_words and first_words
                 else RaidWords(cell.bodies, rng, g.pests))
        first_words = first_words or words
        senders = g.raid(main, at, cell.raid_numbers[i], cell.raid_minutes[i], words)
        if cell.campaigns > 1:
            g.raid(other, at + cell.second_campaign_delay_minutes * MINUTE_MS,
                   cell.raid_numbers[i], cell.raid_minutes[i], words, senders)
    texts = sorted(g.out, key=lambda t: (t.at_ms, t.message_id))
    if cell.compressed and texts:
        texts = _compressed(texts)
    cids = list(CAMPAIGN_IDS[:cell.campaigns])
    return CellTraffic(cell, texts, [campaign(cid, t0) for cid in cids],
                       _raid_windows(texts, len(waves)),
                       {cid: {normalise(b) for b in g.raid_bodies[cid]} for cid in cids})


def _compressed(texts: list[SimText]) -> list[SimText]:
    first, last = texts[0].at_ms, texts[-1].at_ms
    span = max(1, last - first)
    return [SimText(first + (t.at_ms - first) * COMPRESSED_SPAN_MS // span, t.sender, t.body,
                    t.message_id, t.kind, t.campaign) for t in texts]


def _raid_windows(texts: list[SimText], waves: int) -> dict[str, list[tuple[int, int]]]:
    """Each campaign's raids as [first, last] first text of a raid number: cut into ``waves``
    groups at their largest gaps (the waves are apart by at least 30 minutes, compressed or
    not: the cut is relative)."""
    out: dict[str, list[tuple[int, int]]] = {}
    if not waves:
        return out
    by_campaign: dict[str, list[int]] = {}
    seen: set[tuple[str, str]] = set()
    for t in texts:  # each raid number's first text: its later ones do not stretch the raid
        if t.kind.endswith("_troll") and (t.campaign, t.sender) not in seen:
            seen.add((t.campaign, t.sender))
            by_campaign.setdefault(t.campaign, []).append(t.at_ms)
    for cid, times in by_campaign.items():
        gaps = sorted(range(1, len(times)), key=lambda i: times[i] - times[i - 1])[-(waves - 1):] \
            if waves > 1 else []
        cuts = [0, *sorted(gaps), len(times)]
        out[cid] = [(times[a], times[b - 1]) for a, b in zip(cuts, cuts[1:], strict=False)]
    return out
