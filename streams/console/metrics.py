"""What operators watch, as a projection of the journal: counters, gauges and latencies.

``Projection`` folds journal events (as they come from the journal topic, with each
record's Kafka timestamp) into per-campaign figures. It is pure: no clock, no I/O; the
shell (``streams.console.ops``) feeds it and asks it for ``snapshot(now_ms)``.

- Campaign state (balance, spend, queue, surge, policy, pacing) is the campaign core's own
  ``evolve_campaign`` applied in ``seq`` order, the way a shard recovers: the dashboard and
  ``/metrics`` show exactly what ``/campaigns`` shows once the journal is read.
- Texts by verdict and reason, replies by outcome: counted once per message id (a verdict
  restated after a crash, a redelivered decision are journaled twice and counted once, as the
  audit does), remembered for the last ``DEDUP_WINDOW`` message ids.
- Latencies: from the webhook (the Kafka timestamp of the text's record in ``sms-received``,
  given to ``webhook_seen``) to its ``SenderScreened`` and to its ``ReplySent``.
- A per-minute window: texts a minute by verdict and reason, replies sent a minute, spend.

Labels are campaign ids, verdicts, reasons and outcomes: never a number or a pseudonym.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.campaign import CampaignState, evolve_campaign
from actors.pacing import allowance_left
from actors.shard import CAMPAIGN_EVENT_TYPES, campaign_status, is_campaign_event
from schemas.campaign import Campaign
from schemas.policy import describe
from streams.console.board import Board

MINUTE_MS = 60_000
DEDUP_WINDOW = 50_000  # message ids remembered per kind, to count restated events once
PENDING_LATENCY = 50_000  # texts waiting for their verdict / reply, for the histograms
MINUTES_KEPT = 60  # the dashboard's per-minute window
LAST_DECISIONS = 20
# The seq order of a campaign's events can have a gap while another journal partition is
# behind; past this many held events, the gap is taken as lost and the rest applied.
MAX_HELD = 50_000

TEXT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Seen:
    """The last ``size`` keys, oldest forgotten first."""

    def __init__(self, size: int = DEDUP_WINDOW) -> None:
        self._keys: OrderedDict[Any, None] = OrderedDict()
        self._size = size

    def add(self, key: Any) -> bool:
        """True when the key is new."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True


@dataclass(slots=True)
class CampaignFigures:
    campaign: Campaign
    state: CampaignState
    texts: Counter = field(default_factory=Counter)  # (verdict, reason) -> texts
    decisions: Counter = field(default_factory=Counter)  # (decision, reason) -> requests
    replies: Counter = field(default_factory=Counter)  # outcome -> replies
    spend_micros: int = 0  # approved reply costs, plus reported prices above the estimate
    spent_by_day: dict[int, int] = field(default_factory=dict)  # UTC day -> micros
    refunded_micros: int = 0  # refunds, plus reported prices below the estimate
    overruns: int = 0  # delivery reports priced above what they could charge (cap, reserve)
    overrun_micros: int = 0  # what those reports priced and the balance did not pay
    deferred: int = 0
    released: int = 0
    expired: Counter = field(default_factory=Counter)  # reason -> expired
    held: list = field(default_factory=list)  # heap of (seq, n, event) waiting for a gap
    policy_by: str = "campaign file"
    policy_at: int | None = None
    last: deque = field(default_factory=lambda: deque(maxlen=LAST_DECISIONS))
    # minute (epoch ms // 60000) -> Counter of ("text", verdict, reason) / ("sent",) /
    # ("spend",) ...; by event time of arrival in the journal (the Kafka timestamp).
    minutes: OrderedDict = field(default_factory=OrderedDict)
    board: Board = field(default_factory=Board)  # the console's view (streams.console.board)


# The event types ``Projection.apply`` looks into; any other is only counted.
PROJECTED_TYPES = frozenset(("SenderScreened", "ReplySent", "ReplyFailed", "ReplyUncertain",
                             *CAMPAIGN_EVENT_TYPES))


