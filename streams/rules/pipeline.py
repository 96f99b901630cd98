"""The pure glue between the stages, written once: text -> verdict -> request -> decision ->
outcome back to the sender, and the commands that settle a reply or come from an operator.

The workers' stage shells, the simulator, the audit (which rebuilds from each journaled
decision the command that gave it) and the what-if use these functions, so a stage message
is built from what came before it in one place, and a decision flows back to the sender's
screening state by one rule. ``Pipeline`` runs the whole decision path in memory (no
broker, no Ray): the simulator's and the benchmarks' driver, like Kafka Streams'
``TopologyTestDriver``. Pure: no clock, no I/O; time comes from the texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from actors.shard import CampaignShard
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
    BudgetCredited,
    PolicyChanged,
    RecordPoisoned,
    ReplyDenied,
    ReplyExpired,
    ReplyRefunded,
    SenderReopened,
    SenderScreened,
    TextReceived,
)
from schemas.policy import Policy
from streams.rules.screening import (
    SenderState,
    decide_reopen,
    decide_screening,
    evolve_sender,
    review,
)

MINUTE_MS = 60_000


def screen_command(text: TextReceived, reply_to: str = "") -> ScreenText:
    """The screening command for a journaled text (``reply_to`` only in the live shell)."""
    return ScreenText(message_id=text.message_id, campaign_id=text.campaign_id, sender=text.sender,
                      body=text.body, occurred_at=text.occurred_at, reply_to=reply_to,
                      number_kind=text.number_kind, country=text.country, prefix=text.prefix,
                      test_text=text.test_text, words=text.words)


def request_for(verdict: SenderScreened, prefix: str, reply_to: str = "") -> RequestReply:
    """The campaign's request for a forwarded verdict (or what the audit reads of one); a
    decision's own fields stand in for a verdict the audit did not find (one text)."""
    return RequestReply(message_id=verdict.message_id, campaign_id=verdict.campaign_id,
                        sender=verdict.sender, occurred_at=verdict.occurred_at,
                        reply_to=reply_to, prefix=prefix,
                        texts_from_sender=getattr(verdict, "texts_from_sender", 1),
                        words=getattr(verdict, "words", ""),
                        other_campaigns=getattr(verdict, "other_campaigns", 0))


def tick(campaign_id: str, at: int) -> Tick:
    """The campaign's clock brought to ``at``: releases, expiries, a surge's end."""
    return Tick(campaign_id=campaign_id, occurred_at=at)


def refund(reply: Any, at: int) -> SettleReply:
    """A reply not sent (its command, decision or failure: ``message_id``, ``campaign_id``,
    ``sender``): its cost given back to the campaign."""
    return SettleReply(message_id=reply.message_id, campaign_id=reply.campaign_id,
                       sender=reply.sender, outcome="failed", price_micros=None, occurred_at=at)


def priced(reply: Any, price_micros: int, at: int) -> SettleReply:
    """A reply's real price (a delivery report's, or the audit's reconciliation): the
    estimate the campaign charged replaced by it."""
    return SettleReply(message_id=reply.message_id, campaign_id=reply.campaign_id,
                       sender=reply.sender, outcome="priced", price_micros=price_micros,
                       occurred_at=at)


def review_behind(decision: Any, reason: str) -> ReviewRequest:
    """The review of a queued request that gave ``decision`` (a promotion with the later
    text's words, or an expiry for a flooder or a text to another campaign): what screening
    told the campaign, at the decision's time."""
    return ReviewRequest(message_id=decision.message_id, campaign_id=decision.campaign_id,
                         sender=decision.sender, reason=reason,
                         occurred_at=decision.occurred_at, words=getattr(decision, "words", ""))


def note_behind(reopened: SenderReopened) -> NoteReplyOutcome:
    """The outcome note that reopened a sender (what ``outcome_note`` gave)."""
    return NoteReplyOutcome(message_id=reopened.message_id, campaign_id=reopened.campaign_id,
                            sender=reopened.sender, outcome=reopened.outcome,
                            occurred_at=reopened.occurred_at)


def control_behind(event: PolicyChanged | BudgetCredited) -> ChangePolicy | CreditBudget:
    """The operator command that gave a journaled policy change or credit."""
    if isinstance(event, PolicyChanged):
        return ChangePolicy(command_id=event.command_id, campaign_id=event.campaign_id,
                            changes=event.changes, operator=event.operator,
                            occurred_at=event.occurred_at)
    return CreditBudget(command_id=event.command_id, campaign_id=event.campaign_id,
                        amount_micros=event.amount_micros, source=event.source,
                        operator=event.operator, occurred_at=event.occurred_at)


