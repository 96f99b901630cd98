"""The campaign aggregate: the pure budget decision behind the Ray campaign shards.

``decide_reply(state, command, campaign) -> [ReplyApproved | ReplyDenied]``,
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

from actors.gcra import Gcra, gcra_check
from actors.pacing import PacingState, pacing_apply, pacing_check
from actors.segments import segment_info
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, ControlCommand, CreditBudget, RequestReply
from schemas.events import (
    BudgetCredited,
    ControlRejected,
    PolicyChanged,
    ReplyApproved,
    ReplyDenied,
)
from schemas.policy import Policy, apply_changes, check_changes

Decision = ReplyApproved | ReplyDenied

# Decisions remembered per campaign for idempotency. Redeliveries come within a rebalance or
# a retry, long before this many later decisions; the bound keeps memory and snapshots flat.
REMEMBERED_DECISIONS = 50_000
# Number ranges whose first-text rate is tracked per campaign (country code - 3 digits: a few
# thousand exist). Past the bound, ranges back on schedule are forgotten first (losing
# nothing), then the ones with the least debt.
REMEMBERED_PREFIXES = 4_096
# Decisions that count as a first text of the sender's number range.
_NOT_COUNTED = frozenset({"prefix_flood", "not_started", "ended", "unknown_campaign"})
CampaignEvent = ReplyApproved | ReplyDenied | PolicyChanged | BudgetCredited
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
    message_id = getattr(event, "message_id", None)
    return message_id if message_id is not None else "cmd:" + event.command_id  # type: ignore[attr-defined]


@dataclass(slots=True)
class CampaignState:
    campaign_id: str
    balance_micros: int
    policy: Policy
    spent_micros: int = 0
    credited_micros: int = 0
    approved: int = 0
    denied: int = 0
    seq: int = 0
    pacing: PacingState = field(default_factory=PacingState)
    # Number range -> GCRA theoretical arrival time (epoch ms) of its first texts.
    prefix_tat: dict[str, int] = field(default_factory=dict)
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
    policy = state.policy
    common = dict(
        message_id=command.message_id,
        campaign_id=campaign.id,
        sender=command.sender,
        cost_micros=cost.cost_micros,
        seq=state.seq + 1,
        occurred_at=command.occurred_at,
        policy_version=policy.version,
        prefix=command.prefix,
    )
    if command.occurred_at < campaign.starts_at:
        reason = "not_started"
    elif command.occurred_at >= campaign.ends_at:
        reason = "ended"
    elif not prefix_within_rate(state, command.prefix, command.occurred_at):
        reason = "prefix_flood"
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
                send_at=command.occurred_at + policy.reply_delay_ms,
                **common,
            )
        ]
    return [ReplyDenied(reason=reason, balance_after_micros=state.balance_micros, **common)]


def prefix_within_rate(state: CampaignState, prefix: str, now: int) -> bool:
    """Whether one more first text from the number range ``prefix`` at ``now`` is within the
    policy's per-prefix rate (always, when the limit is off or the range unknown)."""
    policy = state.policy
    if policy.prefix_burst < 1 or not prefix:
        return True
    allowed, _ = gcra_check(Gcra(state.prefix_tat.get(prefix, 0)), now,
                            policy.prefix_period_ms, policy.prefix_burst)
    return allowed


def _count_prefix(state: CampaignState, prefix: str, now: int) -> None:
    policy = state.policy
    if policy.prefix_burst < 1 or not prefix:
        return
    tats = state.prefix_tat
    _, tat = gcra_check(Gcra(tats.get(prefix, 0)), now, policy.prefix_period_ms,
                        policy.prefix_burst)
    tats.pop(prefix, None)  # re-inserted last: the dict stays in order of last use
    tats[prefix] = tat
    if len(tats) > REMEMBERED_PREFIXES:
        for key in [k for k, t in tats.items() if t <= now]:
            del tats[key]  # back on schedule: the same as never seen
        while len(tats) > REMEMBERED_PREFIXES:
            del tats[min(tats, key=tats.__getitem__)]


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
        _count_prefix(state, event.prefix, event.occurred_at)
    elif isinstance(event, ReplyDenied):
        state.denied += 1
        if event.reason not in _NOT_COUNTED:
            _count_prefix(state, event.prefix, event.occurred_at)
    elif isinstance(event, PolicyChanged):
        state.policy = apply_changes(state.policy, event.changes, event.version)
    elif isinstance(event, BudgetCredited):
        state.balance_micros = event.balance_after_micros
        state.credited_micros += event.amount_micros
    return state
