"""When the broker loses its last writes: see it in the worker, account for it in the audit.

noida-db (`antirelou up`'s embedded broker) keeps its state in memory and writes it to disk
about once a second; killed (kill -9, out of memory, a crash), it comes back with the state
of its last snapshot, so every topic loses the same last second: texts acknowledged to
MessageBird, verdicts, campaign decisions, ``ReplySent`` facts, committed offsets. A
replicated Kafka does not lose acknowledged writes; the embedded broker can.

In the worker (:class:`TailGuard`, used by the watchdog that compares each source
partition's end offset with what the agents were given): a worker that was given records
up to offset N of a partition whose log now ends at E < N, or whose committed offset is
past E, would wait for offset N while new texts are written at E, E+1, ...: they would be
stored and never screened. The guard says so loudly (an error in the log, ``/health``'s
``records_lost``, a :class:`~schemas.events.RecordsLost` fact in the journal) and the
partition is read again from E, the log's end: what exists.

In the audit (:func:`account`): a journal that lost its tail fails the replay (campaign
decisions whose ``seq`` is missing, replies sent with no decision). :func:`account` reads
the same journal and says what is missing and from where: the ``RecordsLost`` facts the
workers journaled, the gaps in each campaign's decision sequence, replies the provider's
delivery reports say were sent but that have no ``ReplySent`` (or no approval, or no text)
in the journal, and attempts with no outcome.

Upstream: noida-db's snapshot about once a second, no issue filed (a replicated Kafka does
not lose acknowledged writes); checked against noida-db 0.2.3.
"""

from __future__ import annotations

import logging
from collections import deque
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

log = logging.getLogger("antirelou.lost_tail")

__all__ = ["LossAccount", "TailGuard", "account", "render_text"]


# ------------------------------------------------------------------- in the worker


class TailGuard:
    """Finds a worker ahead of a partition's log end; keeps the count for ``/health``."""

    def __init__(self, keep: int = 20) -> None:
        self.records_lost = 0
        self.incidents: list[dict[str, Any]] = []
        self._keep = keep

    def check(self, topic: str, partition: int, expected: int, end: int, found: str,
              now_ms: int) -> RecordsLost | None:
        """``expected``: the next offset the worker would take (what it was given, plus
        one; or the committed offset); ``end``: the log's end offset on the broker now. A
        :class:`RecordsLost` fact (to journal) when ``end < expected``, else None."""
        if end >= expected:
            return None
        fact = RecordsLost(topic=topic, partition=partition, from_offset=end,
                           to_offset=expected, found=found, occurred_at=now_ms)
        self.records_lost += expected - end
        self.incidents.append({"topic": topic, "partition": partition, "from_offset": end,
                               "to_offset": expected, "found": found, "at": now_ms})
        del self.incidents[:-self._keep]
        log.error("*** RECORDS LOST: %s partition %d ends at offset %d but this worker had "
                  "%s up to %d: the broker lost %d record(s) it had acknowledged (a crash "
                  "of the embedded broker loses about its last second). Going on from "
                  "offset %d; `antirelou audit` accounts for what is missing ***",
                  topic, partition, end, "read" if found == "position" else "committed",
                  expected - 1, expected - end, end)
        return fact

    def deleted(self, topic: str, partition: int, first: int, start: int,
                now_ms: int) -> RecordsLost:
        """Records ``first``..``start - 1`` a worker waited for are deleted from the log
        (it starts at ``start`` now; infra/faust/inorder.py): the fact to journal, counted.
        The guard that found them logged it loudly already."""
        fact = RecordsLost(topic=topic, partition=partition, from_offset=first,
                           to_offset=start, found="log_start", occurred_at=now_ms)
        self.records_lost += start - first
        self.incidents.append({"topic": topic, "partition": partition, "from_offset": first,
                               "to_offset": start, "found": "log_start", "at": now_ms})
        del self.incidents[:-self._keep]
        return fact

    def health(self) -> dict[str, Any]:
        return {"records": self.records_lost, "incidents": list(self.incidents[-5:])}


async def resume_at_end(consumer: Any, tp: Any, end: int) -> None:
    """Read ``tp`` of a Faust consumer from ``end`` again: seek there (Consumer.seek also
    moves Faust's read offset, below which it drops what it fetches) and forget what it
    had acknowledged or committed past it, or it would never commit below that again."""
    await consumer.seek(tp, end)
    committed = consumer._committed_offset.get(tp)
    if committed is not None and committed > end:
        consumer._committed_offset[tp] = end or None
    acked = consumer._acked.get(tp)
    if acked:
        acked[:] = [offset for offset in acked if offset < end]
    gap = consumer._gap.get(tp)
    if gap:  # an intervaltree of offsets Faust waits for: those past the end never come
        gap.chop(end, max(end + 1, gap.end()))


class AckWindow:
    """The texts the webhook acknowledged in the last ``seconds``, to write again when the
    embedded broker comes back from a crash: the broker may have lost them (about its last
    second), MessageBird will not send them again (it got its 200), and the screening takes
    a text given twice once (its verdict again, journaled as a restatement). Only while
    the same process lives (``up`` restarts its broker under a running worker)."""

    def __init__(self, seconds: float = 5.0, clock: Any = None) -> None:
        import time

        self.seconds = seconds
        self._clock = clock or time.time
        self._items: deque[tuple[float, bytes, bytes]] = deque()
        self._restarts_seen = 0
        self.rewritten = 0

    def remember(self, key: bytes, value: bytes) -> None:
        now = self._clock()
        items = self._items
        items.append((now, key, value))
        horizon = now - self.seconds
        while items and items[0][0] < horizon:
            items.popleft()

    def to_rewrite(self, status: Any) -> list[tuple[bytes, bytes]]:
        """After a restart not seen yet (``status``: infra.supervisor.BrokerStatus): the texts
        acknowledged within ``seconds`` before the broker died; else nothing."""
        if status is None or not status.up or status.restarts <= self._restarts_seen:
            return []
        self._restarts_seen = status.restarts
        died_at = (status.back_at or self._clock()) - (status.last_outage_s or 0.0)
        chosen = [(k, v) for t, k, v in self._items if died_at - self.seconds <= t <= died_at]
        self.rewritten += len(chosen)
        return chosen

    def retry_later(self, count: int) -> None:
        """The texts from :meth:`to_rewrite` could not be written: offer them again."""
        self._restarts_seen -= 1
        self.rewritten -= count


# -------------------------------------------------------------------- in the audit


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


def account_journal(*, file: str | None = None, kafka: str | None = None,
                    topic: str | None = None) -> LossAccount:
    """:func:`account` of a JSON-lines export or of the journal topic (a second read, done
    by ``antirelou audit`` only when the replay failed)."""
    accountant = Accountant()
    if file is not None:
        import orjson

        from schemas import codec

        with open(file, "rb") as f:
            for line in f:
                if line.strip():
                    accountant.feed(codec.from_dict(orjson.loads(line)))
        return accountant.result()
    import asyncio

    from infra.journal import iter_journal

    async def read() -> None:
        async for _, _, event in iter_journal(kafka, topic):
            accountant.feed(event)

    asyncio.run(read())
    return accountant.result()