def outcome_note(event: object) -> NoteReplyOutcome | None:
    """What a campaign or send outcome tells the sender's screening state: a request ended
    without a reply (denied, expired, refunded, or passed over as poison) reopens him;
    anything else says nothing."""
    if isinstance(event, ReplyDenied | ReplyExpired):
        return NoteReplyOutcome(message_id=event.message_id, campaign_id=event.campaign_id,
                                sender=event.sender, outcome=f"{event.TYPE}:{event.reason}",
                                occurred_at=event.occurred_at)
    if isinstance(event, ReplyRefunded):
        return NoteReplyOutcome(message_id=event.message_id, campaign_id=event.campaign_id,
                                sender=event.sender, outcome=event.TYPE, occurred_at=event.occurred_at)
    if isinstance(event, RecordPoisoned) and event.record_type == "RequestReply":
        # A request the decide stage could not process at all: never decided.
        return NoteReplyOutcome(message_id=event.message_id, campaign_id=event.campaign_id,
                                sender=event.sender, outcome=event.TYPE, occurred_at=event.occurred_at)
    return None


@dataclass
class Screened:
    """What screening one text gave: its verdict(s), and the commands for the campaign."""

    verdicts: list[SenderScreened]
    to_campaign: list[RequestReply | ReviewRequest] = field(default_factory=list)


def screen(state: SenderState, command: ScreenText, policy: Policy) -> Screened:
    """Screen one text and evolve the sender's state: the verdict, then what goes to the
    campaigns (a request for a forward; reviews of his awaited requests)."""
    verdicts = decide_screening(state, command, policy)
    out = Screened(verdicts)
    for verdict in verdicts:
        out.to_campaign += review(state, verdict)
        evolve_sender(state, verdict, policy)
        if verdict.verdict == "forward":
            # A restated forward asks again: the campaign answers with its first decision.
            out.to_campaign.append(request_for(verdict, command.prefix, command.reply_to))
    return out


def reopen(state: SenderState, note: NoteReplyOutcome) -> list[SenderReopened]:
    """Apply a request's outcome to its sender's state; the events to journal."""
    events = decide_reopen(state, note)
    for event in events:
        evolve_sender(state, event)
    return events


class Pipeline:
    """The decision path in memory, outcomes fed back at once: screening per sender, one
    campaign shard, a tick once a minute while the campaign has a queue or a surge (each
    campaign its own minutes, as the live ticker sends every campaign a tick)."""

    def __init__(self, campaigns: Iterable[Campaign]) -> None:
        self.shard = CampaignShard(list(campaigns))
        self.senders: dict[str, SenderState] = {}
        self.events: list[object] = []  # every event, in the order it was decided
        self._next_tick: dict[str, int] = {}  # campaign -> the time of its next tick

    def policy(self, campaign_id: str) -> Policy:
        return self.shard.policy(campaign_id)

    def busy(self, campaign_id: str) -> bool:
        return self.shard.busy(campaign_id)

    def text(self, command: ScreenText) -> Screened:
        """One inbound text: ticks up to its time, screening, the campaign's decisions."""
        cid = command.campaign_id
        self.tick_until(cid, command.occurred_at)
        self._next_tick[cid] = max(self._next_tick.get(cid, 0),
                                   (command.occurred_at // MINUTE_MS + 1) * MINUTE_MS)
        state = self.senders.setdefault(command.sender, SenderState())
        screened = screen(state, command, self.policy(command.campaign_id))
        self.events += screened.verdicts
        if screened.to_campaign:
            self.decided(self.shard.decide(screened.to_campaign))  # type: ignore[arg-type]
        return screened

    def tick_until(self, campaign_id: str, until: int) -> None:
        at = self._next_tick.get(campaign_id, 0)
        while at < until and self.busy(campaign_id):
            self.decided(self.shard.decide([tick(campaign_id, at)]))
            at += MINUTE_MS
        self._next_tick[campaign_id] = at

    def tick_out(self, campaign_id: str, last_text_at: int,
                 limit_ms: int = 7 * 24 * 60 * MINUTE_MS) -> None:
        """The ticks after the campaign's last text, until it has nothing left to release or
        expire, at most ``limit_ms`` after that text."""
        self.tick_until(campaign_id, last_text_at + limit_ms)

    def decided(self, events: list[object]) -> None:
        """Record the campaign's events and feed what ended a request back to its sender."""
        self.events += events
        for event in events:
            note = outcome_note(event)
            if note is not None and note.sender in self.senders:
                self.events += reopen(self.senders[note.sender], note)
