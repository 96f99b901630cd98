"""What the events show about a request, beyond its own sender: the cohort it arrived in and
the words it carries. Pure; the campaign (``actors.decide``, ``actors.evolve``) keeps one
``Cohorts`` and one ``WordStats`` per campaign and feeds them every first text, in the
events' order, so a replay rebuilds them exactly.

**Cohorts.** First texts (requests reaching the campaign) are counted per UTC minute
(``minute = now // 60_000``). The *baseline* is the mean of the last ``BASELINE_MINUTES``
(60) closed minutes, with a **prior** for a fresh campaign: unseen minutes count as
``expected`` first texts each (``surge_expected_per_minute``), so a launch is not compared
with nothing. A minute is a **spike** (a surge's cohort) when ``count * 60 > multiple *
baseline_sum`` with at least ``min_rate`` first texts. Texts that carried a raid's words when
they came (denied ``raid_words``) are left out of the baseline, and a minute that was mostly
theirs is left out whole, so a raid never becomes the campaign's normal (nor its absence a
zero baseline); everything else goes in, so a launch of people does within its hour and the
ordinary traffic after it trips nothing. Each closed minute's count and the baseline before it
are remembered (``COHORT_MINUTES``): a request is judged, at the end of its safety delay, by
the minute it arrived in, once that minute is whole. A surge is a run of spikes: it starts on
a spiking minute and ends after ``quiet`` minutes without one (``surge_transition``). It
decides nothing by itself: it scopes a spend bound.

**Words.** ``WordStats`` counts the word keys (``actors.words``) of the first texts of the last
``LAG_MINUTES`` (30), minute by minute; the last ``WINDOW_MINUTES`` (10) are the *window*. The
older minutes make the *reference*: the words of the texts that carried no word marked then,
a spike's minute weighed down to the baseline's rate (its shares kept, its mass not: a flood,
found or not, is not the campaign's normal), halved past ``REF_CAP`` texts so it follows the
campaign. A word is **marked** (a raid's) when at least ``MIN_TEXTS`` texts of the window
carried it, ``LIFT`` times its reference share and ``Z`` standard errors above it by the
two-proportion test (``lifted``): a word that arrives with a burst and was rare before it. A
common word at its usual share never is; nor five pests who wrote the same words in a few
minutes; a small reference proves little and so marks little; a fresh campaign's first words
are not judged until they have a past. For a *young* campaign (a few dozen texts of past) the
cohort's test speaks instead (``_novel_bodies``): when most of the window's texts are bodies
pasted again and again that the campaign never saw, their words are marked.

A mark is a burst: from the first minute of the lag that carried the word to the last minute
it was seen lifted (a word marked within ``MARK_MEMORY_MINUTES`` needs only
``MIN_TEXTS_AGAIN`` texts to be again: a raid's tail, its second wave). A request is a raid's
when it arrived within a burst of one of its words (``WINDOW_MINUTES`` after it), so a raid's
first texts, sent while it climbed to the mark, are the raid's too, and a pest who writes the
same words after the raid is not; a sender's later text with a raid's words is, within
``MARK_MEMORY_MINUTES`` (a raid's number refused and texting again). ``raids`` keeps the union
of the bursts: the minutes in which a raid was found, whose held-back requests are released
only up to the baseline's rate (the people among them).

**Pasted bodies.** When a minute closes, ``paste_floor`` is how many texts the
``PASTE_RANK``-th most sent body with content words had (the lag and the reference). A body
sent by ``PASTE_OUTLIER`` times that, and by ``PASTE_MIN`` texts at least, stands out of
the crowd of texts people share (``is_pasted``): among held-back requests it ranks after
the rest. It refuses nothing: a fresh campaign's one slogan pasted by thousands, among
pests who write a few shared texts (which keeps the cohort's test from speaking), is paid
last instead of at random.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Any

from actors.words import is_body_key
from schemas.policy import Policy

MINUTE_MS = 60_000
BASELINE_MINUTES = 60
COHORT_MINUTES = 24 * 60
NO_MINUTE = -1

WINDOW_MINUTES = 10
LAG_MINUTES = 30
MIN_TEXTS = 10
MIN_TEXTS_AGAIN = 3
LIFT = 4
Z = 5
REF_MIN = 20
REF_UNIT = 1_000  # the reference counts in thousandths of a text (a spike's minutes weigh less)
NOVEL_TEXTS = 50
NOVEL_REF = 20
NOVEL_MIN = 5
NOVEL_SHARE_PER_MILLE = 20
NOVEL_PERCENT = 30
NOVEL_SHARE_PER_MILLE_FRESH = 5
NOVEL_PERCENT_FRESH = 10
NOVEL_UNIQUE_PERCENT = 10
NOVEL_STEP = 3
REF_CAP = 20_000
REF_WORDS = 8_192
WINDOW_WORDS = 4_096
MARK_MEMORY_MINUTES = 12 * 60
PASTE_RANK = 4
PASTE_OUTLIER = 3
PASTE_MIN = 20


# --- cohorts ---------------------------------------------------------------------------


@dataclass(slots=True)
class Cohorts:
    minute: int = NO_MINUTE  # the UTC minute ``count`` belongs to
    count: int = 0  # first texts in that minute
    marked: int = 0  # of which carried a raid's words when they came (not in the baseline)
    # Closed minutes' counts without the marked ones, oldest first, at most BASELINE_MINUTES.
    # Replaced when a minute closes, never changed in place (a decision's copy shares it).
    history: list[int] = field(default_factory=list)
    # (minute, first texts, baseline sum before it) of the closed minutes that had first
    # texts, oldest first, within COHORT_MINUTES. Replaced, never changed in place.
    recent: list[tuple[int, int, int]] = field(default_factory=list)
    active: bool = False  # a surge is on
    last_surge_minute: int = NO_MINUTE

    def copy(self) -> Cohorts:
        return Cohorts(self.minute, self.count, self.marked, self.history, self.recent,
                       self.active, self.last_surge_minute)

    def to_dict(self) -> dict[str, Any]:
        return {"minute": self.minute, "count": self.count, "marked": self.marked,
                "history": list(self.history), "recent": [list(r) for r in self.recent],
                "active": self.active, "last_surge_minute": self.last_surge_minute}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cohorts:
        return cls(minute=data["minute"], count=data["count"], marked=data.get("marked", 0),
                   history=list(data["history"]),
                   recent=[(r[0], r[1], r[2]) for r in data.get("recent", ())],
                   active=bool(data["active"]), last_surge_minute=data["last_surge_minute"])


def baseline_sum(history: list[int], expected: int) -> int:
    """First texts in the baseline's ``BASELINE_MINUTES`` minutes, unseen minutes at the prior."""
    return sum(history) + expected * max(0, BASELINE_MINUTES - len(history))


