"""A campaign shard: many campaign aggregates in one plain class.

A Ray actor is a process (about 40 MiB, 0.8 s to start), so one shard holds many campaigns
and is called with batches. This class knows nothing of Ray: ``actors.remote`` applies
``ray.remote`` where the shards are wired, and the class is unit-tested as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.campaign import (
    CampaignEvent,
    CampaignState,
    ControlOutcome,
    Decision,
    Settlement,
    decide_and_apply,
    decide_control,
    decide_settlement,
    evolve_campaign,
    reply_cost,
)
from schemas.campaign import Campaign
from schemas.commands import ControlCommand, RequestReply, ReviewRequest, SettleReply, Tick
from schemas.events import ControlRejected, ReplyDenied
from schemas.policy import UNKNOWN_CAMPAIGN_POLICY, Policy, describe
from schemas.reasons import UNKNOWN_CAMPAIGN

CAMPAIGN_EVENT_TYPES = ("ReplyApproved", "ReplyDenied", "PolicyChanged", "BudgetCredited",
                        "ReplyRefunded", "ReplyCostReconciled", "ReplyDeferred", "ReplyExpired",
                        "SurgeStarted", "SurgeEnded", "ReplyPromoted", "ReplyHeldBack")


def is_campaign_event(event: object) -> bool:
    return getattr(event, "TYPE", None) in CAMPAIGN_EVENT_TYPES


class CampaignShard:
    def __init__(self, campaigns: Iterable[Campaign], history: Iterable[CampaignEvent] = ()) -> None:
        self._campaigns = {c.id: c for c in campaigns}
        self._states = {c.id: CampaignState.opening(c) for c in self._campaigns.values()}
        self.recover(history)

    def recover(self, history: Iterable[CampaignEvent]) -> int:
        """Fold a campaign's earlier events (from the journal) into its state; returns how many.

        The journal is partitioned by sender, so a campaign's events arrive interleaved:
        they are applied in their ``seq`` order, the order in which they were decided.
        """
        mine = sorted(
            (e for e in history if e.campaign_id in self._states and is_campaign_event(e)),
            key=lambda e: (e.campaign_id, e.seq),
        )
        for event in mine:
            evolve_campaign(self._states[event.campaign_id], event)
        return len(mine)

    def decide(self, batch: list[RequestReply | SettleReply | Tick | ReviewRequest]
               ) -> list[Decision | Settlement]:
        """Decide a batch in order: for each request its decision (the same one if repeated),
        preceded by what a tick at its time releases or expires; for each tick, what it
        releases, expires or ends.

        A ``SettleReply`` in the batch settles an approved reply (refund or reconcile): zero
        or one event, the same one if repeated.
        """
        out: list[Decision | Settlement] = []
        for command in batch:
            campaign = self._campaigns.get(command.campaign_id)
            if isinstance(command, SettleReply):
                if campaign is not None:
                    state = self._states[command.campaign_id]
                    for settled in decide_settlement(state, command):
                        evolve_campaign(state, settled)
                        out.append(settled)
                continue
            if campaign is None:
                if isinstance(command, RequestReply):
                    out.append(_unknown_campaign(command))
                continue
            out += decide_and_apply(self._states[command.campaign_id], command, campaign)
        return out

    def policy(self, campaign_id: str) -> Policy:
        """The policy in force (the defaults for a campaign the config does not know)."""
        state = self._states.get(campaign_id)
        return state.policy if state is not None else UNKNOWN_CAMPAIGN_POLICY

    def campaign(self, campaign_id: str) -> Campaign:
        return self._campaigns[campaign_id]

    def busy(self, campaign_id: str) -> bool:
        """Whether a tick may change the campaign: replies wait in its queue, or a surge is on."""
        state = self._states.get(campaign_id)
        return state is not None and bool(len(state.queue) or state.cohorts.active)

    def control(self, batch: list[ControlCommand]) -> list[ControlOutcome]:
        out: list[ControlOutcome] = []
        for command in batch:
            state = self._states.get(command.campaign_id)
            if state is None:
                out.append(ControlRejected(
                    command_id=command.command_id, campaign_id=command.campaign_id,
                    reason="unknown campaign", operator=command.operator,
                    occurred_at=command.occurred_at,
                ))
                continue
            for event in decide_control(state, command):
                evolve_campaign(state, event)
                out.append(event)
        return out

    def status(self) -> dict[str, dict[str, Any]]:
        return {cid: campaign_status(state, self._campaigns[cid])
                for cid, state in self._states.items()}


def campaign_status(state: CampaignState, campaign: Campaign) -> dict[str, Any]:
    """A campaign's figures as ``/campaigns`` shows them (the shard's and the journal
    projection's, ``streams.console.metrics``, alike)."""
    cost = reply_cost(campaign, state.policy)
    return {
        "balance_micros": state.balance_micros,
        "spent_micros": state.spent_micros,
        "credited_micros": state.credited_micros,
        "refunded_micros": state.refunded_micros,
        "approved": state.approved,
        "denied": state.denied,
        "seq": state.seq,
        "surge": state.cohorts.active,
        "queued": len(state.queue),
        "reply_cost_micros": cost.cost_micros,
        "reply_segments": cost.segments,
        "reply_encoding": cost.encoding,
        "policy": describe(state.policy),
    }


def _unknown_campaign(command: RequestReply) -> ReplyDenied:
    return ReplyDenied(
        message_id=command.message_id,
        campaign_id=command.campaign_id,
        sender=command.sender,
        reason=UNKNOWN_CAMPAIGN,
        cost_micros=0,
        balance_after_micros=0,
        seq=0,
        occurred_at=command.occurred_at,
        policy_version=0,
        prefix=command.prefix,
    )
