"""The audit replay: re-run the pure core over the journal and diff every decision.

Run it::

    antirelou audit --config campaigns.toml --kafka HOST:PORT          # the live journal
    antirelou audit --config campaigns.toml --file journal.jsonl       # an export
    antirelou export --kafka HOST:PORT --out journal.jsonl             # make an export
    antirelou audit ... --json                      # the report as JSON
    antirelou audit ... --what-if other.toml        # the same texts under another config

Exit status: 0 when every decision is reproduced, 1 on any mismatch (the first one is
printed to stderr as JSON), 2 on bad input. From Python::

    result = audit(events, campaigns)      # events: decoded journal events, in journal order
    print(render_text(result)); data = to_json(result)
    print(render_text(what_if(events, campaigns, other_campaigns)))

This module is pure: no Kafka, no file, no clock. It takes decoded events (``schemas.codec``
has upcast old versions already) and the campaigns of the config.

What is checked
---------------

*Screening* (per sender). The journal is keyed by sender pseudonym, so a sender's events are
in order within one partition; partitions may come one after another or interleaved. For
each recorded ``SenderScreened`` the k-th ``TextReceived`` of the same sender and message id
becomes ``ScreenText(..., reply_to="")`` and is decided again with ``decide_screening`` on a
per-sender ``SenderState`` (a redelivered webhook, or a text given again to a worker after a
crash, legitimately gives a second text and the same verdict again: checked like any other,
counted once, as ``restated``; ``duplicate`` verdicts of older journals are accepted there).
The policy (cooldown, rates, filters) is the version the verdict recorded (the worker's
knowledge at the time is an input): version 1 is the config, later versions come from the
journal's ``PolicyChanged`` events. A sender whose verdict names a version not seen yet is
set aside and replayed, in order, after the pass.

*Campaigns* (per campaign, in ``seq`` order). Every event with a ``seq`` (``ReplyApproved``,
``ReplyDenied``, ``PolicyChanged``, ``BudgetCredited``, ``ReplyRefunded``,
``ReplyCostReconciled``) is sorted by seq; an exact repeat
(at-least-once redelivery) is dropped and counted as ``redelivered``; a different event with
the same seq is a ``conflicting`` mismatch. Each other event is decided again, from
``CampaignState.opening(campaign)``: decisions with ``decide_reply`` on ``RequestReply``
rebuilt from the forwarded ``SenderScreened`` of their message id, policy changes and credits
with ``decide_control`` on the command rebuilt from the event, refunds and price
reconciliations with ``decide_settlement`` (each must follow from a ``ReplyFailed`` or a
``DeliveryReported`` price of the journal, else a ``refund_without_failure`` /
``price_without_report`` mismatch). A message id decided again
under a new seq goes through the core too: it remembers a bounded number of ids
(``REMEMBERED_DECISIONS``), so a late redelivery is legitimately decided afresh, and the core
says whether it would instead have repeated the earlier answer. Forwarded texts with no
decision yet are ``pending`` (not a mismatch).

One command may give several events with consecutive seqs: a request and the
``SurgeStarted``/``SurgeEnded`` or ``ReplyExpired(queue_full)`` it caused, a tick's
releases and expiries. The first is decided again (a request from its forwarded text, its
number range from the ``TextReceived``; a released ``ReplyApproved``, a ``ReplyExpired(ttl)``
or a ``SurgeEnded`` as ``Tick(campaign, occurred_at)``, since a tick's events carry its
time), the others are compared with the rest of what the core decided, in seq order.
``ReplyDenied(reason="unknown_campaign")`` has seq 0 and is checked on its own.
``ControlRejected`` takes no seq and changes nothing: counted only.

The replay state always follows the core's own (expected) events, never the recorded ones:
one tampered event gives one mismatch. A lost event shifts every later ``seq`` of its
campaign, so each later decision mismatches too; the first mismatch is the root cause.
Mismatches are listed screening first (journal order), then per campaign in seq order.
Events are compared as values (dataclass equality, the same as ``codec.to_dict`` equality
for decoded events); only mismatches are turned into dicts.

Report: per campaign and UTC day of ``occurred_at``: texts in, replies approved,
suppressions by reason (screening and denial reasons), EUR spent and credited, the balance at
the end of the day (budget + credits - spending up to that day), replies sent and failed.
It describes the journal as recorded (unique events), so it stays meaningful when a
mismatch is found.

What-if
-------

``what_if(events, campaigns, other_campaigns)`` decides everything afresh, twice, from the
journal's inputs only: its texts and its operator actions (policy changes and credits,
rebuilt as commands). Both runs use fresh states and the same order: event time, ties in
journal order. Event time, not journal order, because the journal is read partition by
partition, and the shells met the texts (and the budget) in about the order they arrived.
Screening uses the campaign's current what-if policy (cooldown), each forwarded text is
decided at once. The two reports come side by side: texts, replies, EUR spent, budget left
and the first day the budget ran out, per campaign.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

from actors.campaign import (
    CampaignState,
    decide_and_apply,
    decide_control,
    decide_reply,
    decide_review,
    decide_settlement,
    decide_tick,
    evolve_campaign,
    idempotency_key,
    initial_policy,
    reply_cost,
)
from actors.shard import CampaignShard
from schemas import codec
from schemas.campaign import Campaign
from schemas.commands import (
    ChangePolicy,
    CreditBudget,
    NoteReplyOutcome,
    RequestReply,
    ReviewRequest,
    ScreenText,
    SettleReply,
    Tick,
)
from schemas.events import (
    MICROS_PER_EUR,
    BudgetCredited,
    ControlRejected,
    DeliveryReported,
    PolicyChanged,
    ReplyApproved,
    ReplyCostReconciled,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    ReplyFailed,
    ReplyPromoted,
    ReplyRefunded,
    ReplySent,
    SenderReopened,
    SenderScreened,
    SurgeEnded,
    SurgeStarted,
    TextReceived,
    TextRejected,
)
from schemas.policy import apply_changes
from streams.screening import (  # noqa: F401 (UNKNOWN_CAMPAIGN_POLICY: part of this API)
    UNKNOWN_CAMPAIGN_POLICY,
    SenderState,
    decide_reopen,
    decide_screening,
    evolve_sender,
)

DAY_MS = 86_400_000
KEEP_MISMATCHES = 1000  # mismatches kept in full; all are counted
SCREENING_REASONS = ("duplicate", "already_answered")
DENIAL_REASONS = ("budget_exhausted", "reserve_reached", "not_started", "ended", "unknown_campaign",
                  "prefix_flood", "allowance", "queue_full", "expired")
_REASON_ORDER = {r: i for i, r in enumerate(SCREENING_REASONS + DENIAL_REASONS)}


class MalformedEvent(ValueError):
    """An event whose fields have the wrong types (e.g. a string where a time is expected)."""

    def __init__(self, position: int, detail: str) -> None:
        super().__init__(f"event #{position}: malformed ({detail})")
        self.position = position


# --- results ------------------------------------------------------------------------------


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


class DayStats:
    __slots__ = ("texts_in", "approved", "spent_micros", "credited_micros", "policy_changes",
                 "sent", "failed", "suppressed")

    def __init__(self) -> None:
        self.texts_in = 0
        self.approved = 0
        self.spent_micros = 0
        self.credited_micros = 0
        self.policy_changes = 0
        self.sent = 0
        self.failed = 0
        self.suppressed: dict[str, int] = {}


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


# --- tallies ------------------------------------------------------------------------------


class _Tally:
    """Per campaign, per UTC day counts, from the events given to it."""

    __slots__ = ("flat",)

    def __init__(self) -> None:
        # (campaign id, UTC day number) -> stats; the hot loop inlines the lookup.
        self.flat: dict[tuple[str, int], DayStats] = {}

    def day(self, campaign_id: str, at: int) -> DayStats:
        key = (campaign_id, at // DAY_MS)
        stats = self.flat.get(key)
        if stats is None:
            stats = self.flat[key] = DayStats()
        return stats

    def campaign_event(self, ev: Any) -> None:
        t = type(ev)
        s = self.day(ev.campaign_id, ev.occurred_at)
        if t is ReplyApproved:
            s.approved += 1
            s.spent_micros += ev.cost_micros
        elif t is ReplyRefunded:
            s.spent_micros -= ev.refund_micros
        elif t is ReplyCostReconciled:
            s.spent_micros += ev.actual_micros - ev.estimated_micros
        elif t is ReplyDenied:
            s.suppressed[ev.reason] = s.suppressed.get(ev.reason, 0) + 1
        elif t is ReplyExpired:
            s.suppressed["expired"] = s.suppressed.get("expired", 0) + 1
        elif t is BudgetCredited:
            s.credited_micros += ev.amount_micros
        elif t is PolicyChanged:
            s.policy_changes += 1

    def report(self, campaigns: dict[str, Campaign], pending: dict[str, int]) -> Report:
        by_campaign: dict[str, dict[int, DayStats]] = {}
        for (cid, d), stats in self.flat.items():
            by_campaign.setdefault(cid, {})[d] = stats
        out: dict[str, CampaignReport] = {}
        for cid in sorted(set(by_campaign) | set(campaigns)):
            c = campaigns.get(cid)
            cost = reply_cost(c) if c is not None else None
            out[cid] = CampaignReport(
                campaign_id=cid,
                budget_micros=c.budget_micros if c is not None else None,
                reply_cost_micros=cost.cost_micros if cost else None,
                reply_segments=cost.segments if cost else None,
                days=by_campaign.get(cid, {}),
                pending=pending.get(cid, 0),
            )
        return Report(out)


# --- the audit replay ---------------------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The replay keeps hundreds of thousands of long-lived objects (states, verdicts,
    decisions) and makes no reference cycles: the cyclic GC would only walk them again and
    again. Paused while replaying; the process's setting is restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Audit:
    """Feed decoded journal events (in journal order), then ask for the ``result()``.

    ``feed`` may be called several times (e.g. with chunks read from Kafka); positions
    continue across calls. ``audit(events, campaigns)`` does both at once.
    """

    def __init__(self, campaigns: Iterable[Campaign], keep: int = KEEP_MISMATCHES) -> None:
        self.campaigns = {c.id: c for c in campaigns}
        self.keep = keep
        self.counters = Counters()
        self._tally = _Tally()
        self._senders: dict[str, SenderState] = {}
        # Texts not screened yet, per sender, in order: [(TextReceived, position)].
        self._awaiting: dict[str, list[tuple[TextReceived, int]]] = {}
        # Senders set aside until the pass ends: [(text, text position, screened, position)].
        self._deferred: dict[str, list[tuple[TextReceived | None, int, Any, int]]] = {}
        # Each known policy version, per campaign: index = version - 1.
        self._policies: dict[str, list[Any]] = {}
        self._early_policies: dict[str, dict[int, PolicyChanged]] = {}
        for c in self.campaigns.values():
            policy = initial_policy(c)
            self._policies[c.id] = [policy]
        self._forwarded: dict[str, SenderScreened] = {}  # message id -> first forward verdict
        self._forward_prefix: dict[str, str] = {}  # message id -> the text's number range
        self._campaign_events: dict[str, list[tuple[int, int, Any]]] = {}  # (seq, pos, event)
        self._unknown_denials: list[tuple[int, ReplyDenied]] = []
        # The facts settlements are decided on: replies not sent; prices reported.
        self._failed: set[str] = set()
        self._prices: dict[str, set[int]] = {}
        # Screening's reopenings, and the verdicts a review of a queued request may follow.
        self._reopened: list[tuple[SenderReopened, int]] = []
        self._reviewable: set[tuple[str, str, str]] = set()  # (sender, campaign, reason)
        self._screening_mismatches: list[Mismatch] = []
        self._held: tuple[TextReceived | None, int] = (None, -1)
        self._position = 0
        self._result: AuditResult | None = None

    # The hot loop: one pass, dict lookups, no copies.
    def feed(self, events: Iterable[Any]) -> None:
        if self._result is not None:
            raise RuntimeError("feed() after result()")
        awaiting = self._awaiting
        deferred = self._deferred
        senders = self._senders
        policies = self._policies
        forwarded = self._forwarded
        campaign_events = self._campaign_events
        flat = self._tally.flat
        counters = self.counters
        # The last text, not yet parked in ``awaiting``: its verdict usually comes next.
        held, held_pos = self._held
        pos = self._position - 1
        texts = screenings = sent = failed = 0
        gc_was_enabled = gc.isenabled()
        gc.disable()  # see _gc_paused
        try:
            for pos, ev in enumerate(events, self._position):
                t = type(ev)
                if t is TextReceived:
                    texts += 1
                    key = (ev.campaign_id, ev.occurred_at // DAY_MS)
                    s = flat.get(key)
                    if s is None:
                        s = flat[key] = DayStats()
                    s.texts_in += 1
                    if held is not None:
                        queue = awaiting.get(held.sender)
                        if queue is None:
                            awaiting[held.sender] = [(held, held_pos)]
                        else:
                            queue.append((held, held_pos))
                    held, held_pos = ev, pos
                elif t is SenderScreened:
                    screenings += 1
                    sender = ev.sender
                    mid = ev.message_id
                    # The text this verdict answers: the sender's first unscreened one.
                    if (held is not None and held.message_id == mid and held.sender == sender
                            and sender not in awaiting):
                        text, text_pos = held, held_pos
                        held = None
                    else:
                        text = None
                        text_pos = -1
                        if held is not None and held.sender == sender:
                            queue = awaiting.get(sender)
                            if queue is None:
                                awaiting[sender] = [(held, held_pos)]
                            else:
                                queue.append((held, held_pos))
                            held = None
                        queue = awaiting.get(sender)
                        if queue is not None:
                            for i, (candidate, candidate_pos) in enumerate(queue):
                                if candidate.message_id == mid:
                                    text, text_pos = candidate, candidate_pos
                                    if len(queue) == 1:
                                        del awaiting[sender]
                                    else:
                                        del queue[i]
                                    break
                    if ev.reason == "flooder" or ev.reason == "already_answered":
                        self._reviewable.add((sender, ev.campaign_id, ev.reason))
                    if ev.verdict == "forward" and mid not in forwarded:
                        forwarded[mid] = ev
                        if text is not None and text.prefix:
                            self._forward_prefix[mid] = text.prefix
                    if deferred and sender in deferred:
                        deferred[sender].append((text, text_pos, ev, pos))
                        continue
                    known = policies.get(ev.campaign_id)
                    version = ev.policy_version
                    if known is not None and 0 < version <= len(known):
                        policy = known[version - 1]
                    elif known is None and version == 1:
                        policy = UNKNOWN_CAMPAIGN_POLICY  # a campaign the config does not know
                    else:
                        deferred[sender] = [(text, text_pos, ev, pos)]
                        continue
                    if text is None:
                        self._screening_mismatch("screening_without_text", mid, None, ev, pos)
                        self._count_verdict(ev)
                        continue
                    state = senders.get(sender)
                    if state is None:
                        state = senders[sender] = SenderState()
                    self._screen_again(state, text, ev, policy, pos)
                elif t is ReplyApproved or t is ReplyDenied:
                    if t is ReplyDenied and ev.seq == 0 and ev.reason == "unknown_campaign":
                        self._unknown_denials.append((pos, ev))
                        continue
                    items = campaign_events.get(ev.campaign_id)
                    if items is None:
                        campaign_events[ev.campaign_id] = [(ev.seq, pos, ev)]
                    else:
                        items.append((ev.seq, pos, ev))
                elif t is ReplySent or t is ReplyFailed:
                    key = (ev.campaign_id, ev.occurred_at // DAY_MS)
                    s = flat.get(key)
                    if s is None:
                        s = flat[key] = DayStats()
                    if t is ReplySent:
                        sent += 1
                        s.sent += 1
                    else:
                        failed += 1
                        s.failed += 1
                        self._failed.add(ev.message_id)
                elif t is ReplyRefunded or t is ReplyCostReconciled:
                    campaign_events.setdefault(ev.campaign_id, []).append((ev.seq, pos, ev))
                elif t is SenderReopened:
                    self._reopen(ev, pos)
                elif t is DeliveryReported:
                    if ev.price_micros is not None:
                        self._prices.setdefault(ev.message_id, set()).add(ev.price_micros)
                elif (t is PolicyChanged or t is BudgetCredited or t is ReplyDeferred
                      or t is ReplyExpired or t is SurgeStarted or t is SurgeEnded
                      or t is ReplyPromoted):
                    campaign_events.setdefault(ev.campaign_id, []).append((ev.seq, pos, ev))
                    if t is PolicyChanged:
                        self._learn_policy(ev)
                elif t is ControlRejected:
                    counters.control_rejected += 1
                elif t is TextRejected:
                    counters.texts_rejected += 1
                else:
                    counters.other += 1
        except (TypeError, AttributeError) as exc:
            raise MalformedEvent(pos, f"{type(exc).__name__}: {exc}") from None
        finally:
            if gc_was_enabled:
                gc.enable()
            self._held = (held, held_pos)
            self._position = pos + 1
            counters.texts += texts
            counters.screenings += screenings
            counters.replies_sent += sent
            counters.replies_failed += failed

    def _reopen(self, ev: SenderReopened, pos: int) -> None:
        """A sender reopened by screening: decided again on his replayed state, in his order;
        the outcome it names must be in the journal (checked at the end)."""
        self.counters.reopened += 1
        self._reopened.append((ev, pos))
        if ev.sender in self._deferred:
            self._deferred[ev.sender].append((None, -1, ev, pos))
            return
        self._reopen_again(self._senders.setdefault(ev.sender, SenderState()), ev, pos)

    def _reopen_again(self, state: SenderState, ev: SenderReopened, pos: int) -> None:
        note = NoteReplyOutcome(ev.message_id, ev.campaign_id, ev.sender, ev.outcome,
                                ev.occurred_at)
        expected = decide_reopen(state, note)
        for e in expected:
            evolve_sender(state, e)
        if expected != [ev]:
            self._screening_mismatch("reopen", ev.message_id, expected[0] if expected else None,
                                     ev, pos)

    def _screening_mismatch(self, kind: str, mid: str, expected: Any, recorded: Any, pos: int) -> None:
        self.counters.mismatches += 1
        if len(self._screening_mismatches) < self.keep:
            self._screening_mismatches.append(Mismatch(
                kind, mid, None if expected is None else codec.to_dict(expected),
                None if recorded is None else codec.to_dict(recorded), pos,
            ))

    def _learn_policy(self, ev: PolicyChanged) -> None:
        """Extend the campaign's version chain (versions may arrive out of order)."""
        chain = self._policies.get(ev.campaign_id)
        if chain is None:
            return  # not in the config: the campaign replay reports it
        early = self._early_policies.setdefault(ev.campaign_id, {})
        if ev.version > len(chain):
            early.setdefault(ev.version, ev)
        while len(chain) + 1 in early:
            nxt = early.pop(len(chain) + 1)
            chain.append(apply_changes(chain[-1], nxt.changes, nxt.version))

    def _replay_deferred(self) -> None:
        """Senders whose verdict named a policy version not yet seen, now all are known."""
        self.counters.deferred_senders = len(self._deferred)
        for sender, items in self._deferred.items():
            state = self._senders.setdefault(sender, SenderState())
            for text, _, ev, pos in items:
                if type(ev) is SenderReopened:
                    self._reopen_again(state, ev, pos)
                    continue
                known = self._policies.get(ev.campaign_id)
                version = ev.policy_version
                if known is not None and 0 < version <= len(known):
                    policy = known[version - 1]
                elif known is None and version == 1:
                    policy = UNKNOWN_CAMPAIGN_POLICY
                else:
                    self._screening_mismatch("unknown_policy_version", ev.message_id, None, ev, pos)
                    # Nothing to decide with: keep what was recorded.
                    evolve_sender(state, ev, known[-1] if known else UNKNOWN_CAMPAIGN_POLICY)
                    continue
                if text is None:
                    self._screening_mismatch("screening_without_text", ev.message_id, None, ev, pos)
                    self._count_verdict(ev)
                    continue
                self._screen_again(state, text, ev, policy, pos)
        self._deferred.clear()

    def _screen_again(self, state: SenderState, text: TextReceived, ev: SenderScreened,
                      policy: Any, pos: int) -> None:
        """Decide ``text`` again on the sender's replayed state and compare with ``ev``. A
        verdict the state already holds is a restatement: checked, counted once."""
        restated = ev.message_id in state.recent
        expected = decide_screening(state, _screen(text, ev.sender), policy)[0]
        evolve_sender(state, expected, policy)
        if restated:
            self.counters.restated += 1
            if ev.reason == "duplicate":  # how states before verdicts were kept restated
                return
        else:
            self._count_verdict(ev)
        if expected != ev:
            self._screening_mismatch("screening", ev.message_id, expected, ev, pos)

    def _count_verdict(self, ev: SenderScreened) -> None:
        if ev.verdict != "forward":
            s = self._tally.day(ev.campaign_id, ev.occurred_at)
            s.suppressed[ev.reason] = s.suppressed.get(ev.reason, 0) + 1

    def result(self) -> AuditResult:
        if self._result is not None:
            return self._result
        with _gc_paused():
            self._result = self._finish()
        return self._result

    def _finish(self) -> AuditResult:
        try:
            self._replay_deferred()
            held, held_pos = self._held
            if held is not None:
                self._awaiting.setdefault(held.sender, []).append((held, held_pos))
                self._held = (None, -1)
            for queue in self._awaiting.values():
                for text, pos in queue:
                    self._screening_mismatch("text_without_screening", text.message_id,
                                             None, text, pos)
            self._screening_mismatches.sort(key=lambda m: m.position)
            campaign_mismatches: list[Mismatch] = []
            decided = self._replay_campaigns(campaign_mismatches)
        except (TypeError, AttributeError) as exc:
            raise MalformedEvent(-1, f"{type(exc).__name__}: {exc}") from None
        ended = {(ev.campaign_id, ev.message_id) for items in self._campaign_events.values()
                 for _, _, ev in items if isinstance(ev, _REOPENING)}
        ended.update((ev.campaign_id, ev.message_id) for _, ev in self._unknown_denials)
        for ev, pos in self._reopened:
            if (ev.campaign_id, ev.message_id) not in ended:
                self._screening_mismatch("reopen_without_outcome", ev.message_id, None, ev, pos)
        pending: dict[str, int] = {}
        for mid, fwd in self._forwarded.items():
            if mid not in decided.get(fwd.campaign_id, ()):
                pending[fwd.campaign_id] = pending.get(fwd.campaign_id, 0) + 1
        self.counters.pending = sum(pending.values())
        counters = self.counters
        counters.events = self._position
        mismatches = (self._screening_mismatches + campaign_mismatches)[: self.keep]
        return AuditResult(mismatches, counters, self._tally.report(self.campaigns, pending))

    def _replay_campaigns(self, found: list[Mismatch]) -> dict[str, dict[str, Any]]:
        counters = self.counters
        forwarded = self._forwarded
        prefixes = self._forward_prefix
        tally = self._tally.campaign_event
        keep = self.keep

        def mismatch(kind: str, key: str, expected: Any, recorded: Any, pos: int) -> None:
            counters.mismatches += 1
            if len(found) < keep:
                found.append(Mismatch(
                    kind, key, None if expected is None else codec.to_dict(expected),
                    None if recorded is None else codec.to_dict(recorded), pos,
                ))

        decided_by_campaign: dict[str, dict[str, Any]] = {}
        for cid in sorted(self._campaign_events):
            items = self._campaign_events[cid]
            items.sort(key=itemgetter(0, 1))
            campaign = self.campaigns.get(cid)
            state = CampaignState.opening(campaign) if campaign is not None else None
            decided = decided_by_campaign[cid] = {}  # idempotency key -> recorded event
            last_seq = None
            last: Any = None
            decided_n = 0
            # The rest of the events one command gave (a request and the surge it started, a
            # tick's releases): compared in seq order, not decided again.
            following: list[Any] = []
            for seq, pos, ev in items:
                if seq == last_seq:
                    if ev == last:
                        counters.redelivered += 1
                    else:
                        mismatch("conflicting", idempotency_key(ev), last, ev, pos)
                    continue
                # A new seq. Even for a key decided before: the core remembers only its last
                # REMEMBERED_DECISIONS keys, so a late redelivery is legitimately decided
                # afresh; the core itself says whether that was right.
                t = type(ev)
                key = ev.message_id if t is ReplyApproved or t is ReplyDenied else idempotency_key(ev)
                decided[key] = ev
                last_seq, last = seq, ev
                tally(ev)
                if state is None:
                    mismatch("unknown_campaign", key, None, ev, pos)
                    continue
                decided_n += 1
                if following:
                    nxt = following.pop(0)
                    if nxt != ev:
                        mismatch("decision", key, nxt, ev, pos)
                    continue
                if (t is ReplyApproved and ev.deferred_at is not None) or t is SurgeEnded or (
                        t is ReplyExpired and ev.reason in _TICK_EXPIRIES):
                    # A tick: its time is the events' time.
                    expected = decide_tick(state, Tick(cid, ev.occurred_at), campaign)
                elif t is ReplyPromoted or (t is ReplyExpired and ev.reason == "flooder"):
                    # Screening's review of a queued request: it must follow from a verdict.
                    reason = "flooder" if t is ReplyExpired else "texted_again"
                    verdict = "flooder" if t is ReplyExpired else "already_answered"
                    if (ev.sender, cid, verdict) not in self._reviewable:
                        mismatch("review_without_verdict", key, None, ev, pos)
                    expected = decide_review(state, ReviewRequest(
                        ev.message_id, cid, ev.sender, reason, ev.occurred_at))
                elif t is ReplyApproved or t is ReplyDenied or t is ReplyDeferred:
                    fwd = forwarded.get(key)
                    if fwd is None or fwd.campaign_id != cid:
                        mismatch("no_forwarded_text", key, None, ev, pos)
                        fwd = ev  # decide from the decision's own fields: no cascade
                    expected = decide_reply(state, RequestReply(
                        key, cid, fwd.sender, fwd.occurred_at, "", prefixes.get(key, ""),
                        getattr(fwd, "texts_from_sender", 1)), campaign)
                elif t is ReplyRefunded:
                    if ev.message_id not in self._failed:
                        mismatch("refund_without_failure", key, None, ev, pos)
                    expected = decide_settlement(state, SettleReply(
                        ev.message_id, cid, ev.sender, "failed", None, ev.occurred_at))
                elif t is ReplyCostReconciled:
                    if ev.actual_micros not in self._prices.get(ev.message_id, ()):
                        mismatch("price_without_report", key, None, ev, pos)
                    expected = decide_settlement(state, SettleReply(
                        ev.message_id, cid, ev.sender, "priced", ev.actual_micros,
                        ev.occurred_at))
                elif t is PolicyChanged:
                    expected = decide_control(state, ChangePolicy(
                        ev.command_id, cid, ev.changes, ev.operator, ev.occurred_at))
                elif t is BudgetCredited:
                    expected = decide_control(state, CreditBudget(
                        ev.command_id, cid, ev.amount_micros, ev.source, ev.operator,
                        ev.occurred_at))
                else:  # a SurgeStarted or queue_full expiry with no decision before it
                    expected = []
                for e in expected:
                    evolve_campaign(state, e)
                if not expected or expected[0] != ev:
                    mismatch("decision", key, expected[0] if expected else None, ev, pos)
                following = list(expected[1:])
            for missing in following:  # the core decided more than the journal holds
                mismatch("decision", idempotency_key(missing), missing, None, -1)
            counters.campaign_events += decided_n

        # ReplyDenied(unknown_campaign): seq 0, outside every campaign's order.
        nobody = CampaignShard(())
        self._unknown_denials.sort(key=itemgetter(0))
        for pos, ev in self._unknown_denials:
            decided = decided_by_campaign.setdefault(ev.campaign_id, {})
            earlier = decided.get(ev.message_id)
            if earlier is not None:
                if earlier == ev:
                    counters.redelivered += 1
                else:
                    mismatch("conflicting", ev.message_id, earlier, ev, pos)
                continue
            decided[ev.message_id] = ev
            counters.unknown_campaign += 1
            tally(ev)
            if ev.campaign_id in self.campaigns:
                mismatch("unknown_campaign", ev.message_id, None, ev, pos)
                continue
            fwd = forwarded.get(ev.message_id)
            if fwd is None or fwd.campaign_id != ev.campaign_id:
                mismatch("no_forwarded_text", ev.message_id, None, ev, pos)
                fwd = ev
            expected = nobody.decide(
                [RequestReply(ev.message_id, ev.campaign_id, fwd.sender, fwd.occurred_at, "",
                              prefixes.get(ev.message_id, ""))])
            if expected[0] != ev:
                mismatch("decision", ev.message_id, expected[0], ev, pos)
        return decided_by_campaign


