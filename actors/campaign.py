"""The campaign aggregate, the pure decision behind the Ray campaign shards: its front.

The core is cut where its meaning divides:

- ``actors.state``: the state, the policy at opening, idempotency keys, the reply's cost;
- ``actors.evidence``: the cohorts (first texts a minute, the baseline, surges) and the
  word statistics (which words are a raid's);
- ``actors.queue``: the requests waiting out their safety delay, and those held back;
- ``actors.decide``: the decisions (requests, the clock, screening's reviews, settlements,
  operator commands);
- ``actors.evolve``: the one place the state changes, from events;
- ``actors.pacing`` (the allowance), ``actors.gcra`` (rate limits), ``actors.words`` (a
  text's word keys), ``actors.textfilter`` (test texts): the rules they use.

``decide_and_apply`` is what a shard does with one command (a tick at the request's time
first, when requests wait or a surge is on). No clock, no randomness, no I/O: time is the
command's ``occurred_at``; money is integer micro-euros; the policy is part of the state and
changes only through ``PolicyChanged`` events. Every event a campaign emits carries the next
``seq``: the campaign's total order, which is the replay order. Idempotency: a request (by
message id) or an operator command (by command id) decided before gets the same event again.
"""

from __future__ import annotations

from actors.decide import (
    HELD_KIND_UNIT,
    MAX_RELEASES_PER_TICK,
    PRICE_CAP_FACTOR,
    RANGE_BURST,
    RANGE_DEBT_LEVELS,
    RANGE_PERIOD_MS,
    decide_control,
    decide_reply,
    decide_review,
    decide_settlement,
    decide_tick,
    judge,
    prefix_within_rate,
    range_debt,
)
from actors.evolve import (
    COMMAND_MEMORY_MS,
    REMEMBERED_DECISIONS,
    REMEMBERED_PREFIXES,
    evolve_campaign,
)
from actors.state import (
    CampaignEvent,
    CampaignState,
    ControlOutcome,
    Decision,
    ReplyCost,
    Settlement,
    idempotency_key,
    initial_policy,
    reply_cost,
    settlement_key,
)
from schemas.campaign import Campaign
from schemas.commands import RequestReply, ReviewRequest, Tick

__all__ = [
    "COMMAND_MEMORY_MS", "HELD_KIND_UNIT", "MAX_RELEASES_PER_TICK", "PRICE_CAP_FACTOR", "RANGE_BURST",
    "RANGE_DEBT_LEVELS", "RANGE_PERIOD_MS", "REMEMBERED_DECISIONS", "REMEMBERED_PREFIXES",
    "CampaignEvent", "CampaignState", "ControlOutcome", "Decision", "ReplyCost", "Settlement",
    "decide_and_apply", "decide_control", "decide_reply", "decide_review", "decide_settlement",
    "decide_tick", "evolve_campaign", "idempotency_key", "initial_policy", "judge",
    "prefix_within_rate", "range_debt", "reply_cost", "settlement_key",
]


def decide_and_apply(state: CampaignState, command: RequestReply | Tick | ReviewRequest,
                     campaign: Campaign) -> list[Decision]:
    """What a campaign shard does with one command: decide and evolve. Before a request, a
    tick at the request's time judges, releases or expires what waits in the queue (the
    requests' event time moves the campaign's clock too)."""
    out: list[Decision] = []
    if isinstance(command, RequestReply):
        if (len(state.queue) or state.cohorts.active) and command.message_id not in state.decided:
            out += decide_tick(state, Tick(campaign_id=command.campaign_id,
                                           occurred_at=command.occurred_at), campaign)
            for event in out:
                evolve_campaign(state, event)
        decided: list[Decision] = decide_reply(state, command, campaign)
    elif isinstance(command, ReviewRequest):
        decided = list(decide_review(state, command))
    else:
        decided = decide_tick(state, command, campaign)
    for event in decided:
        evolve_campaign(state, event)
    return out + decided
