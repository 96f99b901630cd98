"""``evolve_campaign(state, event) -> state``: the one place a campaign's state changes, from
its events, in ``seq`` order. An event at or below the state's ``seq`` changes nothing (a
redelivery, or older than a snapshot), so applying the journal twice is harmless. Pure.

Every first text (a request approved as it came, deferred or denied) is counted in the
cohorts and its words in the word statistics (``actors.evidence``), at the event's own time,
so a replay rebuilds the surge, the marks and the queue exactly.
"""

from __future__ import annotations

from typing import Any

from actors.decide import PRICE_CAP_FACTOR, range_rate
from actors.evidence import MINUTE_MS, observe, roll, words_observe
from actors.gcra import Gcra, gcra_check
from actors.pacing import AllowanceState, allowance_credit, allowance_spend
from actors.queue import Waiting
from actors.state import (
    CampaignEvent,
    CampaignState,
    Settlement,
    idempotency_key,
    surge_of,
    surges_from,
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
    ReplyHeldBack,
    ReplyPromoted,
    ReplyRefunded,
    SurgeEnded,
    SurgeStarted,
)
from schemas.policy import next_version
from schemas.reasons import ENDED, NOT_STARTED, PREFIX_FLOOD, RAID_WORDS, UNKNOWN_CAMPAIGN

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
# Number ranges whose first-text rate is tracked per campaign (country code - 3 digits: a few
# thousand exist). Past the bound, ranges back on schedule are forgotten first (losing
# nothing), then the ones with the least debt.
REMEMBERED_PREFIXES = 4_096
# Minutes whose held-back releases are counted, before the older ones are forgotten.
HELD_MINUTES_KEPT = 1_000
# Decisions that do not count as a first text of the sender's number range.
_NOT_COUNTED = frozenset({PREFIX_FLOOD, NOT_STARTED, ENDED, UNKNOWN_CAMPAIGN})


def evolve_campaign(state: CampaignState, event: CampaignEvent | ControlRejected) -> CampaignState:
    if isinstance(event, ControlRejected):
        return state  # refusals change nothing and take no seq
    if event.seq <= state.seq:
        return state  # already applied (a redelivery, or older than a snapshot)
    t = type(event)
    if t is SurgeStarted or t is SurgeEnded:
        state.seq = event.seq
        roll(state.cohorts, event.occurred_at, state.policy)
        state.cohorts.active = t is SurgeStarted
        if t is SurgeStarted:
            _new_surge(state, event)
        return state
    if not _remember(state, event, t):
        return state
    state.seq = event.seq
    balance_before = state.balance_micros
    if t is ReplyApproved:
        _evolve_approved(state, event, balance_before)
    elif t is ReplyDenied:
        state.denied += 1
        if event.reason == RAID_WORDS:
            _count_by_minute(state.raid_refused, event.occurred_at, event.occurred_at, state)
        _first_text(state, event.occurred_at, event.words, event.reason == RAID_WORDS,
                    event.texts_from_sender)
        if event.reason not in _NOT_COUNTED:
            _count_prefix(state, event.prefix, event.occurred_at)
    elif t is ReplyDeferred:
        _first_text(state, event.occurred_at, event.words, False, event.texts_from_sender)
        _count_prefix(state, event.prefix, event.occurred_at)
        state.queue.hold(Waiting(
            event.message_id, event.sender, event.prefix, event.occurred_at,
            event.hold_until or event.occurred_at, event.words, event.priority,
            event.texts_from_sender > 1))
    elif t is ReplyHeldBack:
        state.queue.hold_back(event.message_id, event.rank)
    elif t is ReplyExpired:
        state.denied += 1
        if event.reason == RAID_WORDS:
            _count_by_minute(state.raid_refused, event.deferred_at, event.occurred_at, state)
        state.queue.remove(event.message_id)
    elif t is ReplyPromoted:
        item = state.queue.get(event.message_id)
        if item is not None:
            state.queue.replace(item._replace(texted_again=True))
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


def _first_text(state: CampaignState, now: int, words: str, raid: bool, texts: int) -> None:
    # Counted with surges off too, so that switching them on finds a baseline. The words of
    # a sender's first text only: the campaign's word statistics model what people first
    # write (a later text is "?" or "allo ?", or a raid's number pasting again).
    observe(state.cohorts, now, state.policy, raid)
    words_observe(state.words, now, words if texts <= 1 else "", state.cohorts, state.policy)


def _count_prefix(state: CampaignState, prefix: str, now: int) -> None:
    # Counted with the per-prefix limit off too: the ranges' load ranks held-back requests.
    if not prefix:
        return
    tats = state.prefix_tat
    period, burst = range_rate(state.policy)
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
        _first_text(state, event.occurred_at, event.words, False, event.texts_from_sender)
        _count_prefix(state, event.prefix, event.occurred_at)
        return
    _, held = state.queue.remove(event.message_id)
    if not held:
        return
    surge = surge_of(state, event.deferred_at // MINUTE_MS)
    if surge is not None:
        surge[2] += event.cost_micros
    _count_by_minute(state.held_released, event.deferred_at, event.occurred_at, state)
    rate = state.policy.surge_release_per_minute
    if rate:
        _, tat = gcra_check(Gcra(state.release_tat), event.occurred_at, MINUTE_MS // rate, rate)
        state.release_tat = max(state.release_tat, tat)


def _new_surge(state: CampaignState, event: SurgeStarted) -> None:
    # A surge's first minute is the one before it started: its spike began there.
    state.surges.append([event.occurred_at // MINUTE_MS - 1, event.spend_cap_micros, 0])
    oldest = surges_from(state, event.occurred_at)
    while len(state.surges) > 1 and state.surges[1][0] < oldest:
        del state.surges[0]  # none of its requests can still wait


def _count_by_minute(counts: dict[int, int], arrived_at: int, now: int,
                     state: CampaignState) -> None:
    minute = arrived_at // MINUTE_MS
    counts[minute] = counts.get(minute, 0) + 1
    if len(counts) > HELD_MINUTES_KEPT:  # older than any request still queued
        oldest = now // MINUTE_MS - state.policy.surge_ttl_ms // MINUTE_MS - 1
        for m in [m for m in counts if m < oldest]:
            del counts[m]


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