# ReplyExpired reasons that a tick decides (the first event of a tick may be one of them).
_TICK_EXPIRIES = frozenset({"ttl", "raid", "budget_exhausted"})
# What may reopen a sender: a campaign event of the same message id that ended his request.
_REOPENING = (ReplyDenied, ReplyExpired, ReplyRefunded)


def audit(events: Iterable[Any], campaigns: Iterable[Campaign],
          keep: int = KEEP_MISMATCHES) -> AuditResult:
    """Replay decoded journal events (in journal order) through the core; one pass."""
    run = Audit(campaigns, keep)
    run.feed(events)
    return run.result()


# --- what-if ------------------------------------------------------------------------------


def what_if(events: Iterable[Any], campaigns: Iterable[Campaign],
            other_campaigns: Iterable[Campaign]) -> WhatIf:
    """Decide the journal's texts and operator actions afresh under both configs."""
    inputs: list[tuple[int, int, Any]] = []  # (occurred_at, position, text or control event)
    controls: set[tuple[str, str]] = set()
    for pos, ev in enumerate(events):
        t = type(ev)
        if t is TextReceived:
            inputs.append((ev.occurred_at, pos, ev))
        elif t is PolicyChanged or t is BudgetCredited:
            key = (ev.campaign_id, ev.command_id)
            if key not in controls:  # redelivered copies are one operator action
                controls.add(key)
                inputs.append((ev.occurred_at, pos, ev))
    inputs.sort(key=itemgetter(0, 1))
    return WhatIf(simulate(inputs, campaigns), simulate(inputs, other_campaigns))


