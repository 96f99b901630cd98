"""The campaign aggregate: the pure budget decision behind the Ray campaign shards.

``decide_reply(state, command, campaign) -> [ReplyApproved | ReplyDenied]``,
``decide_settlement(state, command) -> [ReplyRefunded | ReplyCostReconciled]`` (what became
of an approved reply: not sent, so refunded; or priced by a delivery report, so reconciled),
``decide_control(state, command) -> [PolicyChanged | BudgetCredited | ControlRejected]`` and
``evolve_campaign(state, event) -> state``. No clock, no randomness, no I/O: time is the
command's ``occurred_at``; money is integer micro-euros; the policy is part of the state and
changes only through ``PolicyChanged`` events.

Every event a campaign emits carries the next ``seq``: the campaign's total order, which is
the replay order. Idempotency: a request (by message id) or an operator command (by command
id) that was already decided gets the same event again (Kafka and Ray both deliver at least
once), and evolving an event twice changes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from actors.pacing import PacingState, pacing_apply, pacing_check
from actors.segments import segment_info
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, ControlCommand, CreditBudget, RequestReply, SettleReply
from schemas.events import (
    BudgetCredited,
    ControlRejected,
    PolicyChanged,
    ReplyApproved,
    ReplyCostReconciled,
    ReplyDenied,
    ReplyRefunded,
)
from schemas.policy import Policy, apply_changes, check_changes

Decision = ReplyApproved | ReplyDenied

# Decisions remembered per campaign for idempotency. Redeliveries come within a rebalance or
# a retry, long before this many later decisions; the bound keeps memory and snapshots flat.
REMEMBERED_DECISIONS = 50_000
Settlement = ReplyRefunded | ReplyCostReconciled
CampaignEvent = (
    ReplyApproved | ReplyDenied | PolicyChanged | BudgetCredited | ReplyRefunded
    | ReplyCostReconciled
)
ControlOutcome = PolicyChanged | BudgetCredited | ControlRejected


def initial_policy(campaign: Campaign) -> Policy:
    return Policy(
        version=1,
        price_per_segment_micros=campaign.price_per_segment_micros,
        cooldown_ms=campaign.cooldown_ms,
        allowed_countries=(campaign.country,),
        pacing=campaign.pacing,
    )


def idempotency_key(event: object) -> str:
    """The key under which a campaign remembers a decision: one decision per request, per
    operator command, and per settlement of a reply (refund; price reconciliation)."""
    if isinstance(event, ReplyRefunded):
        return "refund:" + event.message_id
    if isinstance(event, ReplyCostReconciled):
        return "price:" + event.message_id
    message_id = getattr(event, "message_id", None)
    return message_id if message_id is not None else "cmd:" + event.command_id  # type: ignore[attr-defined]


def settlement_key(command: SettleReply) -> str:
    return ("refund:" if command.outcome == "failed" else "price:") + command.message_id


@dataclass(slots=True)
class CampaignState:
    campaign_id: str
    balance_micros: int
    policy: Policy
    spent_micros: int = 0
    credited_micros: int = 0
    approved: int = 0
    denied: int = 0
    refunded_micros: int = 0
    seq: int = 0
    pacing: PacingState = field(default_factory=PacingState)
    # By idempotency key, oldest first (OrderedDict: popping the oldest stays O(1)).
    decided: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)

    @classmethod
    def opening(cls, campaign: Campaign) -> CampaignState:
        return cls(campaign.id, campaign.budget_micros, initial_policy(campaign))


@dataclass(frozen=True, slots=True)
class ReplyCost:
    segments: int
    encoding: str
    cost_micros: int


@lru_cache(maxsize=1024)
def _segments(text: str) -> tuple[int, str]:
    # Counting segments walks the text: done once per reply text, not once per decision.
    info = segment_info(text)
    return info.segments, info.encoding


def reply_cost(campaign: Campaign, policy: Policy | None = None) -> ReplyCost:
    segments, encoding = _segments(campaign.reply_text)
    price = (policy or initial_policy(campaign)).price_per_segment_micros
    return ReplyCost(segments, encoding, segments * price)


def decide_reply(state: CampaignState, command: RequestReply, campaign: Campaign) -> list[Decision]:
    earlier = state.decided.get(command.message_id)
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    cost = reply_cost(campaign, state.policy)
    common = dict(
        message_id=command.message_id,
        campaign_id=campaign.id,
        sender=command.sender,
        cost_micros=cost.cost_micros,
        seq=state.seq + 1,
        occurred_at=command.occurred_at,
        policy_version=state.policy.version,
    )
    if command.occurred_at < campaign.starts_at:
        reason = "not_started"
    elif command.occurred_at >= campaign.ends_at:
        reason = "ended"
    elif cost.cost_micros > state.balance_micros:
        reason = "budget_exhausted"
    elif state.balance_micros - cost.cost_micros < state.policy.reserve_micros:
        reason = "reserve_reached"
    elif state.policy.pacing and (paced := pacing_check(
            state.pacing, cost.cost_micros, state.balance_micros, state.policy.reserve_micros,
            command.occurred_at, campaign.ends_at)) is not None:
        reason = paced  # "daily_allowance" | "hourly_allowance"
    else:
        return [
            ReplyApproved(
                segments=cost.segments,
                encoding=cost.encoding,
                balance_after_micros=state.balance_micros - cost.cost_micros,
                **common,
            )
        ]
    return [ReplyDenied(reason=reason, balance_after_micros=state.balance_micros, **common)]


def decide_settlement(state: CampaignState, command: SettleReply) -> list[Settlement]:
    """Settle an approved reply once: refund it if it was not sent, or replace its estimated
    cost with the price a delivery report gave. A reply the campaign does not remember as
    approved (never approved, or older than ``REMEMBERED_DECISIONS``) settles nothing; a
    reply already refunded is not priced, and a priced one is not refunded."""
    earlier = state.decided.get(settlement_key(command))
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    approval = state.decided.get(command.message_id)
    if not isinstance(approval, ReplyApproved):
        return []
    common = dict(message_id=command.message_id, campaign_id=command.campaign_id,
                  sender=approval.sender, seq=state.seq + 1, occurred_at=command.occurred_at)
    refunded = "refund:" + command.message_id in state.decided
    priced = "price:" + command.message_id in state.decided
    if command.outcome == "failed" and not priced:
        return [ReplyRefunded(refund_micros=approval.cost_micros,
                              balance_after_micros=state.balance_micros + approval.cost_micros,
                              **common)]
    if (command.outcome == "priced" and not refunded and isinstance(command.price_micros, int)
            and command.price_micros >= 0):
        return [ReplyCostReconciled(
            estimated_micros=approval.cost_micros, actual_micros=command.price_micros,
            balance_after_micros=state.balance_micros + approval.cost_micros
            - command.price_micros,
            **common)]
    return []


def decide_control(state: CampaignState, command: ControlCommand) -> list[ControlOutcome]:
    earlier = state.decided.get("cmd:" + command.command_id)
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    if isinstance(command, ChangePolicy):
        problem = check_changes(command.changes)
        if problem is None:
            return [PolicyChanged(
                command_id=command.command_id, campaign_id=command.campaign_id,
                version=state.policy.version + 1, changes=dict(command.changes),
                operator=command.operator, seq=state.seq + 1, occurred_at=command.occurred_at,
            )]
    elif isinstance(command, CreditBudget):
        if isinstance(command.amount_micros, int) and command.amount_micros > 0:
            return [BudgetCredited(
                command_id=command.command_id, campaign_id=command.campaign_id,
                amount_micros=command.amount_micros, source=command.source,
                operator=command.operator,
                balance_after_micros=state.balance_micros + command.amount_micros,
                seq=state.seq + 1, occurred_at=command.occurred_at,
            )]
        problem = "a credit must be a positive amount"
    else:  # pragma: no cover - the type union is closed
        problem = f"unknown command {type(command).__name__}"
    return [ControlRejected(
        command_id=command.command_id, campaign_id=command.campaign_id, reason=problem,
        operator=command.operator, occurred_at=command.occurred_at,
    )]


def evolve_campaign(state: CampaignState, event: CampaignEvent | ControlRejected) -> CampaignState:
    if isinstance(event, ControlRejected):
        return state  # refusals change nothing and take no seq
    key = idempotency_key(event)
    if event.seq <= state.seq or key in state.decided:
        return state  # already applied (a redelivery, or older than a snapshot)
    state.decided[key] = event
    if len(state.decided) > REMEMBERED_DECISIONS:
        state.decided.popitem(last=False)
    state.seq = event.seq
    if isinstance(event, ReplyApproved):
        state.balance_micros = event.balance_after_micros
        state.spent_micros += event.cost_micros
        state.approved += 1
        # Tracked even with pacing off, so switching it on mid-day counts the day's spend.
        pacing_apply(state.pacing, event.cost_micros, event.occurred_at)
    elif isinstance(event, ReplyDenied):
        state.denied += 1
    elif isinstance(event, PolicyChanged):
        state.policy = apply_changes(state.policy, event.changes, event.version)
    elif isinstance(event, BudgetCredited):
        state.balance_micros = event.balance_after_micros
        state.credited_micros += event.amount_micros
    elif isinstance(event, ReplyRefunded):
        state.balance_micros = event.balance_after_micros
        state.spent_micros -= event.refund_micros
        state.refunded_micros += event.refund_micros
    elif isinstance(event, ReplyCostReconciled):
        state.balance_micros = event.balance_after_micros
        state.spent_micros += event.actual_micros - event.estimated_micros
    return state
