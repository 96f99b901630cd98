"""What a journal is missing when the broker lost its last writes, as far as the journal
itself can tell (``antirelou audit`` says it when the replay failed). Pure.

noida-db (`antirelou up`'s embedded broker) killed comes back with the state of its last
snapshot: every topic loses the same last second (``infra.faust.lost_tail`` is the worker's
side). A journal that lost its tail fails the replay (campaign decisions whose ``seq`` is
missing, replies sent with no decision). :func:`account` reads the same journal and says
what is missing and from where: the ``RecordsLost`` facts the workers journaled, the gaps
in each campaign's decision sequence, replies the provider's delivery reports say were sent
but that have no ``ReplySent`` (or no approval, or no text) in the journal, and attempts
with no outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.events import (
    DeliveryReported,
    RecordsLost,
    ReplyApproved,
    ReplyAttempted,
    ReplyFailed,
    ReplySent,
    ReplyUncertain,
    SenderScreened,
    TextReceived,
)


@dataclass
class LossAccount:
    """What a journal is missing, as far as the journal itself can tell."""

    records_lost: list[RecordsLost] = field(default_factory=list)
    # campaign -> [(first missing seq, last missing seq)], within what the journal holds
    seq_gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # reported by the provider (delivery report) but no ReplySent in the journal
    reported_not_sent: list[tuple[str, str]] = field(default_factory=list)  # (mid, status)
    sent_without_approval: list[str] = field(default_factory=list)
    approved_without_text: list[str] = field(default_factory=list)
    attempted_without_outcome: list[str] = field(default_factory=list)
    # verdicts that count more texts of their sender than the journal holds before them:
    # the earlier texts' records were lost, or came back later (written again)
    screened_ahead: list[str] = field(default_factory=list)
    texts: int = 0
    sent: int = 0
    reported: int = 0

    @property
    def any(self) -> bool:
        return bool(self.records_lost or self.seq_gaps or self.reported_not_sent
                    or self.sent_without_approval or self.approved_without_text
                    or self.screened_ahead)

    @property
    def missing_decisions(self) -> int:
        return sum(b - a + 1 for gaps in self.seq_gaps.values() for a, b in gaps)

    def to_json(self) -> dict[str, Any]:
        return {
            "records_lost": [{"topic": r.topic, "partition": r.partition,
                              "from_offset": r.from_offset, "to_offset": r.to_offset,
                              "found": r.found, "occurred_at": r.occurred_at}
                             for r in self.records_lost],
            "missing_decisions": {c: [list(g) for g in gaps] for c, gaps in self.seq_gaps.items()},
            "reported_by_provider_not_journaled_sent": [
                {"message_id": m, "status": s} for m, s in self.reported_not_sent],
            "sent_without_approval": self.sent_without_approval,
            "approved_without_text": self.approved_without_text,
            "attempted_without_outcome": self.attempted_without_outcome,
            "screened_ahead_of_the_journal": self.screened_ahead,
            "texts": self.texts, "sent": self.sent, "reported": self.reported,
        }


class Accountant:
    """:func:`account` fed one event at a time (a journal read from Kafka as it comes)."""

    def __init__(self) -> None:
        self.acc = LossAccount()
        self.texts: set[str] = set()
        self.approved: set[str] = set()
        self.sent: set[str] = set()
        self.ended: set[str] = set()  # a send outcome of any kind
        self.attempted: dict[str, None] = {}
        self.reports: dict[str, str] = {}
        self.seqs: dict[str, set[int]] = {}
        self.texts_of: dict[str, set[str]] = {}  # sender -> his texts journaled so far
        self.ahead: dict[str, None] = {}

    def feed(self, ev: Any) -> None:
        t = type(ev)
        if t is TextReceived:
            self.texts.add(ev.message_id)
            self.texts_of.setdefault(ev.sender, set()).add(ev.message_id)
        elif t is SenderScreened:
            if ev.texts_from_sender > len(self.texts_of.get(ev.sender, ())):
                self.ahead[ev.message_id] = None
        elif t is ReplyApproved:
            self.approved.add(ev.message_id)
        elif t is ReplySent:
            self.sent.add(ev.message_id)
            self.ended.add(ev.message_id)
        elif t is ReplyFailed or t is ReplyUncertain:
            self.ended.add(ev.message_id)
        elif t is ReplyAttempted:
            self.attempted[ev.message_id] = None
        elif t is DeliveryReported:
            self.reports[ev.message_id] = ev.status  # the last word on it
        elif t is RecordsLost:
            self.acc.records_lost.append(ev)
        seq = getattr(ev, "seq", None)
        if seq:  # campaign decisions; seq 0 is outside every campaign's order
            self.seqs.setdefault(ev.campaign_id, set()).add(seq)

    def result(self) -> LossAccount:
        acc = self.acc
        for campaign_id, have in sorted(self.seqs.items()):
            gaps: list[tuple[int, int]] = []
            expected = 1
            for seq in sorted(have):
                if seq > expected:
                    gaps.append((expected, seq - 1))
                expected = seq + 1
            if gaps:
                acc.seq_gaps[campaign_id] = gaps
        sent = self.sent
        acc.reported_not_sent = sorted((m, s) for m, s in self.reports.items()
                                       if m not in sent and s != "delivery_failed")
        acc.sent_without_approval = sorted(sent - self.approved)
        acc.approved_without_text = sorted(self.approved - self.texts)
        acc.attempted_without_outcome = sorted(m for m in self.attempted if m not in self.ended)
        acc.screened_ahead = list(self.ahead)
        acc.texts, acc.sent, acc.reported = len(self.texts), len(sent), len(self.reports)
        return acc


def account(events: Iterable[Any]) -> LossAccount:
    """One pass over a journal: what it lost (see the module docstring). Pure."""
    accountant = Accountant()
    for ev in events:
        accountant.feed(ev)
    return accountant.result()


def render_text(acc: LossAccount, limit: int = 10) -> str:
    if not acc.any:
        return ("Lost tail: none found (no RecordsLost fact, no gap in any campaign's "
                "decisions, every reported reply journaled as sent).\n")
    out = ["Lost tail: this journal is missing records (a broker that lost its last writes)"]
    for r in acc.records_lost:
        how = {"position": "it had read them", "committed": "it had committed them",
               "log_start": "deleted from the log before it read them"}.get(r.found, r.found)
        out.append(f"  - a worker found {r.topic} partition {r.partition} missing offsets "
                   f"{r.from_offset}..{r.to_offset - 1} ({r.to_offset - r.from_offset} "
                   f"record(s); {how}) at {r.occurred_at} ms")
    for campaign_id, gaps in acc.seq_gaps.items():
        spans = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in gaps[:limit])
        more = f" (+{len(gaps) - limit} more)" if len(gaps) > limit else ""
        n = sum(b - a + 1 for a, b in gaps)
        out.append(f"  - campaign {campaign_id}: {n} decision(s) missing, seq {spans}{more}: "
                   "the replay cannot check what follows them")
    if acc.reported_not_sent:
        out.append(f"  - {len(acc.reported_not_sent)} repl(y/ies) the provider's delivery "
                   "reports say went out have no ReplySent in the journal: "
                   + ", ".join(f"{m} ({s})" for m, s in acc.reported_not_sent[:limit]))
    if acc.sent_without_approval:
        out.append(f"  - {len(acc.sent_without_approval)} ReplySent with no ReplyApproved: "
                   + ", ".join(acc.sent_without_approval[:limit]))
    if acc.approved_without_text:
        out.append(f"  - {len(acc.approved_without_text)} ReplyApproved with no TextReceived: "
                   + ", ".join(acc.approved_without_text[:limit]))
    if acc.attempted_without_outcome:
        out.append(f"  - {len(acc.attempted_without_outcome)} send(s) attempted with no "
                   "outcome (under way, or the outcome was lost): "
                   + ", ".join(acc.attempted_without_outcome[:limit]))
    if acc.screened_ahead:
        out.append(f"  - {len(acc.screened_ahead)} verdict(s) count more texts of their sender "
                   "than the journal holds before them (the earlier texts' records were lost, "
                   "or came back later, written again after a broker crash): the replay's "
                   "screening mismatches for them follow from that: "
                   + ", ".join(acc.screened_ahead[:limit]))
    out.append(f"  journal: {acc.texts} texts, {acc.sent} replies sent, {acc.reported} with a "
               "delivery report. Texts acknowledged in the lost second that MessageBird "
               "does not retry are gone: only the provider's inbound log has them.")
    return "\n".join(out) + "\n"