def simulate(inputs: Iterable[tuple[int, int, Any]], campaigns: Iterable[Campaign]) -> Report:
    """Run the core over ``(occurred_at, position, event)`` inputs, in the order given."""
    configured = {c.id: c for c in campaigns}
    states = {cid: CampaignState.opening(c) for cid, c in configured.items()}
    senders: dict[str, SenderState] = {}
    nobody = CampaignShard(())
    tally = _Tally()
    day = tally.day
    count_event = tally.campaign_event
    forwarded: dict[str, str] = {}  # message id -> campaign, for pending (never here)
    for _, _, ev in inputs:
        t = type(ev)
        cid = ev.campaign_id
        state = states.get(cid)
        if t is TextReceived:
            day(cid, ev.occurred_at).texts_in += 1
            sender = senders.get(ev.sender)
            if sender is None:
                sender = senders[ev.sender] = SenderState()
            if ev.message_id in sender.recent:
                continue  # a copy of a text decided already: its verdict again, no news
            policy = state.policy if state is not None else UNKNOWN_CAMPAIGN_POLICY
            screened = decide_screening(sender, _screen(ev, ev.sender), policy)
            for e in screened:
                evolve_sender(sender, e, policy)
            verdict = screened[0]
            if verdict.verdict != "forward":
                s = day(cid, ev.occurred_at)
                s.suppressed[verdict.reason] = s.suppressed.get(verdict.reason, 0) + 1
                continue
            forwarded[ev.message_id] = cid
            request = RequestReply(ev.message_id, cid, ev.sender, ev.occurred_at, "", ev.prefix,
                                   verdict.texts_from_sender)
            if state is None:
                decisions = nobody.decide([request])
            else:
                decisions = decide_and_apply(state, request, configured[cid])
            for e in decisions:
                count_event(e)
        elif state is not None:
            if t is PolicyChanged:
                command: Any = ChangePolicy(ev.command_id, cid, ev.changes, ev.operator,
                                            ev.occurred_at)
            else:
                command = CreditBudget(ev.command_id, cid, ev.amount_micros, ev.source,
                                       ev.operator, ev.occurred_at)
            for e in decide_control(state, command):
                evolve_campaign(state, e)
                if type(e) is not ControlRejected:
                    count_event(e)
    return tally.report(configured, {})


