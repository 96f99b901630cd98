"""The campaign aggregate: the pure budget decision behind the Ray campaign shards.

``decide_reply(state, command, campaign) -> [ReplyApproved | ReplyDenied | ReplyDeferred, ...]``,
``decide_tick(state, tick, campaign) -> [SurgeEnded | ReplyExpired | ReplyApproved, ...]``,
``decide_settlement(state, command) -> [ReplyRefunded | ReplyCostReconciled]`` (what became
of an approved reply: not sent, so refunded; or priced by a delivery report, so reconciled),
``decide_control(state, command) -> [PolicyChanged | BudgetCredited | ControlRejected]`` and
``evolve_campaign(state, event) -> state``. No clock, no randomness, no I/O: time is the
command's ``occurred_at``; money is integer micro-euros; the policy is part of the state and
changes only through ``PolicyChanged`` events. ``decide_and_apply`` is what a shard does with
one command (a tick at the request's time first, when replies wait in the queue).

Surge mode (``actors.surge``): every request counts as a first text of its minute. When a
minute surges, the request's decision is followed by ``SurgeStarted``, and from then on
requests are ``ReplyDeferred`` into the campaign's queue (a full queue pushes out its lowest
priority, ``ReplyExpired(queue_full)``, or refuses the newcomer, ``ReplyDenied(queue_full)``).
Ticks release the best queued request as a ``ReplyApproved`` (``deferred_at`` set) while the
budget, the pacing and ``surge_release_per_minute`` allow, and expire those older than the
TTL. The decisions are computed on copies; only ``evolve_campaign`` changes the state, with
the events' own times, so replaying the journal rebuilds the surge and the queue exactly.

Every event a campaign emits carries the next ``seq``: the campaign's total order, which is
the replay order. Idempotency: a request (by message id) or an operator command (by command
id) that was already decided gets the same event again (Kafka and Ray both deliver at least
once), and evolving an event twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from actors.campaign_state import (
    CampaignEvent,
    CampaignState,
    ControlOutcome,
    Decision,
    ReplyCost,
    Settlement,
    _allowance_refusal,
    _copy_surge,
    _surge_event,
    idempotency_key,
    initial_policy,
    observe_first_text,
    reply_cost,
    send_at,
    settlement_key,
    surge_transition,
)
from actors.gcra import Gcra, gcra_check
from actors.pacing import (
    AllowanceState,
    allowance_credit,
    allowance_spend,
)
from actors.queue_rules import (
    MAX_RELEASES_PER_TICK,
    RANGE_BURST,
    RANGE_DEBT_LEVELS,
    RANGE_PERIOD_MS,
    _defer,
    _range_rate,
    decide_review,
    decide_tick,
    looked_human,
    priority_key,
    range_debt,
    release_rate,
)
from actors.surge import (
    MINUTE_MS,
    Deferred,
    surge_roll,
)
from schemas.campaign import Campaign
from schemas.commands import (
    ChangePolicy,
    ControlCommand,
    CreditBudget,
    RequestReply,
    ReviewRequest,
    SettleReply,
    Tick,
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
from schemas.policy import check_changes, next_version
from schemas.reasons import (
    BUDGET_EXHAUSTED,
    ENDED,
    FLOODER,
    NOT_STARTED,
    PREFIX_FLOOD,
    QUEUE_FULL,
    RESERVE_REACHED,
    UNKNOWN_CAMPAIGN,
)

# Decisions remembered per campaign for idempotency. Redeliveries come within a rebalance or
# a retry, long before this many later decisions; the bound keeps memory and snapshots flat.
REMEMBERED_DECISIONS = 50_000
# Operator command ids are remembered apart from the decisions (a flood of 50,000 texts
# must not make a signed command forgettable, hence replayable): each until no signed
# command can be accepted with its time any more. ``infra.operators`` accepts a command
# within MAX_SKEW_MS (10 min) of the worker's clock, and the newest command applied was
# signed within that window too, so one older than it by twice the window can no longer
# pass. Time from the signed commands, not from texts (a text's date is the sender's).
COMMAND_MEMORY_MS = 2 * 10 * 60 * 1000
# A delivery report's price is charged up to this multiple of the reply's estimated cost
# (more parts than estimated, a price change), and never below the reserve; the rest of it
# is journaled (``reported_micros``), counted, and taken from the allowance.
PRICE_CAP_FACTOR = 3
# Number ranges whose first-text rate is tracked per campaign (country code - 3 digits: a few
# thousand exist). Past the bound, ranges back on schedule are forgotten first (losing
# nothing), then the ones with the least debt.
REMEMBERED_PREFIXES = 4_096
# Decisions that count as a first text of the sender's number range.
_NOT_COUNTED = frozenset({PREFIX_FLOOD, NOT_STARTED, ENDED, UNKNOWN_CAMPAIGN})


__all__ = [  # with the names of actors.campaign_state and actors.queue_rules it re-exports
    "COMMAND_MEMORY_MS", "MAX_RELEASES_PER_TICK", "RANGE_BURST", "RANGE_DEBT_LEVELS",
    "RANGE_PERIOD_MS", "REMEMBERED_DECISIONS", "REMEMBERED_PREFIXES", "CampaignEvent",
    "CampaignState", "ControlOutcome", "Decision", "ReplyCost", "Settlement", "charged_price",
    "decide_and_apply",
    "decide_control", "decide_reply", "decide_review", "decide_settlement", "decide_tick",
    "evolve_campaign", "idempotency_key", "initial_policy", "looked_human", "observe_first_text",
    "prefix_within_rate", "priority_key", "range_debt", "release_rate", "reply_cost", "send_at",
    "settlement_key", "surge_transition",
]


def decide_reply(state: CampaignState, command: RequestReply, campaign: Campaign) -> list[Decision]:
    """The decision on one request, then (when the request changes the surge) its
    ``SurgeStarted`` / ``SurgeEnded``; a request decided before gets its first decision."""
    earlier = state.decided.get(command.message_id)
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    policy = state.policy
    cost = reply_cost(campaign, policy)
    now = command.occurred_at
    if policy.surge_multiple > 0 or state.surge.active:
        # The surge as it will be once this first text is counted (a copy: evolve does it).
        surge = _copy_surge(state.surge)
        observe_first_text(surge, policy, now)
        transition = surge_transition(surge, policy)
        surging = (surge.active and transition is None) or transition == "enter"
    else:  # surge mode off and no surge to end: counting the text changes no decision
        transition, surging = None, False
    balance = state.balance_micros
    out: list[Decision] = []
    if now < campaign.starts_at:
        reason = NOT_STARTED
    elif now >= campaign.ends_at:
        reason = ENDED
    elif not prefix_within_rate(state, command.prefix, now):
        reason = PREFIX_FLOOD
    elif cost.cost_micros > balance:
        reason = BUDGET_EXHAUSTED
    elif balance - cost.cost_micros < policy.reserve_micros:
        reason = RESERVE_REACHED
    elif surging:
        reason = _defer(state, command, policy, out)
    elif policy.pacing and (paced := _allowance_refusal(state, cost.cost_micros, now)):
        reason = paced  # ALLOWANCE
    else:
        reason = None
        out.append(ReplyApproved(
            message_id=command.message_id, campaign_id=campaign.id, sender=command.sender,
            segments=cost.segments, encoding=cost.encoding, cost_micros=cost.cost_micros,
            balance_after_micros=balance - cost.cost_micros, seq=state.seq + 1, occurred_at=now,
            policy_version=policy.version, prefix=command.prefix,
            send_at=send_at(now, policy), deferred_at=None,  # approved as it came: not deferred
        ))
    if reason is not None:
        out.insert(0, ReplyDenied(
            message_id=command.message_id, campaign_id=campaign.id, sender=command.sender,
            reason=reason, cost_micros=cost.cost_micros, balance_after_micros=balance,
            seq=state.seq + 1, occurred_at=now, policy_version=policy.version,
            prefix=command.prefix,
        ))
    if transition is not None:
        out.append(_surge_event(transition, surge, state, policy, now, state.seq + len(out) + 1))
    return out


def decide_and_apply(state: CampaignState, command: RequestReply | Tick | ReviewRequest,
                     campaign: Campaign) -> list[Decision]:
    """What a campaign shard does with one command: decide and evolve. Before a request, a
    tick at the request's time releases or expires what waits in the queue (the requests'
    event time moves the campaign's clock too)."""
    out: list[Decision] = []
    if isinstance(command, RequestReply):
        if (state.queue.items or state.surge.active) and command.message_id not in state.decided:
            tick = Tick(campaign_id=command.campaign_id, occurred_at=command.occurred_at)
            out += decide_tick(state, tick, campaign)
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
    # Counted with the per-prefix limit off too: the ranges' load ranks the surge queue.
    if not prefix:
        return
    tats = state.prefix_tat
    period, burst = _range_rate(state.policy)
    allowed, tat = gcra_check(Gcra(tats.get(prefix, 0)), now, period, burst)
    if not allowed:
        return  # over the burst already: the debt is capped, so it decays within a burst
    tats.pop(prefix, None)  # re-inserted last: the dict stays in order of last use
    tats[prefix] = tat
    if len(tats) > REMEMBERED_PREFIXES:
        for key in [k for k, t in tats.items() if t <= now]:
            del tats[key]  # back on schedule: the same as never seen
        while len(tats) > REMEMBERED_PREFIXES:
            del tats[min(tats, key=tats.__getitem__)]