def is_spike(count: int, base: int, policy: Policy) -> bool:
    """Whether a minute of ``count`` first texts over a baseline of ``base`` (first texts in
    ``BASELINE_MINUTES`` minutes) is a spike under ``policy`` (never with surges off)."""
    return (policy.surge_multiple > 0 and count >= policy.surge_min_rate
            and count * BASELINE_MINUTES > policy.surge_multiple * base)


def roll(c: Cohorts, now: int, policy: Policy) -> None:
    """Move to the minute of ``now`` (never back: a late text counts in the current minute)."""
    expected = policy.surge_expected_per_minute
    minute = now // MINUTE_MS
    if c.minute == NO_MINUTE:
        c.minute = minute
        return
    if minute <= c.minute:
        return
    closed = c.minute
    if c.count:
        keep = closed - COHORT_MINUTES
        recent = c.recent
        start = bisect.bisect_left(recent, (keep,)) if recent and recent[0][0] < keep else 0
        c.recent = recent[start:] + [(closed, c.count, baseline_sum(c.history, expected))]
    idle = min(minute - closed - 1, BASELINE_MINUTES)
    # A minute that was mostly a raid's is left out whole: the baseline stays what it was.
    # The rest goes in, spikes too: a launch of people becomes the campaign's normal within
    # its first minutes (a flood the words cannot tell from people does too: its next wave
    # looks normal; the allowance, not the baseline, bounds what such floods cost).
    closed_count = [] if 2 * c.marked > c.count else [c.count - c.marked]
    c.history = (c.history + closed_count + [0] * idle)[-BASELINE_MINUTES:]
    c.minute, c.count, c.marked = minute, 0, 0