# --- rendering ----------------------------------------------------------------------------


def _screen(text: TextReceived, sender: str) -> ScreenText:
    return ScreenText(text.message_id, text.campaign_id, sender, text.body, text.occurred_at, "",
                      text.number_kind, text.country, text.prefix)


def _day_iso(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _eur(micros: int | None) -> str:
    """Exact EUR from micro-euros: at least 2 decimals, more only when needed."""
    if micros is None:
        return "-"
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_EUR)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"


def _reasons(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=lambda r: (_REASON_ORDER.get(r, len(_REASON_ORDER)), r))


def _campaign_rows(cr: CampaignReport) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    spent = credited = 0
    totals: dict[str, Any] = {"texts_in": 0, "replies_approved": 0, "suppressed": {},
                              "policy_changes": 0, "replies_sent": 0, "replies_failed": 0}
    for d in sorted(cr.days):
        s = cr.days[d]
        spent += s.spent_micros
        credited += s.credited_micros
        balance = None if cr.budget_micros is None else cr.budget_micros + credited - spent
        rows.append({
            "day": _day_iso(d),
            "texts_in": s.texts_in,
            "replies_approved": s.approved,
            "suppressed": {r: s.suppressed[r] for r in _reasons(s.suppressed)},
            "spent_micros": s.spent_micros,
            "spent_eur": _eur(s.spent_micros),
            "credited_micros": s.credited_micros,
            "policy_changes": s.policy_changes,
            "balance_end_micros": balance,
            "balance_end_eur": _eur(balance),
            "replies_sent": s.sent,
            "replies_failed": s.failed,
        })
        totals["texts_in"] += s.texts_in
        totals["replies_approved"] += s.approved
        totals["policy_changes"] += s.policy_changes
        totals["replies_sent"] += s.sent
        totals["replies_failed"] += s.failed
        for r, n in s.suppressed.items():
            totals["suppressed"][r] = totals["suppressed"].get(r, 0) + n
    totals["suppressed"] = {r: totals["suppressed"][r] for r in _reasons(totals["suppressed"])}
    balance = None if cr.budget_micros is None else cr.budget_micros + credited - spent
    totals.update(spent_micros=spent, spent_eur=_eur(spent), credited_micros=credited,
                  balance_end_micros=balance, balance_end_eur=_eur(balance))
    return rows, totals