def decide_settlement(state: CampaignState, command: SettleReply) -> list[Settlement]:
    """Settle an approved reply once: refund it if it was not sent, or replace its estimated
    cost with the price a delivery report gave. A reply the campaign does not remember as
    approved (never approved, or older than ``REMEMBERED_DECISIONS``) settles nothing; a
    reply already refunded is not priced, and a priced one is not refunded.

    The estimate is what the decision charged; a price above it is charged up to
    ``PRICE_CAP_FACTOR`` times it and only as far as the balance stays at or above the
    reserve (the floor the allowance's guarantee rests on). What is not charged is the
    event's ``reported_micros`` (the report's price), and the allowance absorbs it."""
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
        actual = charged_price(state, approval.cost_micros, command.price_micros)
        return [ReplyCostReconciled(
            estimated_micros=approval.cost_micros, actual_micros=actual,
            balance_after_micros=state.balance_micros + approval.cost_micros - actual,
            reported_micros=command.price_micros if command.price_micros != actual else None,
            **common)]
    return []


def charged_price(state: CampaignState, estimated: int, reported: int) -> int:
    """What a reported price charges: below the estimate, the price (the difference comes
    back); above it, at most ``PRICE_CAP_FACTOR`` times the estimate (one signed report
    priced a reply at EUR 1,000), and the overrun only down to the reserve (a report of
    three times the estimate took a EUR 0.16 budget to -0.32)."""
    if reported <= estimated:
        return reported
    headroom = state.balance_micros - state.policy.reserve_micros
    overrun = min(reported, PRICE_CAP_FACTOR * estimated) - estimated
    return estimated + max(0, min(overrun, headroom))