def observe(c: Cohorts, now: int, policy: Policy, marked: bool) -> None:
    """Count one first text at ``now`` (``marked``: it carried a raid's words)."""
    roll(c, now, policy)
    c.count += 1
    c.marked += marked
    if is_spike(c.count, baseline_sum(c.history, policy.surge_expected_per_minute), policy):
        c.last_surge_minute = c.minute


def cohort_of(c: Cohorts, minute: int, expected: int) -> tuple[int, int]:
    """``(first texts, baseline sum)`` of ``minute``: (0, 0) when none arrived in it or it is
    forgotten."""
    if minute == c.minute:
        return c.count, baseline_sum(c.history, expected)
    i = bisect.bisect_left(c.recent, (minute,))
    if i < len(c.recent) and c.recent[i][0] == minute:
        return c.recent[i][1], c.recent[i][2]
    return 0, 0


def surge_transition(c: Cohorts, policy: Policy) -> str | None:
    """"enter" / "leave" / None for cohorts already rolled to now: enter on a spiking minute,
    leave after ``surge_quiet_minutes`` minutes without one (or with surges off)."""
    if c.active:
        if policy.surge_multiple <= 0 or c.minute - c.last_surge_minute > policy.surge_quiet_minutes:
            return "leave"
        return None
    if is_spike(c.count, baseline_sum(c.history, policy.surge_expected_per_minute), policy):
        return "enter"
    return None


# --- words ---------------------------------------------------------------------------


@dataclass(slots=True)
class WordStats:
    # [minute, requests, {word: requests carrying it}, {a request's words: requests}] for the
    # last LAG_MINUTES, oldest first.
    minutes: list[list[Any]] = field(default_factory=list)
    ref: dict[str, int] = field(default_factory=dict)  # older minutes' word counts
    ref_texts: int = 0  # requests in the reference
    # word -> its marks: [first, last] minutes of each burst in which it was a raid's,
    # oldest first, within MARK_MEMORY_MINUTES.
    marks: dict[str, list[list[int]]] = field(default_factory=dict)
    # The raids' minutes: the union of every mark's burst, [first, last], oldest first.
    raids: list[list[int]] = field(default_factory=list)
    # How many texts the PASTE_RANK-th most sent body (with content words) had, when the last
    # minute closed: the crowd of shared texts a paste stands out of (``is_pasted``).
    paste_floor: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"minutes": [[m, n, dict(w), dict(t)] for m, n, w, t in self.minutes],
                "ref": dict(self.ref),
                "ref_texts": self.ref_texts,
                "marks": {w: [list(i) for i in v] for w, v in self.marks.items()},
                "raids": [list(r) for r in self.raids],
                "paste_floor": self.paste_floor}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordStats:
        return cls(minutes=[[m, n, dict(w), dict(t)] for m, n, w, t in data["minutes"]],
                   ref=dict(data["ref"]),
                   ref_texts=data["ref_texts"],
                   marks={w: [[i[0], i[1]] for i in v] for w, v in data["marks"].items()},
                   raids=[[r[0], r[1]] for r in data["raids"]],
                   paste_floor=data.get("paste_floor", 0))


def lifted(carried: int, texts: int, ref_carried: int, ref_texts: int, z: int = Z) -> bool:
    """Whether ``carried`` of ``texts`` recent requests is a share far above ``ref_carried``
    of ``ref_texts`` before: at least ``LIFT`` times it (the reference counted with one text
    more) and ``Z`` standard errors above it by the two-proportion test (pooled), so that a
    small reference, which proves little, marks little. In integers."""
    if ref_texts <= 0 or carried * ref_texts < LIFT * texts * (ref_carried + 1):
        return False
    total, k = texts + ref_texts, carried + ref_carried
    d = carried * ref_texts - ref_carried * texts
    return d > 0 and d * d * total >= z * z * k * (total - k) * texts * ref_texts