def _campaign_json(cr: CampaignReport) -> dict[str, Any]:
    rows, totals = _campaign_rows(cr)
    ran_out = next((r["day"] for r in rows if r["suppressed"].get("budget_exhausted")), None)
    return {
        "budget_micros": cr.budget_micros,
        "budget_eur": _eur(cr.budget_micros),
        "reply_cost_micros": cr.reply_cost_micros,
        "reply_segments": cr.reply_segments,
        "pending": cr.pending,
        "budget_ran_out": ran_out,
        "totals": totals,
        "days": rows,
    }


def _report_json(report: Report) -> dict[str, Any]:
    return {cid: _campaign_json(cr) for cid, cr in sorted(report.campaigns.items())}


def _summary(report: Report) -> dict[str, dict[str, Any]]:
    out = {}
    for cid, data in _report_json(report).items():
        t = data["totals"]
        out[cid] = {
            "texts": t["texts_in"],
            "replies": t["replies_approved"],
            "spent_micros": t["spent_micros"],
            "spent_eur": t["spent_eur"],
            "budget_left_micros": t["balance_end_micros"],
            "budget_left_eur": t["balance_end_eur"],
            "budget_ran_out": data["budget_ran_out"],
        }
    return out


def to_json(x: AuditResult | Report | WhatIf) -> dict[str, Any]:
    """Plain JSON-ready data, deterministic (sorted campaigns, days and reasons)."""
    if isinstance(x, AuditResult):
        return {
            "ok": x.ok,
            "counters": asdict(x.counters),
            "mismatches": [m.to_json() for m in x.mismatches],
            "campaigns": _report_json(x.report),
        }
    if isinstance(x, WhatIf):
        base, other = _summary(x.baseline), _summary(x.alternative)
        return {
            "summary": {cid: {"baseline": base.get(cid), "what_if": other.get(cid)}
                        for cid in sorted(set(base) | set(other))},
            "baseline": _report_json(x.baseline),
            "what_if": _report_json(x.alternative),
        }
    return {"campaigns": _report_json(x)}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _render_report(report: Report) -> list[str]:
    lines: list[str] = []
    for cid, data in _report_json(report).items():
        rows, totals = data["days"], data["totals"]
        head = f"campaign {cid}: "
        if data["budget_micros"] is None:
            head += "not in the config"
        else:
            head += (f"budget EUR {data['budget_eur']}, reply EUR "
                     f"{_eur(data['reply_cost_micros'])} ({data['reply_segments']} segment(s))")
        if data["pending"]:
            head += f", {data['pending']} pending"
        if data["budget_ran_out"]:
            head += f", budget ran out on {data['budget_ran_out']}"
        lines.append(head)
        reasons = list(totals["suppressed"])
        credits = totals["credited_micros"] != 0
        header = ["day", "texts", "replies", *reasons, "spent EUR"]
        header += ["credited EUR"] if credits else []
        outcomes = totals["replies_sent"] + totals["replies_failed"] != 0  # none in a what-if
        header += ["balance EUR"] + (["sent", "failed"] if outcomes else [])
        table = []
        for r in [*rows, {**totals, "day": "total"}]:
            cells = [r["day"], str(r["texts_in"]), str(r["replies_approved"])]
            cells += [str(r["suppressed"].get(reason, 0)) for reason in reasons]
            cells += [r["spent_eur"]]
            cells += [_eur(r["credited_micros"])] if credits else []
            cells += [r["balance_end_eur"]]
            cells += [str(r["replies_sent"]), str(r["replies_failed"])] if outcomes else []
            table.append(cells)
        lines += ["  " + line for line in _table(header, table)]
        lines.append("")
    return lines


