"""What-if: the journal's texts and operator actions decided afresh under two configs."""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from actors.campaign import CampaignState, decide_and_apply, decide_control, evolve_campaign
from actors.shard import CampaignShard
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, CreditBudget, RequestReply
from schemas.events import BudgetCredited, ControlRejected, PolicyChanged, TextReceived
from streams.audit.replay import screen_command
from streams.audit.report import Tally
from streams.audit.results import Report, WhatIf
from streams.screening import UNKNOWN_CAMPAIGN_POLICY, SenderState, decide_screening, evolve_sender


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
    tally = Tally()
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
            screened = decide_screening(sender, screen_command(ev, ev.sender), policy)
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

