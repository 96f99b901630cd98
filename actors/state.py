"""The campaign's state and what its decisions share: the policy at opening, idempotency
keys, the reply's cost and the allowance check. Pure, like the rest of the campaign core
(``actors.decide``, ``actors.evolve``; ``actors.campaign`` is its front)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from actors.evidence import MINUTE_MS, Cohorts, WordStats
from actors.pacing import AllowanceState, allowance_check
from actors.queue import RequestQueue
from schemas.campaign import Campaign
from schemas.commands import SettleReply
from schemas.events import (
    BudgetCredited,
    ControlRejected,
    PolicyChanged,
    ReplyApproved,
    ReplyCostReconciled,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    ReplyHeldBack,
    ReplyPromoted,
    ReplyRefunded,
    SurgeEnded,
    SurgeStarted,
)
from schemas.policy import Policy, apply_changes
from schemas.segments import segment_info

Decision = (ReplyApproved | ReplyDenied | ReplyDeferred | ReplyExpired | SurgeStarted
            | SurgeEnded | ReplyPromoted | ReplyHeldBack)
Settlement = ReplyRefunded | ReplyCostReconciled
CampaignEvent = Decision | PolicyChanged | BudgetCredited | Settlement
ControlOutcome = PolicyChanged | BudgetCredited | ControlRejected


def initial_policy(campaign: Campaign) -> Policy:
    """Version 1: the defaults, the campaign's own fields, then its ``[campaign.policy]``."""
    policy = Policy(
        version=1,
        price_per_segment_micros=campaign.price_per_segment_micros,
        cooldown_ms=campaign.cooldown_ms,
        allowed_countries=(campaign.country,),
        pacing=campaign.pacing,
    )
    return apply_changes(policy, dict(campaign.policy), 1) if campaign.policy else policy


# The decisions on a request: remembered under the request's message id, as is.
_KEYED_BY_MESSAGE_ID = frozenset({ReplyApproved, ReplyDenied, ReplyDeferred, ReplyExpired})
_PREFIXED = {ReplyRefunded: "refund:", ReplyCostReconciled: "price:", ReplyPromoted: "promote:",
             ReplyHeldBack: "held:"}


def idempotency_key(event: object) -> str:
    """The key under which a campaign remembers a decision: one decision per request (a
    deferred one is decided again when released or expired, under the same key), per
    operator command, and per settlement of a reply (refund; price reconciliation); what
    befalls a queued request on the way (promoted, held back) under its own key."""
    t = type(event)
    if t in _KEYED_BY_MESSAGE_ID and event.message_id is not None:  # type: ignore[attr-defined]
        return event.message_id  # type: ignore[attr-defined]  # the decisions: most events
    prefix = _PREFIXED.get(t)
    if prefix is not None:
        return prefix + event.message_id  # type: ignore[attr-defined]
    message_id = getattr(event, "message_id", None)
    if message_id is not None:
        return message_id
    command_id = getattr(event, "command_id", None)
    if command_id is not None:
        return "cmd:" + command_id
    return f"seq:{event.seq}"  # type: ignore[attr-defined]  # SurgeStarted / SurgeEnded


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
    pacing: AllowanceState = field(default_factory=AllowanceState)
    ends_at: int = 0  # the campaign's end date (epoch ms): the allowance refills until then
    # Number range -> GCRA theoretical arrival time (epoch ms) of its first texts.
    prefix_tat: dict[str, int] = field(default_factory=dict)
    cohorts: Cohorts = field(default_factory=Cohorts)
    words: WordStats = field(default_factory=WordStats)
    queue: RequestQueue = field(default_factory=RequestQueue)
    release_tat: int = 0  # GCRA of held-back releases (surge_release_per_minute)
    # Each surge's spend bound on its held-back requests and what they cost so far:
    # [first minute, bound, spent], oldest first (the surges whose requests may still wait).
    surges: list[list[int]] = field(default_factory=list)
    # Held-back requests released, by the minute they arrived in (a raid's minutes release
    # at most RAID_MINUTE_PEOPLE times the baseline's rate: the people among them).
    held_released: dict[int, int] = field(default_factory=dict)
    # Requests refused or expired for a raid's words, by the minute they arrived in.
    raid_refused: dict[int, int] = field(default_factory=dict)
    # By idempotency key, oldest first (OrderedDict: popping the oldest stays O(1)).
    decided: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)
    # "cmd:<command id>" -> PolicyChanged / BudgetCredited, oldest first (COMMAND_MEMORY_MS).
    commands: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)

    @property
    def surge_active(self) -> bool:
        return self.cohorts.active

    @classmethod
    def opening(cls, campaign: Campaign) -> CampaignState:
        return cls(campaign.id, campaign.budget_micros, initial_policy(campaign),
                   ends_at=campaign.ends_at)


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
    price = (policy or initial_policy(campaign)).price_per_segment_micros
    return _reply_cost(campaign.reply_text, price)


@lru_cache(maxsize=1024)
def _reply_cost(text: str, price_per_segment_micros: int) -> ReplyCost:
    # Asked for on every decision: one (frozen) answer per reply text and price.
    segments, encoding = _segments(text)
    return ReplyCost(segments, encoding, segments * price_per_segment_micros)


def surges_from(state: CampaignState, now: int) -> int:
    """The first minute of the surges whose held-back requests may still wait at ``now``
    (begun within the TTL before it): those kept, and those whose spending the next surge's
    bound shares."""
    return (now - state.policy.surge_ttl_ms) // MINUTE_MS - 1


def surge_of(state: CampaignState, minute: int) -> list[int] | None:
    """The surge a request that arrived in ``minute`` belongs to (the last one begun by
    then): ``[first minute, bound, spent]``; None before the first."""
    for surge in reversed(state.surges):
        if surge[0] <= minute:
            return surge
    return None


def allowance_refusal(state: CampaignState, cost: int, now: int, balance: int | None = None,
                      allowance: AllowanceState | None = None) -> str | None:
    """Why the allowance (with the budget and the reserve) cannot pay ``cost`` at ``now``."""
    policy = state.policy
    return allowance_check(allowance or state.pacing, cost,
                           state.balance_micros if balance is None else balance,
                           policy.reserve_micros, policy.burst_percent, now, state.ends_at)