class Projection:
    def __init__(self, campaigns: Iterable[Campaign]) -> None:
        self.figures = {c.id: CampaignFigures(c, CampaignState.opening(c)) for c in campaigns}
        self._screened = _Seen()
        self._outcomes = _Seen()
        self._n = 0
        self.events = 0  # journal events folded in
        self.last_ts = 0
        self._webhook_at: OrderedDict[str, int] = OrderedDict()  # message id -> Kafka ts
        self._verdict_at: OrderedDict[str, tuple] = OrderedDict()  # verdicts seen first
        self._sent_at: OrderedDict[str, tuple] = OrderedDict()
        # Latencies observed since the last take_latencies(): ("verdict"|"sent", seconds).
        self._latencies: list[tuple[str, str, float]] = []

    # -- feeding ------------------------------------------------------------------------
    def webhook_seen(self, message_id: str, ts_ms: int) -> None:
        """The text's record in sms-received was written at ``ts_ms`` (by the webhook)."""
        # A verdict or a reply journaled before this record is of a text written again (the
        # webhook's texts after a broker restart, a journal read back after a worker's
        # restart): no latency of it (they showed as hundreds of observations of 0 s).
        verdict = self._verdict_at.pop(message_id, None)
        if verdict is not None and verdict[0] >= ts_ms:
            self._latencies.append(("verdict", verdict[1], (verdict[0] - ts_ms) / 1000))
        sent = self._sent_at.pop(message_id, None)
        if sent is not None and sent[0] >= ts_ms:
            self._latencies.append(("sent", sent[1], (sent[0] - ts_ms) / 1000))
        elif verdict is None or verdict[2]:  # a reply may follow
            self._remember(self._webhook_at, message_id, ts_ms)

    def take_latencies(self) -> list[tuple[str, str, float]]:
        out, self._latencies = self._latencies, []
        return out

    @staticmethod
    def _remember(table: OrderedDict, key: str, value: Any) -> None:
        table[key] = value
        if len(table) > PENDING_LATENCY:
            table.popitem(last=False)

    def _latency(self, kind: str, campaign: str, message_id: str, ts_ms: int,
                 done: bool) -> None:
        start = self._webhook_at.get(message_id)
        if start is None:  # the webhook's record not read yet (another topic)
            self._remember(self._verdict_at if kind == "verdict" else self._sent_at,
                           message_id, (ts_ms, campaign, not done))
            return
        if done:
            del self._webhook_at[message_id]
        self._latencies.append((kind, campaign, max(0, ts_ms - start) / 1000))

    def feed(self, events: Sequence[tuple[Any, int]]) -> None:
        for event, ts in events:
            self.apply(event, ts)

    def count(self, ts_ms: int) -> None:
        """A journal event of a type not in ``PROJECTED_TYPES``: what ``apply`` does with
        it, without the event decoded (the journal follower reads its type alone)."""
        self.events += 1
        self.last_ts = max(self.last_ts, ts_ms)

    def apply(self, event: Any, ts_ms: int) -> None:
        self.events += 1
        self.last_ts = max(self.last_ts, ts_ms)
        fig = self.figures.get(getattr(event, "campaign_id", None))
        if fig is None:
            return
        t = event.TYPE
        if t == "SenderScreened":
            if not self._screened.add(event.message_id):
                return
            reason = event.reason or ""
            fig.texts[(event.verdict, reason)] += 1
            self._minute(fig, ts_ms)[("text", event.verdict, reason)] += 1
            fig.board.chart(ts_ms, f"{event.verdict}:{reason}" if reason else event.verdict)
            self._latency("verdict", fig.campaign.id, event.message_id, ts_ms,
                          done=event.verdict != "forward")
            if event.verdict != "forward":
                fig.last.append({"at": event.occurred_at, "sender": event.sender,
                                 "decision": "suppress", "reason": reason})
        elif t in ("ReplySent", "ReplyFailed", "ReplyUncertain"):
            outcome = {"ReplySent": "sent", "ReplyFailed": "failed",
                       "ReplyUncertain": "uncertain"}[t]
            if not self._outcomes.add((outcome, event.message_id)):
                return
            fig.replies[outcome] += 1
            self._minute(fig, ts_ms)[("reply", outcome, "")] += 1
            fig.board.chart(ts_ms, f"reply:{outcome}")
            if outcome == "sent":
                self._latency("sent", fig.campaign.id, event.message_id, ts_ms, done=True)
        elif is_campaign_event(event):
            self._n += 1
            heapq.heappush(fig.held, (event.seq, self._n, event, ts_ms))
            self._drain(fig)

    def _drain(self, fig: CampaignFigures) -> None:
        held, state = fig.held, fig.state
        while held and (held[0][0] <= state.seq + 1 or len(held) > MAX_HELD):
            seq, _, event, ts = heapq.heappop(held)
            if seq <= state.seq:
                continue  # a redelivered decision: applied once
            self._campaign_event(fig, event, ts)

    def _campaign_event(self, fig: CampaignFigures, event: Any, ts_ms: int) -> None:
        t = event.TYPE
        before = describe(fig.state.policy) if t == "PolicyChanged" else None
        evolve_campaign(fig.state, event)
        fig.board.campaign_event(event)
        if before is not None:
            fig.board.policy_changed(event, before, describe(fig.state.policy))
        minute = self._minute(fig, ts_ms)
        if t == "ReplyApproved":
            fig.spend_micros += event.cost_micros
            day = event.occurred_at // 86_400_000
            fig.spent_by_day[day] = fig.spent_by_day.get(day, 0) + event.cost_micros
            fig.decisions[("approved", "")] += 1
            minute[("spend", "", "")] += event.cost_micros
            if event.deferred_at is not None:
                fig.released += 1
                minute[("released", "", "")] += 1
            fig.last.append({"at": event.occurred_at, "sender": event.sender,
                             "decision": "released" if event.deferred_at else "approved",
                             "reason": "", "cost_micros": event.cost_micros})
        elif t == "ReplyDenied":
            fig.decisions[("denied", event.reason)] += 1
            minute[("denied", event.reason, "")] += 1
            fig.last.append({"at": event.occurred_at, "sender": event.sender,
                             "decision": "denied", "reason": event.reason})
        elif t == "ReplyDeferred":
            fig.deferred += 1
            fig.decisions[("deferred", "")] += 1
            minute[("deferred", "", "")] += 1
            fig.last.append({"at": event.occurred_at, "sender": event.sender,
                             "decision": "deferred", "reason": ""})
        elif t == "ReplyExpired":
            fig.expired[event.reason] += 1
            minute[("expired", event.reason, "")] += 1
            fig.last.append({"at": event.occurred_at, "sender": event.sender,
                             "decision": "expired", "reason": event.reason})
        elif t == "ReplyRefunded":
            fig.refunded_micros += event.refund_micros
        elif t == "ReplyCostReconciled":
            delta = event.actual_micros - event.estimated_micros
            if delta > 0:
                fig.spend_micros += delta
            else:
                fig.refunded_micros -= delta
            if event.reported_micros is not None and event.reported_micros > event.actual_micros:
                fig.overruns += 1
                fig.overrun_micros += event.reported_micros - event.actual_micros
        elif t == "PolicyChanged":
            fig.policy_by, fig.policy_at = event.operator, event.occurred_at

    @staticmethod
    def _minute(fig: CampaignFigures, ts_ms: int) -> Counter:
        minute = ts_ms // MINUTE_MS
        bucket = fig.minutes.get(minute)
        if bucket is None:
            bucket = fig.minutes[minute] = Counter()
            while len(fig.minutes) > MINUTES_KEPT:
                fig.minutes.popitem(last=False)
        return bucket

    # -- reading ------------------------------------------------------------------------
    def allowance_left(self, cid: str, now_ms: int) -> int | None:
        """Micro-euros the allowance (actors.pacing) lets through now (None: pacing off)."""
        fig = self.figures[cid]
        state, policy = fig.state, fig.state.policy
        if not policy.pacing:
            return None
        return allowance_left(state.pacing, state.balance_micros, policy.reserve_micros,
                              policy.burst_percent, now_ms, state.ends_at or fig.campaign.ends_at)

    def status(self, cid: str) -> dict[str, Any]:
        """The same figures as a shard's ``status()`` (``/campaigns``), from the journal."""
        fig = self.figures[cid]
        return campaign_status(fig.state, fig.campaign)

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """Everything the dashboard shows, as JSON-ready data."""
        out: dict[str, Any] = {"now": now_ms, "events": self.events, "campaigns": {}}
        for cid, fig in self.figures.items():
            minutes = []
            first = now_ms // MINUTE_MS - 29
            for m in range(first, first + 30):
                bucket = fig.minutes.get(m, Counter())
                minutes.append({
                    "minute": m * MINUTE_MS,
                    "texts": {f"{v}:{r}" if r else v: n for (k, v, r), n in bucket.items()
                              if k == "text"},
                    "sent": bucket.get(("reply", "sent", ""), 0),
                    "spend_micros": bucket.get(("spend", "", ""), 0),
                })
            out["campaigns"][cid] = {
                **self.status(cid),
                "reserve_micros": fig.state.policy.reserve_micros,
                "allowance_left_micros": self.allowance_left(cid, now_ms),
                "spent_today_micros": fig.spent_by_day.get(now_ms // 86_400_000, 0),
                "texts": {f"{v}:{r}" if r else v: n for (v, r), n in sorted(fig.texts.items())},
                "replies": dict(sorted(fig.replies.items())),
                "decisions": {f"{d}:{r}" if r else d: n
                              for (d, r), n in sorted(fig.decisions.items())},
                "deferred": fig.deferred,
                "released": fig.released,
                "expired": dict(fig.expired),
                "overruns": fig.overruns,
                "overrun_micros": fig.overrun_micros,
                "policy_by": fig.policy_by,
                "policy_at": fig.policy_at,
                "minutes": minutes,
                "last": list(reversed(fig.last)),
                "console": fig.board.view(fig.state, fig.campaign, now_ms),
                "policy_history": fig.board.history(),
            }
        return out

    def minute_summary(self, minute: int) -> dict[str, str]:
        """One line per campaign with activity in ``minute`` (epoch ms // 60000)."""
        lines = {}
        for cid, fig in self.figures.items():
            bucket = fig.minutes.get(minute)
            if not bucket:
                continue
            texts = Counter()
            reasons = Counter()
            for (kind, verdict, reason), n in bucket.items():
                if kind == "text":
                    texts[verdict] += n
                    if reason:
                        reasons[reason] += n
            state = fig.state
            parts = [f"{sum(texts.values())} texts ("
                     + ", ".join(f"{v} {n}" for v, n in sorted(texts.items()))
                     + (": " + ", ".join(f"{r} {n}" for r, n in reasons.most_common())
                        if reasons else "") + ")"]
            parts.append(f"{bucket.get(('reply', 'sent', ''), 0)} replies sent")
            denied = sum(n for (k, _, _), n in bucket.items() if k == "denied")
            if denied:
                parts.append(f"{denied} denied")
            for k in ("deferred", "released"):
                if bucket.get((k, "", "")):
                    parts.append(f"{bucket[(k, '', '')]} {k}")
            parts.append(f"EUR {eur(bucket.get(('spend', '', ''), 0))} spent")
            lines[cid] = (", ".join(parts) + f"; balance EUR {eur(state.balance_micros)}, "
                          f"queue {len(state.queue)}, surge {'ON' if state.cohorts.active else 'off'}"
                          f", policy v{state.policy.version}")
        return lines


def eur(micros: int) -> str:
    return f"{micros / 1_000_000:,.2f}"