def words_observe(stats: WordStats, now: int, words: str, cohorts: Cohorts, policy: Policy) -> None:
    """Count one request's words at ``now``; mark those it shows a raid's (``cohorts``: the
    campaign's, to weigh a spike's minutes in the reference)."""
    minute = now // MINUTE_MS
    minutes = stats.minutes
    if not minutes or minute > minutes[-1][0]:
        _words_roll(stats, minute, cohorts, policy)
        minutes.append([minute, 0, {}, {}])
    if not words:
        return  # no words: nothing to count (nor a share to dilute)
    bucket = minutes[-1]  # a late text counts in the current minute
    bucket[1] += 1
    texts = bucket[3]
    if words not in texts and len(texts) >= WINDOW_WORDS:
        words_kept = ""  # that many different texts in a minute: left out of the reference
    else:
        words_kept = words
    texts[words_kept] = texts.get(words_kept, 0) + 1
    counts = bucket[2]
    for w in words.split():
        n = counts.get(w)
        if n is not None:
            counts[w] = n + 1
        elif len(counts) < WINDOW_WORDS:
            counts[w] = 1
        else:
            continue  # a minute of that many words: the rest are rare ones
        _maybe_mark(stats, w, bucket[0])


def _window(stats: WordStats, w: str | None) -> tuple[int, int]:
    """(requests, requests carrying ``w``) in the window."""
    carried = texts = 0
    since = stats.minutes[-1][0] - WINDOW_MINUTES
    for minute, n, counts, _ in reversed(stats.minutes):
        if minute <= since:
            break
        texts += n
        if w is not None:
            carried += counts.get(w, 0)
    return texts, carried