def _count_arrival(state: CampaignState, prefix: str) -> None:
    state.surge_arrival_ranges[prefix] = state.surge_arrival_ranges.get(prefix, 0) + 1


def _count_promotion(state: CampaignState, prefix: str, n: int) -> None:
    count = state.surge_promoted_ranges.get(prefix, 0) + n
    if count > 0:
        state.surge_promoted_ranges[prefix] = count
    else:
        state.surge_promoted_ranges.pop(prefix, None)


def _dequeue(state: CampaignState, message_id: str) -> None:
    state.queue.remove(message_id)
    state.queued.pop(message_id, None)


def decide_control(state: CampaignState, command: ControlCommand) -> list[ControlOutcome]:
    earlier = state.commands.get("cmd:" + command.command_id)
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
    if event.seq <= state.seq:
        return state  # already applied (a redelivery, or older than a snapshot)
    t = type(event)
    if t is SurgeStarted or t is SurgeEnded:
        state.seq = event.seq
        surge_roll(state.surge, event.occurred_at)
        state.surge.active = t is SurgeStarted
        if t is SurgeStarted:
            state.surge_arrival_ranges, state.surge_promoted_ranges = {}, {}
        return state
    if not _remember(state, event, t):
        return state
    state.seq = event.seq
    balance_before = state.balance_micros
    if t is ReplyApproved:
        _evolve_approved(state, event, balance_before)
    elif t is ReplyDenied:
        state.denied += 1
        if event.reason == QUEUE_FULL:
            _count_arrival(state, event.prefix)
        observe_first_text(state.surge, state.policy, event.occurred_at)
        if event.reason not in _NOT_COUNTED:
            _count_prefix(state, event.prefix, event.occurred_at)
    elif t is ReplyDeferred:
        observe_first_text(state.surge, state.policy, event.occurred_at)
        _count_prefix(state, event.prefix, event.occurred_at)
        state.queue.push(Deferred(event.message_id, event.priority, event.occurred_at))
        _count_arrival(state, event.prefix)
        state.queued[event.message_id] = (event.sender, event.prefix)
    elif t is ReplyExpired:
        state.denied += 1
        if event.reason == FLOODER and any(
                i.message_id == event.message_id and i.priority_key <= RANGE_DEBT_LEVELS
                for i in state.queue.items):
            # His texting again was no sign of a person after all.
            _count_promotion(state, state.queued.get(event.message_id, ("", ""))[1], -1)
        _dequeue(state, event.message_id)
    elif t is ReplyPromoted:
        _count_promotion(state, state.queued.get(event.message_id, ("", ""))[1], 1)
        item = state.queue.remove(event.message_id)
        if item is not None:
            state.queue.push(Deferred(item.message_id, event.priority, item.enqueued_at))
    elif t is ReplyRefunded or t is ReplyCostReconciled:
        _evolve_settlement(state, event, balance_before)
    elif isinstance(event, PolicyChanged):
        # Always the next version: the campaign decided it so, in this same seq order.
        state.policy = next_version(state.policy, event.version, event.changes) or state.policy
    elif isinstance(event, BudgetCredited):
        state.balance_micros = event.balance_after_micros
        state.credited_micros += event.amount_micros
        _allowance(state, allowance_credit, event.amount_micros, event.occurred_at, balance_before)
    return state


