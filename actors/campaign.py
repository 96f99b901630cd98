"""The campaign aggregate: the pure budget decision behind the Ray campaign shards.

``decide_reply(state, command, campaign) -> [ReplyApproved | ReplyDenied]`` and
``evolve_campaign(state, event) -> state``. No clock, no randomness, no I/O: time is the
text's ``occurred_at``; the money is integer micro-euros.

Idempotency: a request whose message id was already decided gets the same decision again
(Kafka and Ray both deliver at least once), and evolving a decision twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.segments import segment_info
from schemas.campaign import Campaign
from schemas.commands import RequestReply
from schemas.events import ReplyApproved, ReplyDenied

Decision = ReplyApproved | ReplyDenied


@dataclass(slots=True)
class CampaignState:
    campaign_id: str
    balance_micros: int
    spent_micros: int = 0
    approved: int = 0
    denied: int = 0
    seq: int = 0
    decisions: dict[str, Decision] = field(default_factory=dict)  # by inbound message id

    @classmethod
    def opening(cls, campaign: Campaign) -> CampaignState:
        return cls(campaign_id=campaign.id, balance_micros=campaign.budget_micros)


@dataclass(frozen=True, slots=True)
class ReplyCost:
    segments: int
    encoding: str
    cost_micros: int


def reply_cost(campaign: Campaign) -> ReplyCost:
    info = segment_info(campaign.reply_text)
    return ReplyCost(info.segments, info.encoding, info.segments * campaign.price_per_segment_micros)


def decide_reply(state: CampaignState, command: RequestReply, campaign: Campaign) -> list[Decision]:
    earlier = state.decisions.get(command.message_id)
    if earlier is not None:
        return [earlier]
    cost = reply_cost(campaign)
    common = dict(
        message_id=command.message_id,
        campaign_id=campaign.id,
        sender=command.sender,
        cost_micros=cost.cost_micros,
        seq=state.seq + 1,
        occurred_at=command.occurred_at,
    )
    if command.occurred_at < campaign.starts_at:
        reason = "not_started"
    elif command.occurred_at >= campaign.ends_at:
        reason = "ended"
    elif cost.cost_micros > state.balance_micros:
        reason = "budget_exhausted"
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


def evolve_campaign(state: CampaignState, event: Decision) -> CampaignState:
    if event.message_id in state.decisions:
        return state
    state.decisions[event.message_id] = event
    state.seq = event.seq
    if isinstance(event, ReplyApproved):
        state.balance_micros = event.balance_after_micros
        state.spent_micros += event.cost_micros
        state.approved += 1
    else:
        state.denied += 1
    return state
