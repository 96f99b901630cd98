"""A campaign shard: many campaign aggregates in one plain class.

A Ray actor is a process (about 40 MiB, 0.8 s to start), so one shard holds many campaigns
and is called with batches. This class knows nothing of Ray: ``actors.remote`` applies
``ray.remote`` where the shards are wired, and the class is unit-tested as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.campaign import CampaignState, Decision, decide_reply, evolve_campaign, reply_cost
from schemas.campaign import Campaign
from schemas.commands import RequestReply
from schemas.events import ReplyDenied


class CampaignShard:
    def __init__(self, campaigns: Iterable[Campaign], history: Iterable[Decision] = ()) -> None:
        self._campaigns = {c.id: c for c in campaigns}
        self._states = {c.id: CampaignState.opening(c) for c in self._campaigns.values()}
        self.recover(history)

    def recover(self, history: Iterable[Decision]) -> int:
        """Fold earlier decisions (from the journal) into the states; returns how many."""
        n = 0
        for event in history:
            state = self._states.get(event.campaign_id)
            if state is not None:
                evolve_campaign(state, event)
                n += 1
        return n

    def decide(self, batch: list[RequestReply]) -> list[Decision]:
        """Decide a batch in order; one decision per request, the same one if repeated."""
        out: list[Decision] = []
        for command in batch:
            campaign = self._campaigns.get(command.campaign_id)
            if campaign is None:
                out.append(_unknown_campaign(command))
                continue
            state = self._states[command.campaign_id]
            for event in decide_reply(state, command, campaign):
                evolve_campaign(state, event)
                out.append(event)
        return out

    def status(self) -> dict[str, dict[str, Any]]:
        out = {}
        for cid, state in self._states.items():
            cost = reply_cost(self._campaigns[cid])
            out[cid] = {
                "balance_micros": state.balance_micros,
                "spent_micros": state.spent_micros,
                "approved": state.approved,
                "denied": state.denied,
                "reply_cost_micros": cost.cost_micros,
                "reply_segments": cost.segments,
                "reply_encoding": cost.encoding,
            }
        return out


def _unknown_campaign(command: RequestReply) -> ReplyDenied:
    return ReplyDenied(
        message_id=command.message_id,
        campaign_id=command.campaign_id,
        sender=command.sender,
        reason="unknown_campaign",
        cost_micros=0,
        balance_after_micros=0,
        seq=0,
        occurred_at=command.occurred_at,
    )