def render_text(x: AuditResult | Report | WhatIf) -> str:
    """An aligned, human-readable table (no phone numbers: events hold pseudonyms only)."""
    if isinstance(x, Report):
        return "\n".join(_render_report(x)).rstrip() + "\n"
    if isinstance(x, WhatIf):
        data = to_json(x)["summary"]
        header = ["campaign", "texts", "replies", "what-if", "EUR spent", "what-if",
                  "EUR left", "what-if", "ran out", "what-if"]
        rows = []
        for cid, pair in data.items():
            b = pair["baseline"] or {}
            o = pair["what_if"] or {}
            rows.append([
                cid, str(b.get("texts", o.get("texts", 0))),
                str(b.get("replies", "-")), str(o.get("replies", "-")),
                b.get("spent_eur", "-"), o.get("spent_eur", "-"),
                b.get("budget_left_eur", "-"), o.get("budget_left_eur", "-"),
                b.get("budget_ran_out") or "never", o.get("budget_ran_out") or "never",
            ])
        lines = ["what-if: the journal's texts decided afresh (event-time order), "
                 "config vs other config", *_table(header, rows), ""]
        lines += ["what-if per day:", *_render_report(x.alternative)]
        return "\n".join(lines).rstrip() + "\n"
    c = x.counters
    verdict = "OK: every decision reproduced" if x.ok else f"FAILED: {c.mismatches} mismatch(es)"
    lines = [
        f"audit {verdict}",
        f"  {c.events} events: {c.texts} texts, {c.screenings} screenings "
        f"({c.restated} restated) and "
        f"{c.campaign_events} campaign events decided again; {c.redelivered} redelivered, "
        f"{c.unknown_campaign} unknown-campaign, {c.pending} pending, "
        f"{c.replies_sent} replies sent, {c.replies_failed} failed",
        "",
        *_render_report(x.report),
    ]
    if x.mismatches:
        lines.append("mismatches (first 10):")
        for m in x.mismatches[:10]:
            lines.append(f"  #{m.position} {m.kind} {m.message_id}")
    return "\n".join(lines).rstrip() + "\n"
