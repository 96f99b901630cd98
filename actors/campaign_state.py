"""The campaign's state and what every campaign decision shares: the policy at opening,
idempotency keys, the reply's cost, the send time, the allowance check and the surge's
bookkeeping steps (the same in decide, on a copy, and in evolve). Pure, like
``actors.campaign``, which re-exports these names."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from actors.pacing import (
    AllowanceState,
    allowance_check,
)
from actors.surge import (
    DeferralQueue,
    SurgeState,
    surge_now,
    surge_observe,
)
from schemas.campaign import Campaign
from schemas.commands import (
    SettleReply,
)
from schemas.events import (
    BudgetCredited,
    ControlRejected,
    PolicyChanged,
    ReplyApproved,
    ReplyCostReconciled,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    ReplyPromoted,
    ReplyRefunded,
    SurgeEnded,
    SurgeStarted,
)
from schemas.policy import MAX_SURGE_QUEUE, Policy, apply_changes
from schemas.segments import segment_info

Decision = (ReplyApproved | ReplyDenied | ReplyDeferred | ReplyExpired | SurgeStarted
            | SurgeEnded | ReplyPromoted)
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


def idempotency_key(event: object) -> str:
    """The key under which a campaign remembers a decision: one decision per request (a
    deferred one is decided again when released or expired, under the same key), per
    operator command, and per settlement of a reply (refund; price reconciliation)."""
    if type(event) in _KEYED_BY_MESSAGE_ID and event.message_id is not None:  # type: ignore[attr-defined]
        return event.message_id  # type: ignore[attr-defined]  # the decisions: most events
    if isinstance(event, ReplyRefunded):
        return "refund:" + event.message_id
    if isinstance(event, ReplyCostReconciled):
        return "price:" + event.message_id
    if isinstance(event, ReplyPromoted):
        return "promote:" + event.message_id
    message_id = getattr(event, "message_id", None)
    if message_id is not None:
        return message_id
    command_id = getattr(event, "command_id", None)
    if command_id is not None:
        return "cmd:" + command_id
    return f"seq:{event.seq}"  # type: ignore[attr-defined]  # SurgeStarted / SurgeEnded


def _new_queue() -> DeferralQueue:
    # The policy's surge_queue bounds it (decide_reply evicts through events); this is the
    # hard limit behind it.
    return DeferralQueue(capacity=MAX_SURGE_QUEUE)


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
    surge: SurgeState = field(default_factory=SurgeState)
    queue: DeferralQueue = field(default_factory=_new_queue)
    # Message id -> (sender, prefix) of each queued request, for the event that ends it.
    queued: dict[str, tuple[str, str]] = field(default_factory=dict)
    release_tat: int = 0  # GCRA of releases from the queue (surge_release_per_minute)
    # The current (or last) surge's arrivals (deferred or refused for a full queue) and how
    # many of them texted again (promoted), by number range ("33-612"): whether it looked
    # human (``queue_rules.looked_human``).
    surge_arrival_ranges: dict[str, int] = field(default_factory=dict)
    surge_promoted_ranges: dict[str, int] = field(default_factory=dict)
    # By idempotency key, oldest first (OrderedDict: popping the oldest stays O(1)).
    decided: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)
    # "cmd:<command id>" -> PolicyChanged / BudgetCredited, oldest first (COMMAND_MEMORY_MS).
    commands: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)

    @property
    def surge_arrivals(self) -> int:
        return sum(self.surge_arrival_ranges.values())

    @property
    def surge_promoted(self) -> int:
        return sum(self.surge_promoted_ranges.values())

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


def send_at(approved_at: int, policy: Policy) -> int:
    """When an approved reply is sent: ``reply_delay_ms`` after its approval."""
    return approved_at + policy.reply_delay_ms


def _allowance_refusal(state: CampaignState, cost: int, now: int, balance: int | None = None,
                       allowance: AllowanceState | None = None) -> str | None:
    policy = state.policy
    return allowance_check(allowance or state.pacing, cost,
                           state.balance_micros if balance is None else balance,
                           policy.reserve_micros, policy.burst_percent, now, state.ends_at)


# --- surge bookkeeping: the same steps in decide (on a copy) and in evolve ------------------


def _copy_surge(surge: SurgeState) -> SurgeState:
    # The history list is shared, not copied: it is replaced when a minute rolls, never
    # changed in place (``actors.surge``), so the copy cannot change the original's.
    return SurgeState(surge.minute, surge.count, surge.history, surge.active,
                      surge.last_surge_minute)


def observe_first_text(surge: SurgeState, policy: Policy, now: int) -> None:
    # Counted with surge mode off too, so that switching it on finds a baseline.
    surge_observe(surge, now)
    if policy.surge_multiple > 0 and surge_now(surge, policy.surge_multiple, policy.surge_min_rate,
                                               policy.surge_expected_per_minute):
        surge.last_surge_minute = surge.minute


def surge_transition(surge: SurgeState, policy: Policy) -> str | None:
    """"enter" / "leave" / None for a surge state already rolled to now (not changed): enter
    on a surging minute, leave after ``surge_quiet_minutes`` minutes without one."""
    on = policy.surge_multiple > 0
    if surge.active:
        if not on or surge.minute - surge.last_surge_minute > policy.surge_quiet_minutes:
            return "leave"
        return None
    if on and surge_now(surge, policy.surge_multiple, policy.surge_min_rate,
                        policy.surge_expected_per_minute):
        return "enter"
    return None


def _surge_event(transition: str, surge: SurgeState, state: CampaignState, policy: Policy,
                 now: int, seq: int) -> SurgeStarted | SurgeEnded:
    if transition == "enter":
        return SurgeStarted(
            campaign_id=state.campaign_id, first_texts=surge.count,
            baseline_texts=sum(surge.history), baseline_minutes=len(surge.history), seq=seq,
            occurred_at=now, policy_version=policy.version,
        )
    return SurgeEnded(campaign_id=state.campaign_id, queued=len(state.queue), seq=seq,
                      occurred_at=now, policy_version=policy.version)