def _maybe_mark(stats: WordStats, w: str, minute: int) -> None:
    # A word marked before (within MARK_MEMORY_MINUTES) is marked again on less: a raid's
    # tail comes slower than its burst, and its second wave pastes the same words.
    again = w in stats.marks
    ref_texts = stats.ref_texts // REF_UNIT
    if ref_texts < REF_MIN:
        return
    texts, carried = _window(stats, w)
    if carried < (MIN_TEXTS_AGAIN if again else MIN_TEXTS):
        return
    if lifted(carried, texts, stats.ref.get(w, 0) // REF_UNIT, ref_texts):
        _mark(stats, w, minute)


def _mark(stats: WordStats, w: str, now: int) -> None:
    first = next(m for m, _, counts, _ in stats.minutes if w in counts)  # within LAG_MINUTES
    marks = stats.marks.setdefault(w, [])
    if marks and marks[-1][1] >= first - WINDOW_MINUTES:
        marks[-1][1] = now  # the same burst
    else:
        marks.append([first, now])
    raids = stats.raids
    if raids and raids[-1][1] >= first - WINDOW_MINUTES:
        raids[-1][0] = min(raids[-1][0], first)
        raids[-1][1] = max(raids[-1][1], now)
    else:
        raids.append([first, now])


def pasted_by(words: str, stats: WordStats) -> int:
    """How many first texts carried this text's body, as far as the statistics remember
    (the minutes of the lag, and the reference, weighed): 1 for a text written once."""
    body = words.rsplit(" ", 1)[-1] if words else ""
    if not body or not is_body_key(body):
        return 0
    return (sum(counts.get(body, 0) for _, _, counts, _ in stats.minutes)
            + stats.ref.get(body, 0) // REF_UNIT)


def is_pasted(words: str, stats: WordStats) -> bool:
    """Whether this text's body stands out of the crowd of texts people share: a body with
    content words sent by at least ``PASTE_MIN`` first texts and ``PASTE_OUTLIER`` times the
    ``PASTE_RANK``-th most sent one (``paste_floor``). A ranking's evidence, not a verdict:
    people share a few texts ("salut ma belle", "t'es où ?"), none far above the others; a
    raid that pastes one text stands out of them. Texts of common words only are anyone's
    ("salut"), and a text varied to the letter stands out of nothing: both rank as before."""
    body = words.rsplit(" ", 1)[-1] if words else ""
    if not body.startswith("="):
        return False
    return pasted_by(words, stats) >= max(PASTE_MIN, PASTE_OUTLIER * stats.paste_floor)


def _paste_floor(stats: WordStats) -> int:
    sent: dict[str, int] = {}
    for _, _, counts, _ in stats.minutes:
        for w, c in counts.items():
            if w[0] == "=":
                sent[w] = sent.get(w, 0) + c
    for w, c in stats.ref.items():
        if w[0] == "=" and c >= REF_UNIT:
            sent[w] = sent.get(w, 0) + c // REF_UNIT
    top = heapq.nlargest(PASTE_RANK, sent.values())
    return top[-1] if len(top) == PASTE_RANK else 0


def in_raid(stats: WordStats, minute: int) -> bool:
    """Whether a raid was found pasting its words in ``minute`` (a burst of a mark)."""
    return raid_start(stats, minute) is not None


def raid_start(stats: WordStats, minute: int) -> int | None:
    """The first minute of the raid found in ``minute``; None: none was."""
    return next((first for first, last in stats.raids if first <= minute <= last + WINDOW_MINUTES),
                None)


def words_as_of(stats: WordStats, now: int) -> WordStats:
    """The word statistics as the decisions at ``now`` see them: when the last minute counted
    is over by ``now`` (no text has arrived since to close it), with the cohort's test of
    that minute applied, on a copy (the next text's roll applies the same, in evolve)."""
    minutes = stats.minutes
    if not minutes or minutes[-1][0] >= now // MINUTE_MS:
        return stats
    view = WordStats(minutes, stats.ref, stats.ref_texts,
                     {w: [list(i) for i in v] for w, v in stats.marks.items()},
                     [list(r) for r in stats.raids])
    _novel_bodies(view)
    view.paste_floor = _paste_floor(view)
    return view


def _marked_now(stats: WordStats, w: str, minute: int) -> bool:
    marks = stats.marks.get(w)
    return marks is not None and marks[-1][1] >= minute - WINDOW_MINUTES


def _novel_bodies(stats: WordStats) -> None:
    """The cohort's test, when a minute closes: if ``NOVEL_PERCENT`` % of the window's
    requests are texts pasted at least ``NOVEL_MIN`` times and in ``NOVEL_SHARE_PER_MILLE`` per
    mille of the window, whose body the campaign never saw before the window nor before the window's
    last step of first texts (the raid's onset; a climb counts from its start), the window is
    a raid's paste: every word it pasted that often, first seen with the step, is marked. A
    common phrase people write came before the step; a young campaign's past is the minutes
    of its lag and those of the window before the step. People
    who share words share them with the campaign's past too; a pasted raid brings its own."""
    minutes = stats.minutes
    now = minutes[-1][0]
    since = now - WINDOW_MINUTES
    window: dict[str, int] = {}
    before: dict[str, int] = dict(stats.ref)
    first: dict[str, int] = {}  # each window word's first minute in the lag
    per_minute: dict[int, int] = {}
    texts = before_texts = 0
    for minute, n, counts, _ in minutes:
        into = window if minute > since else before
        if minute > since:
            texts += n
        else:
            before_texts += n
        per_minute[minute] = n
        for w, c in counts.items():
            into[w] = into.get(w, 0) + c
            first.setdefault(w, minute)
    before_texts += stats.ref_texts // REF_UNIT
    # The onset of the last step of first texts in the window: a minute at least NOVEL_STEP
    # times the five before it (and the steps just before it: a climb).
    onset = None
    for m in range(now, since, -1):
        stepped = 5 * per_minute.get(m, 0) >= NOVEL_STEP * max(
            5, sum(per_minute.get(m - k, 0) for k in range(1, 6)))
        if stepped:
            onset = m
        elif onset is not None:
            break
    if onset is None or texts < NOVEL_TEXTS:
        return
    past = before_texts + sum(n for m, n in per_minute.items() if since < m < onset)
    fresh = past < NOVEL_REF
    share, mass = ((NOVEL_SHARE_PER_MILLE_FRESH, NOVEL_PERCENT_FRESH) if fresh
                   else (NOVEL_SHARE_PER_MILLE, NOVEL_PERCENT))
    pasted = {w: c for w, c in window.items()
              if c >= NOVEL_MIN and c * 1000 >= share * texts and w not in before
              and first[w] >= onset - 1}  # its first texts may trickle in a minute ahead
    if fresh:
        # No past at all (a fresh campaign's first burst): only whole bodies pasted, of words
        # of their own, among people's texts of their own (a tenth of the window written
        # once): a word or common words may be anyone's, and a burst of a few bodies only
        # may be a small vocabulary.
        pasted = {w: c for w, c in pasted.items() if w[0] == "="}
        unique = sum(1 for _, _, _, bodies in minutes for words, c in bodies.items()
                     if c == 1 and window.get(words.rsplit(" ", 1)[-1], 0) == 1)
        if unique * 100 < NOVEL_UNIQUE_PERCENT * texts:
            return
    # The texts the paste covers: its bodies', or (its bodies varied to the letter) half its
    # words' (a text carries one to three of them).
    novel = max(sum(c for w, c in pasted.items() if is_body_key(w)),
                sum(c for w, c in pasted.items() if not is_body_key(w)) // 2)
    if novel * 100 >= mass * texts:
        for w in pasted:
            _mark(stats, w, now)


def _words_roll(stats: WordStats, minute: int, cohorts: Cohorts, policy: Policy) -> None:
    """A minute closes: the cohort's test; minutes older than ``LAG_MINUTES`` go to the
    reference (a raid climbing to its mark does not teach the reference its words first),
    without the requests that carried a word marked then, and a spike's minute weighed down
    to the baseline's rate (its shares kept, its mass not: a flood, detected or not, is not
    the campaign's normal)."""
    minutes, ref = stats.minutes, stats.ref
    if minutes:
        _novel_bodies(stats)
    keep_from = minute - LAG_MINUTES + 1
    expected = policy.surge_expected_per_minute
    while minutes and minutes[0][0] < keep_from:
        then, _, _, texts = minutes.pop(0)
        count, base = cohort_of(cohorts, then, expected)
        # weight (in REF_UNIT-ths): 1, or the baseline's rate over the spike's
        weight = (REF_UNIT if not is_spike(count, base, policy)
                  else REF_UNIT * base // (count * BASELINE_MINUTES))
        for words, c in texts.items():  # a request with a raid's word is a raid's: left out
            keys = words.split()
            if keys and not any(_marked_in(stats, w, then) for w in keys):
                for w in keys:
                    ref[w] = ref.get(w, 0) + c * weight
                stats.ref_texts += c * weight
    if stats.ref_texts > REF_CAP * REF_UNIT:
        stats.ref = ref = {w: c // 2 for w, c in ref.items() if c > 1}
        stats.ref_texts //= 2
    if len(ref) > REF_WORDS:
        kept = sorted(ref.items(), key=lambda wc: (-wc[1], wc[0]))[:REF_WORDS]
        stats.ref = dict(kept)
    forget = minute - MARK_MEMORY_MINUTES
    marks = stats.marks
    for w in [w for w, v in marks.items() if v[-1][1] < forget]:
        del marks[w]
    for v in marks.values():
        while v[0][1] < forget:
            del v[0]
    while stats.raids and stats.raids[0][1] < forget:
        del stats.raids[0]
    stats.paste_floor = _paste_floor(stats)


def _marked_in(stats: WordStats, w: str, minute: int, tail: int = WINDOW_MINUTES) -> bool:
    return any(first <= minute <= last + tail for first, last in stats.marks.get(w, ()))


def marked(stats: WordStats, words: str, minute: int, again: bool = False) -> bool:
    """Whether any of ``words`` was a raid's in ``minute``: within a burst in which it was
    marked, from the first minute of the lag that carried it (a raid's first texts, sent
    while it was climbing to the mark) to ``WINDOW_MINUTES`` after its last; for a sender's
    later text (``again``), to ``MARK_MEMORY_MINUTES`` after it: a raid's number refused on
    its first text and texting again with the raid's words is still the raid's (a pest
    refused for another reason who texts again writes his own words)."""
    if not words or not stats.marks:
        return False
    tail = MARK_MEMORY_MINUTES if again else WINDOW_MINUTES
    return any(_marked_in(stats, w, minute, tail) for w in words.split())