def _remember(state: CampaignState, event: CampaignEvent, t: type) -> bool:
    """Remember ``event`` under its idempotency key (bounded memories); False: it was applied
    already (a deferred request is decided twice: deferred, then released or expired)."""
    key = idempotency_key(event)
    memory = state.commands if t is PolicyChanged or t is BudgetCredited else state.decided
    earlier = memory.get(key)
    if earlier is not None and not (type(earlier) is ReplyDeferred
                                    and (t is ReplyExpired or t is ReplyApproved)):
        return False
    memory[key] = event
    if earlier is not None:
        memory.move_to_end(key)
    if memory is state.commands:
        oldest_kept = event.occurred_at - COMMAND_MEMORY_MS
        while next(iter(memory.values())).occurred_at < oldest_kept:
            memory.popitem(last=False)
    elif len(state.decided) > REMEMBERED_DECISIONS:
        state.decided.popitem(last=False)
    return True


def _evolve_approved(state: CampaignState, event: ReplyApproved, balance_before: int) -> None:
    state.balance_micros = event.balance_after_micros
    state.spent_micros += event.cost_micros
    state.approved += 1
    # Tracked even with pacing off, so switching it on finds the bucket as spent.
    _allowance(state, allowance_spend, event.cost_micros, event.occurred_at, balance_before)
    if event.deferred_at is None:
        observe_first_text(state.surge, state.policy, event.occurred_at)
        _count_prefix(state, event.prefix, event.occurred_at)
    else:
        item = state.queue.remove(event.message_id)
        state.queued.pop(event.message_id, None)
        rate = release_rate(state, item.priority_key if item else 0, state.surge.active)
        if rate:
            _, tat = gcra_check(Gcra(state.release_tat), event.occurred_at,
                                MINUTE_MS // rate, rate)
            state.release_tat = max(state.release_tat, tat)


def _evolve_settlement(state: CampaignState, event: Settlement, balance_before: int) -> None:
    state.balance_micros = event.balance_after_micros
    if type(event) is ReplyRefunded:
        state.spent_micros -= event.refund_micros
        state.refunded_micros += event.refund_micros
        _allowance(state, _refund, event.refund_micros, event.occurred_at, balance_before)
        return
    charged = event.actual_micros - event.estimated_micros
    state.spent_micros += charged
    # The allowance pays the whole overrun (up to the cap), charged or not: the money the
    # reserve kept from this report is taken from what may be spent next.
    overrun = charged
    if event.reported_micros is not None and event.reported_micros > event.actual_micros:
        overrun = min(event.reported_micros,
                      PRICE_CAP_FACTOR * event.estimated_micros) - event.estimated_micros
    if overrun > 0:
        _allowance(state, allowance_spend, overrun, event.occurred_at, balance_before)
    elif charged < 0:
        _allowance(state, _refund, -charged, event.occurred_at, balance_before)


def _refund(allowance: AllowanceState, amount: int, balance_before: int, reserve: int,
            burst_percent: int, now: int, ends_at: int) -> None:
    allowance_credit(allowance, amount, balance_before, reserve, burst_percent, now, ends_at,
                     refund=True)


def _allowance(state: CampaignState, step: Any, amount: int, now: int, balance_before: int) -> None:
    policy = state.policy
    step(state.pacing, amount, balance_before, policy.reserve_micros, policy.burst_percent, now,
         state.ends_at)
