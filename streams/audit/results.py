"""The audit's results: mismatches, counters, per-day stats, the report (plain values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
KEEP_MISMATCHES = 1000  # mismatches kept in full; all are counted


class MalformedEvent(ValueError):
    """An event whose fields have the wrong types (e.g. a string where a time is expected)."""

    def __init__(self, position: int, detail: str) -> None:
        super().__init__(f"event #{position}: malformed ({detail})")
        self.position = position




@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str  # screening | screening_without_text | text_without_screening |
    #            unknown_policy_version | decision | conflicting | no_forwarded_text |
    #            unknown_campaign
    message_id: str  # the inbound message id, or "cmd:<command id>" for operator events
    expected: dict[str, Any] | None  # what the core decides now (None: nothing to compare)
    recorded: dict[str, Any] | None  # what the journal holds (None: missing)
    position: int  # index in the replayed stream of the recorded event (or of the text)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message_id": self.message_id, "position": self.position,
                "expected": self.expected, "recorded": self.recorded}


@dataclass(slots=True)
class Counters:
    events: int = 0
    texts: int = 0  # TextReceived
    screenings: int = 0  # SenderScreened decided again
    restated: int = 0  # of which verdicts given again for a text seen before (counted once)
    reopened: int = 0  # SenderReopened decided again (a request ended without a reply)
    campaign_events: int = 0  # unique seq'd campaign events decided again
    redelivered: int = 0  # exact repeats of a campaign event, dropped
    unknown_campaign: int = 0  # unique ReplyDenied(unknown_campaign), seq 0
    pending: int = 0  # forwarded texts with no decision yet
    control_rejected: int = 0
    texts_rejected: int = 0  # TextRejected (unknown recipient)
    replies_sent: int = 0
    replies_failed: int = 0
    other: int = 0  # events the audit does not look at
    deferred_senders: int = 0  # senders replayed after the pass (policy version seen late)
    mismatches: int = 0
    # Approved replies with no attempt nor outcome, approved more than UNATTEMPTED_AFTER_MS
    # before the journal's last send event: a paid reply the send stage never saw.
    unattempted: int = 0


# An approved reply is attempted at once (a delayed one is scheduled at MessageBird): one
# approved this long before the journal's last send event with no attempt was never seen.
UNATTEMPTED_AFTER_MS = 10 * 60 * 1000


class DayStats:
    """One campaign's UTC day. What became of the day's texts is counted on the day they
    came (``approved``: replies paid for them, at once or released later; ``suppressed``:
    each screening and denial reason, and each expiry as ``expired:<reason>``; ``queued``:
    still waiting at the end of the journal), so that a day adds up:
    texts_in = approved + suppressed + queued (+ the campaign's pending). Money and sends
    are counted on the day they happened."""

    __slots__ = ("texts_in", "approved", "spent_micros", "credited_micros", "policy_changes",
                 "sent", "failed", "suppressed", "queued")

    def __init__(self) -> None:
        self.texts_in = 0
        self.queued = 0
        self.approved = 0
        self.spent_micros = 0
        self.credited_micros = 0
        self.policy_changes = 0
        self.sent = 0
        self.failed = 0
        self.suppressed: dict[str, int] = {}


@dataclass(slots=True)
class CampaignReplay:
    """One campaign's replay done apart (``Audit.replay_apart``: on a copy of the fed audit,
    in another process), with all that ``Audit.result`` takes of it: its mismatches in seq
    order (at most ``keep``) and their count, its counters, its decided events (idempotency
    key -> the event's position in the journal) and its events' part of the day tallies."""

    found: list[Mismatch] = field(default_factory=list)
    mismatches: int = 0
    redelivered: int = 0
    campaign_events: int = 0
    decided: list[tuple[str, int]] = field(default_factory=list)
    days: dict[tuple[str, int], DayStats] = field(default_factory=dict)


@dataclass(slots=True)
class ScreeningReplay:
    """The screening half of an audit (``Audit(part="screening").screening_part()``), all
    that the other half's ``result(screening=...)`` takes of it: the screening mismatches
    (sorted, at most ``keep``: the first found, as in one audit) and counters, the texts,
    suppressed verdicts and replies sent per (campaign, day), how many events it was fed,
    the number range of each forwarded text (message id -> range, none for an empty one),
    the replies sent and the message ids of the replies it saw attempted."""

    found: list[Mismatch]
    mismatches: int
    restated: int
    deferred_senders: int
    days: dict[tuple[str, int], tuple[int, dict[str, int], int]]  # texts in, suppressed, sent
    events: int  # how many it was fed: the other half must have read as many
    texts: int
    forward_prefix: dict[str, str]
    replies_sent: int
    attempted: set[str]


class PrefixUnconfirmed(ValueError):
    """A ``"campaigns"`` half decided a request with the number range its decision recorded,
    and the texts (the other half's) say another: the journal is to be audited in one
    process, which reports the difference as a mismatch."""


@dataclass(slots=True)
class CampaignReport:
    campaign_id: str
    budget_micros: int | None  # None: the campaign is not in the config
    reply_cost_micros: int | None  # at policy version 1
    reply_segments: int | None
    days: dict[int, DayStats] = field(default_factory=dict)  # UTC day number -> stats
    pending: int = 0


@dataclass(slots=True)
class Report:
    campaigns: dict[str, CampaignReport]


@dataclass(slots=True)
class AuditResult:
    mismatches: list[Mismatch]  # the first KEEP_MISMATCHES, in order (see module docstring)
    counters: Counters
    report: Report

    @property
    def ok(self) -> bool:
        return self.counters.mismatches == 0


@dataclass(slots=True)
class WhatIf:
    baseline: Report  # the journal's texts under the config
    alternative: Report  # the same texts under the other config

