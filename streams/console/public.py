"""The public transparency page (``/public``, no token; ``antirelou public --out DIR``): per
campaign and UTC day, the texts, the pests answered, the trolls starved, the surges and
how they ended, the money spent and given, the balance and how long it lasts at this pace;
then the journal's latest signed checkpoints and how to verify them.

Nothing personal: counts per day and surges to the hour, no pseudonym, no body, no message
id, no number range; a plain page (no script). ``PublicFigures`` is fed the journal's
events (the dashboard's follower, or a reader of the whole journal); ``render`` is pure.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas import reasons as r
from schemas.campaign import Campaign

# The refusals that starve a raid: its pasted words, its flooders, a number texting several
# campaigns, a number range flooding, a surge judged a raid.
STARVED = frozenset((r.RAID_WORDS, r.FLOODER, r.OTHER_CAMPAIGN, r.PREFIX_FLOOD, r.RAID))
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass
class Day:
    texts: int = 0
    answered: int = 0
    starved: int = 0
    spent_micros: int = 0
    credited_micros: int = 0


@dataclass
class Surge:
    started: int  # the minute of its first texts
    ended: int | None = None


# What became of the requests deferred in a minute (a surge's cohorts): held back,
# released, refused as a raid, expired otherwise. Counted by the minute they were deferred,
# and given to a surge when the page is drawn: a surge's requests and its start and end
# are in different journal partitions, read in any order.
HELD, RELEASED, STARVED_, EXPIRED = range(4)


@dataclass
class CampaignBook:
    campaign: Campaign
    days: dict[int, Day] = field(default_factory=dict)
    surges: list[Surge] = field(default_factory=list)
    deferred: dict[int, list[int]] = field(default_factory=dict)  # minute -> 4 counts
    balance_micros: int = 0
    balance_seq: int = -1

    def day(self, at: int) -> Day:
        d = at // DAY_MS
        found = self.days.get(d)
        if found is None:
            found = self.days[d] = Day()
        return found

    def note(self, deferred_at: int | None, what: int) -> None:
        if deferred_at is None:
            return
        counts = self.deferred.setdefault(deferred_at // 60_000, [0, 0, 0, 0])
        counts[what] += 1

    def of_surge(self, s: Surge) -> list[int]:
        first, last = s.started // 60_000, (s.ended // 60_000 if s.ended is not None else None)
        totals = [0, 0, 0, 0]
        for minute, counts in self.deferred.items():
            if first <= minute and (last is None or minute <= last):
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
        return totals


class PublicFigures:
    def __init__(self, campaigns: Iterable[Campaign]) -> None:
        self.campaigns = list(campaigns)
        self.reset()

    def reset(self) -> None:
        """Nothing read yet (a follower that reads the journal again from its beginning)."""
        self.books = {c.id: CampaignBook(c, balance_micros=c.budget_micros)
                      for c in self.campaigns}

    def apply(self, e: Any) -> None:  # noqa: C901 - one branch per event type
        book = self.books.get(getattr(e, "campaign_id", None))  # type: ignore[arg-type]
        if book is None:
            return
        kind = e.TYPE
        seq = getattr(e, "seq", None)
        balance = getattr(e, "balance_after_micros", None)
        if balance is not None and seq is not None and seq > book.balance_seq:
            book.balance_micros, book.balance_seq = balance, seq
        if kind == "SenderScreened":
            book.day(e.occurred_at).texts += 1
            if e.reason in STARVED:
                book.day(e.occurred_at).starved += 1
        elif kind == "ReplySent":
            book.day(e.occurred_at).answered += 1
        elif kind == "ReplyApproved":
            book.day(e.occurred_at).spent_micros += e.cost_micros
            book.note(e.deferred_at, RELEASED)
        elif kind == "ReplyRefunded":
            book.day(e.occurred_at).spent_micros -= e.refund_micros
        elif kind == "ReplyCostReconciled":
            book.day(e.occurred_at).spent_micros += e.actual_micros - e.estimated_micros
        elif kind == "BudgetCredited":
            book.day(e.occurred_at).credited_micros += e.amount_micros
        elif kind in ("ReplyDenied", "ReplyExpired"):
            starved = e.reason in STARVED
            if starved:
                book.day(e.occurred_at).starved += 1
            if kind == "ReplyExpired":
                book.note(e.deferred_at, STARVED_ if starved else EXPIRED)
        elif kind == "ReplyHeldBack":
            book.note(e.deferred_at, HELD)
        elif kind == "SurgeStarted":
            book.surges.append(Surge(e.occurred_at // 60_000 * 60_000))  # its first minute
        elif kind == "SurgeEnded" and book.surges and book.surges[-1].ended is None:
            book.surges[-1].ended = e.occurred_at


def _date(day: int) -> str:
    return dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + day).isoformat()


def _hour(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // HOUR_MS * 3600, dt.UTC).strftime("%Y-%m-%d %H:00")


def _eur(micros: int) -> str:
    return f"EUR {micros / 1e6:,.2f}"


def runway(book: CampaignBook, now_ms: int) -> str:
    """At the pace of the last 7 days with spending, when the money runs out."""
    today = now_ms // DAY_MS
    recent = [book.days[d].spent_micros for d in sorted(book.days) if today - 7 < d <= today]
    pace = sum(recent) / 7 if recent else 0
    end = book.campaign.ends_at
    if pace <= 0:
        return f"nothing spent this week: the money lasts to the campaign's end ({_date(end // DAY_MS)})"
    out = today + int(book.balance_micros / pace)
    if out * DAY_MS >= end:
        return (f"at this pace ({_eur(int(pace))} a day) the money lasts to the campaign's end "
                f"({_date(end // DAY_MS)})")
    return f"at this pace ({_eur(int(pace))} a day) the money lasts until {_date(out)}"


def _surge_line(book: CampaignBook, s: Surge) -> str:
    end = (f"ended {_hour(s.ended)}" if s.ended is not None else "still on")
    held, released, starved, expired = book.of_surge(s)
    return (f"<li>surge from {_hour(s.started)} UTC, {end}: {held:,} request(s) held back, "
            f"{released:,} released, {starved:,} refused as a raid, {expired:,} "
            "expired unanswered</li>")


def _campaign_section(book: CampaignBook, now_ms: int) -> str:
    c = book.campaign
    rows = "".join(
        f"<tr><td>{_date(d)}</td><td>{x.texts:,}</td><td>{x.answered:,}</td>"
        f"<td>{x.starved:,}</td><td>{_eur(x.spent_micros)}</td><td>{_eur(x.credited_micros)}</td></tr>"
        for d, x in sorted(book.days.items(), reverse=True))
    surges = "".join(_surge_line(book, s) for s in reversed(book.surges))
    return (f'<section><h2>{html.escape(c.id)}</h2><p class="money">Balance '
            f"<b>{_eur(book.balance_micros)}</b> of a budget of {_eur(c.budget_micros)} and "
            f"the donations below; {html.escape(runway(book, now_ms))}.</p>"
            "<table><thead><tr><th>day (UTC)</th><th>texts</th><th>pests answered</th>"
            "<th>trolls starved</th><th>spent</th><th>donations</th></tr></thead>"
            f"<tbody>{rows or '<tr><td colspan=6>no text yet</td></tr>'}</tbody></table>"
            + (f"<h3>Surges</h3><ul>{surges}</ul>" if surges else "") + "</section>")


STYLE = """body{font:16px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1b1b1b}h1{font-size:1.6rem}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:right}th:first-child,
td:first-child{text-align:left}pre{background:#f4f4f4;padding:.6rem;overflow-x:auto;font-size:.85rem}
section{margin:2rem 0}.money b{font-size:1.1rem}footer{color:#555;font-size:.9rem}"""


def render(figures: PublicFigures, checkpoints: Sequence[str], verifier: str,
           now_ms: int) -> str:
    """The page: every campaign, then the latest signed checkpoint of each journal log."""
    sections = "".join(_campaign_section(b, now_ms) for _, b in sorted(figures.books.items()))
    notes = "".join(f"<pre>{html.escape(n)}</pre>" for n in checkpoints) or \
        "<p>No checkpoint signed yet.</p>"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>antirelou: what your money did</title><style>{STYLE}</style></head><body>
<h1>What this anti-pest number did, day by day</h1>
<p>Each text to the number is an event in a journal; each reply or refusal is decided from it
alone. <b>Pests answered</b>: replies sent. <b>Trolls starved</b>: texts and requests refused
because they came from a raid (pasted words, flooders, a number texting several campaigns, a
flooding number range). Figures per UTC day; surges to the hour. Nothing here says who texted.</p>
{sections}
<section><h2>Check the journal yourself</h2>
<p>The journal is signed as it grows: every few minutes and at each day's end, the root of a
Merkle tree over each of its partitions is signed with this deployment's key. Anyone given an
export of the journal can check that it is the one that was written, event by event:</p>
<pre>antirelou verify journal.jsonl --key {html.escape(verifier)}</pre>
<p>The key (also printed by the deployment when it starts):</p><pre>{html.escape(verifier)}</pre>
<p>The latest signed checkpoints (C2SP signed-note format: log, size, root hash, time,
signature):</p>{notes}</section>
<footer>Generated {_hour(now_ms)} UTC by antirelou.</footer></body></html>
"""


def latest_notes(states: dict[bytes, bytes]) -> list[str]:
    """The signed notes of the notary's compacted topic (``<app>.checkpoints``), by partition."""
    import orjson

    out = []
    for key in sorted(states, key=lambda k: int(k) if k.isdigit() else -1):
        try:
            out.append(orjson.loads(states[key])["note"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return out
