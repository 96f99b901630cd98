"""The console's view of one campaign beyond the counters (``streams.console.metrics`` keeps
one ``Board`` per campaign and feeds it the campaign's events in ``seq`` order): the money
and how long it lasts, each surge and what it decided, the queue by evidence, the replies'
waits, the policy with who changed what, and the texts by minute, hour and day for the chart.
Pure: no clock, no I/O; ``view(now)`` is JSON-ready data for ``/dashboard/data``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from actors.campaign import HELD_KIND_UNIT, CampaignState
from actors.pacing import allowance_view
from schemas.campaign import Campaign
from schemas.policy import OPERATOR_KEYS, describe

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
SURGES_KEPT = 5
WAITS_KEPT = 1_000  # the last approvals' waits, for the p95
HELD_KEPT = 100_000  # held-back message ids remembered (to count their releases per surge)
POLICY_CHANGES_KEPT = 10
CREDITS_KEPT = 10
# The chart's ranges: bucket width and how many buckets are kept.
RANGES = {"hour": (MINUTE_MS, 60), "day": (HOUR_MS, 24), "campaign": (DAY_MS, 400)}
# A held-back request's kind, from its rank (actors.decide.held_rank): the evidence it waits on.
HELD_KINDS = ("spike minute", "raid minute: the campaign's words", "raid minute: own words",
              "raid minute: common words only")


# One colour per outcome, for the dashboard (sent with its data) and the audit's HTML page:
# an operator reads both with the same eyes. Keys: a screening or decision reason, or one
# of the outcomes below; anything else takes OTHER_COLOR.
COLORS = {
    "forward": "#3867d6", "replied": "#3867d6", "reply:sent": "#20bf6b", "sent": "#20bf6b",
    "reply:failed": "#b33939", "reply:uncertain": "#cc8e35", "queued": "#f5cd79",
    "already_answered": "#a5b1c2", "duplicate": "#d1d8e0", "flooder": "#eb3b5a",
    "test_text": "#f7b731", "invalid_number": "#8854d0", "not_mobile": "#4b6584",
    "country_not_allowed": "#0fb9b1", "blocked_prefix": "#fa8231", "raid_words": "#c0392b",
    "other_campaign": "#e15f41", "ttl": "#cf6a87", "budget_exhausted": "#574b90",
    "reserve_reached": "#786fa6", "allowance": "#3dc1d3", "queue_full": "#f78fb3",
    "prefix_flood": "#e77f67", "ended": "#596275", "not_started": "#596275",
}
OTHER_COLOR = "#778ca3"


def color_of(key: str) -> str:
    """The colour of ``key``: ``suppress:flooder`` and ``expired:ttl`` take their reason's."""
    return COLORS.get(key) or COLORS.get(key.rsplit(":", 1)[-1], OTHER_COLOR)


@dataclass(slots=True)
class Surge:
    """One surge and what was decided on the requests that arrived in it."""

    started_at: int
    first_minute: int
    first_texts: int
    baseline_texts: int
    baseline_minutes: int
    cap_micros: int
    ended_at: int | None = None
    held_back: int = 0
    held_in_raid: int = 0
    released: int = 0
    released_micros: int = 0
    raid_words: int = 0  # refused (denied or expired) for a raid's words
    expired: Counter = field(default_factory=Counter)  # reason -> its arrivals expired

    def view(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "ended_at": self.ended_at,
                "first_texts": self.first_texts, "baseline_texts": self.baseline_texts,
                "baseline_minutes": self.baseline_minutes, "cap_micros": self.cap_micros,
                "held_back": self.held_back, "held_in_raid": self.held_in_raid,
                "released": self.released, "released_micros": self.released_micros,
                "raid_words": self.raid_words, "expired": dict(self.expired)}


def _bucket(series: OrderedDict, start: int, keep: int) -> dict:
    bucket = series.get(start)
    if bucket is None:
        bucket = series[start] = {}
        while len(series) > keep:
            series.popitem(last=False)
    return bucket


def percentile(values: list[int], pct: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * pct + 99) // 100 - 1)]


