"""What-if: the journal's texts and operator actions decided afresh under two configs."""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from actors.shard import is_campaign_event
from schemas.campaign import Campaign
from schemas.events import BudgetCredited, PolicyChanged, TextReceived
from streams.audit.report import Tally
from streams.audit.results import Report, WhatIf
from streams.rules.pipeline import Pipeline, control_behind, screen_command


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
    """Run the decision path over ``(occurred_at, position, event)`` inputs, in the order
    given: the shared in-memory ``Pipeline`` (streams/rules/pipeline.py), as the simulator runs it,
    so a what-if sees what the live system does: a sender texting again reviews his awaited
    request, an outcome reopens him, and the campaign's clock ticks once a minute (deferred
    replies released or expired) between the texts and after the last one."""
    configured = {c.id: c for c in campaigns}
    pipe = Pipeline(configured.values())
    tally = Tally()
    day = tally.day
    last_text: dict[str, int] = {}  # campaign -> the time of its last text
    for _, _, ev in inputs:
        cid = ev.campaign_id
        if type(ev) is TextReceived:
            sender = pipe.senders.get(ev.sender)
            if sender is not None and ev.message_id in sender.recent:
                continue  # a copy of a text decided already: its verdict again, no news
            day(cid, ev.occurred_at).texts_in += 1  # each text once, as the audit counts
            seen = len(pipe.events)
            verdict = pipe.text(screen_command(ev)).verdicts[0]
            last_text[cid] = ev.occurred_at
            if verdict.verdict != "forward":
                s = day(cid, ev.occurred_at)
                s.suppressed[verdict.reason] = s.suppressed.get(verdict.reason, 0) + 1
            _count(tally, pipe.events[seen:])
        elif cid in configured:
            _count(tally, pipe.shard.control([control_behind(ev)]))
    for cid, at in last_text.items():
        seen = len(pipe.events)
        pipe.tick_out(cid, at)
        _count(tally, pipe.events[seen:])
    return tally.report(configured, {})


def _count(tally: Tally, events: Iterable[Any]) -> None:
    """The campaign's decisions and operator outcomes in the day tallies (the screening
    verdicts are counted per text; reopenings and rejected commands change no figure)."""
    for e in events:
        if is_campaign_event(e):
            tally.campaign_event(e)