@dataclass(slots=True)
class Board:
    surges: deque = field(default_factory=lambda: deque(maxlen=SURGES_KEPT))
    held: OrderedDict = field(default_factory=OrderedDict)  # message id -> its Surge
    waits: deque = field(default_factory=lambda: deque(maxlen=WAITS_KEPT))  # ms
    spend_hours: OrderedDict = field(default_factory=OrderedDict)  # hour -> micros (event time)
    credits: deque = field(default_factory=lambda: deque(maxlen=CREDITS_KEPT))
    changes: deque = field(default_factory=lambda: deque(maxlen=POLICY_CHANGES_KEPT))
    key_changed: dict = field(default_factory=dict)  # operator key -> its last change
    series: dict = field(default_factory=lambda: {name: OrderedDict() for name in RANGES})
    # Per range [width, kept, series, the current bucket's start, the bucket]: most texts
    # fall in the bucket of the one before (the journal is read in order): no lookup then.
    current: list = field(default_factory=list)

    # -- feeding --------------------------------------------------------------------------
    def chart(self, ts_ms: int, key: str) -> None:
        """One more of ``key`` (a verdict:reason, or "reply:sent") at ``ts_ms`` in every
        range (a text or a reply: the journal follower's every one, so kept cheap)."""
        if not self.current:
            self.current = [[width, keep, self.series[name], None, None]
                            for name, (width, keep) in RANGES.items()]
        for slot in self.current:
            start = ts_ms - ts_ms % slot[0]
            if start != slot[3]:
                slot[3], slot[4] = start, _bucket(slot[2], start, slot[1])
            bucket = slot[4]
            bucket[key] = bucket.get(key, 0) + 1

    def _surge_of(self, arrived_at: int) -> Surge | None:
        for surge in reversed(self.surges):
            if surge.first_minute <= arrived_at // MINUTE_MS and (
                    surge.ended_at is None or arrived_at <= surge.ended_at):
                return surge
        return None

    def policy_changed(self, event: Any, before: dict[str, Any], after: dict[str, Any]) -> None:
        diff = {k: [before[k], after[k]] for k in after if k != "version" and before[k] != after[k]}
        change = {"version": event.version, "by": event.operator, "at": event.occurred_at,
                  "changes": diff}
        self.changes.append(change)
        for key in diff:
            self.key_changed[key] = change

    def campaign_event(self, event: Any) -> None:  # noqa: C901 - one branch per event type
        t = event.TYPE
        if t == "SurgeStarted":
            # Its first minute is the one before it started (as actors.evolve counts it).
            self.surges.append(Surge(
                started_at=event.occurred_at, first_minute=event.occurred_at // MINUTE_MS - 1,
                first_texts=event.first_texts, baseline_texts=event.baseline_texts,
                baseline_minutes=event.baseline_minutes, cap_micros=event.spend_cap_micros))
        elif t == "SurgeEnded":
            if self.surges and self.surges[-1].ended_at is None:
                self.surges[-1].ended_at = event.occurred_at
        elif t == "ReplyHeldBack":
            surge = self._surge_of(event.deferred_at)
            if surge is not None:
                surge.held_back += 1
                surge.held_in_raid += event.in_raid
                self.held[event.message_id] = surge
                if len(self.held) > HELD_KEPT:
                    self.held.popitem(last=False)
        elif t == "ReplyApproved":
            hour = event.occurred_at // HOUR_MS
            self.spend_hours[hour] = self.spend_hours.get(hour, 0) + event.cost_micros
            while len(self.spend_hours) > 48:
                self.spend_hours.popitem(last=False)
            if event.deferred_at is not None:
                self.waits.append(event.occurred_at - event.deferred_at)
                surge = self.held.pop(event.message_id, None)
                if surge is not None:
                    surge.released += 1
                    surge.released_micros += event.cost_micros
            else:
                self.waits.append(0)
        elif t == "ReplyExpired":
            self.held.pop(event.message_id, None)
            surge = self._surge_of(event.deferred_at)
            if surge is not None:
                surge.expired[event.reason] += 1
                surge.raid_words += event.reason == "raid_words"
        elif t == "ReplyDenied" and event.reason == "raid_words":
            surge = self._surge_of(event.occurred_at)
            if surge is not None:
                surge.raid_words += 1
        elif t == "BudgetCredited":
            self.credits.append({"at": event.occurred_at, "amount_micros": event.amount_micros,
                                 "source": event.source, "by": event.operator})

    # -- reading --------------------------------------------------------------------------
    def view(self, state: CampaignState, campaign: Campaign, now: int) -> dict[str, Any]:
        return {"money": self._money(state, campaign, now),
                "flood": self._flood(state, now),
                "waits": {"p95_ms": percentile(list(self.waits), 95),
                          "median_ms": percentile(list(self.waits), 50),
                          "of": len(self.waits)},
                "policy": self._policy(state),
                "series": {name: [{"at": at, **bucket} for at, bucket in s.items()]
                           for name, s in self.series.items()},
                "ranges": {name: width for name, (width, _) in RANGES.items()},
                "colors": COLORS, "other_color": OTHER_COLOR,
                "starts_at": campaign.starts_at, "ends_at": campaign.ends_at}

    def _money(self, state: CampaignState, campaign: Campaign, now: int) -> dict[str, Any]:
        policy = state.policy
        budget = campaign.budget_micros + state.credited_micros
        spendable = max(0, state.balance_micros - policy.reserve_micros)
        # The pace: what was paid over the last 24 hours (event time); how long the money
        # above the reserve lasts at that pace.
        hour = now // HOUR_MS
        pace = sum(m for h, m in self.spend_hours.items() if hour - 24 < h <= hour)
        runway = now + spendable * DAY_MS // pace if pace else None
        ends = campaign.ends_at
        out: dict[str, Any] = {
            "budget_micros": budget, "spent_micros": state.spent_micros,
            "used_percent": round(100 * state.spent_micros / budget, 1) if budget else None,
            "balance_micros": state.balance_micros, "reserve_micros": policy.reserve_micros,
            "credited_micros": state.credited_micros, "credits": list(self.credits)[::-1],
            "spendable_micros": spendable, "pace_per_day_micros": pace,
            "lasts_until": None if runway is None else min(runway, 2**53),
            "lasts_past_end": runway is not None and runway >= ends,
            "pacing": policy.pacing, "ends_at": ends,
        }
        if policy.pacing and now < ends:
            tokens, _ = allowance_view(state.pacing, state.balance_micros, policy.reserve_micros,
                                       policy.burst_percent, now, ends)
            days_left = max(1, (ends - now)) / DAY_MS
            out["allowance"] = {"now_micros": tokens,
                                "per_day_micros": int((spendable - tokens) / days_left),
                                "lasts_until": ends}
        return out

    def _flood(self, state: CampaignState, now: int) -> dict[str, Any]:
        policy = state.policy
        cohorts = state.cohorts
        current = self.surges[-1] if self.surges and self.surges[-1].ended_at is None else None
        spent = {s[0]: s[2] for s in state.surges}
        surges = []
        for surge in self.surges:
            view = surge.view()
            view["spent_micros"] = spent.get(surge.first_minute, surge.released_micros)
            surges.append(view)
        kinds = Counter(key[0] // HELD_KIND_UNIT for key in state.queue.held_order)
        return {
            "active": cohorts.active,
            "ends_earliest": ((cohorts.last_surge_minute + policy.surge_quiet_minutes + 1)
                              * MINUTE_MS if current is not None else None),
            "this_minute": {"first_texts": cohorts.count,
                            "baseline_per_minute": (sum(cohorts.history) / len(cohorts.history)
                                                    if cohorts.history else
                                                    policy.surge_expected_per_minute)},
            "surges": surges[::-1],
            "queue": {"waiting_delay": len(state.queue.holding),
                      "held_back": {HELD_KINDS[min(k, 3)]: n for k, n in sorted(kinds.items())},
                      "limit": policy.surge_queue},
        }

    def _policy(self, state: CampaignState) -> list[dict[str, Any]]:
        shown = describe(state.policy)
        rows = []
        for key in OPERATOR_KEYS:
            if key not in shown:
                continue
            change = self.key_changed.get(key)
            row: dict[str, Any] = {"key": key, "value": shown[key]}
            if change is not None:
                row.update(version=change["version"], by=change["by"], at=change["at"],
                           was=change["changes"][key][0])
            rows.append(row)
        return rows

    def history(self) -> list[dict[str, Any]]:
        return list(self.changes)[::-1]
