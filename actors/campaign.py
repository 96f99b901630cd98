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

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from actors.gcra import Gcra, gcra_check
from actors.pacing import (
    AllowanceState,
    allowance_check,
    allowance_credit,
    allowance_spend,
)
from actors.surge import (
    MINUTE_MS,
    DeferralQueue,
    Deferred,
    SurgeState,
    rank,
    surge_now,
    surge_observe,
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
from schemas.policy import MAX_SURGE_QUEUE, Policy, apply_changes, check_changes
from schemas.segments import segment_info

Decision = (ReplyApproved | ReplyDenied | ReplyDeferred | ReplyExpired | SurgeStarted
            | SurgeEnded | ReplyPromoted)

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
# Decisions that count as a first text of the sender's number range.
_NOT_COUNTED = frozenset({"prefix_flood", "not_started", "ended", "unknown_campaign"})
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


def idempotency_key(event: object) -> str:
    """The key under which a campaign remembers a decision: one decision per request (a
    deferred one is decided again when released or expired, under the same key), per
    operator command, and per settlement of a reply (refund; price reconciliation)."""
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
    # many of them texted again (promoted): whether it looked human (``looked_human``).
    surge_arrivals: int = 0
    surge_promoted: int = 0
    # By idempotency key, oldest first (OrderedDict: popping the oldest stays O(1)).
    decided: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)
    # "cmd:<command id>" -> PolicyChanged / BudgetCredited, oldest first (COMMAND_MEMORY_MS).
    commands: OrderedDict[str, CampaignEvent] = field(default_factory=OrderedDict)

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


def decide_reply(state: CampaignState, command: RequestReply, campaign: Campaign) -> list[Decision]:
    """The decision on one request, then (when the request changes the surge) its
    ``SurgeStarted`` / ``SurgeEnded``; a request decided before gets its first decision."""
    earlier = state.decided.get(command.message_id)
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    cost = reply_cost(campaign, state.policy)
    policy = state.policy
    now = command.occurred_at
    if policy.surge_multiple > 0 or state.surge.active:
        # The surge as it will be once this first text is counted (a copy: evolve does it).
        surge = _copy_surge(state.surge)
        observe_first_text(surge, policy, now)
        transition = surge_transition(surge, policy)
        surging = (surge.active and transition is None) or transition == "enter"
    else:  # surge mode off and no surge to end: counting the text changes no decision
        transition, surging = None, False
    common = dict(
        message_id=command.message_id,
        campaign_id=campaign.id,
        sender=command.sender,
        seq=state.seq + 1,
        occurred_at=now,
        policy_version=policy.version,
        prefix=command.prefix,
    )
    out: list[Decision] = []
    if now < campaign.starts_at:
        reason = "not_started"
    elif now >= campaign.ends_at:
        reason = "ended"
    elif not prefix_within_rate(state, command.prefix, now):
        reason = "prefix_flood"
    elif cost.cost_micros > state.balance_micros:
        reason = "budget_exhausted"
    elif state.balance_micros - cost.cost_micros < policy.reserve_micros:
        reason = "reserve_reached"
    elif surging:
        reason = _defer(state, command, policy, out)
    elif policy.pacing and (paced := _allowance_refusal(state, cost.cost_micros, now)):
        reason = paced  # "allowance"
    else:
        reason = None
        out.append(ReplyApproved(
            segments=cost.segments,
            encoding=cost.encoding,
            cost_micros=cost.cost_micros,
            balance_after_micros=state.balance_micros - cost.cost_micros,
            send_at=send_at(now, policy),
            deferred_at=None,
            **common,
        ))
    if reason is not None:
        out.insert(0, ReplyDenied(reason=reason, cost_micros=cost.cost_micros,
                                  balance_after_micros=state.balance_micros, **common))
    if transition is not None:
        out.append(_surge_event(transition, surge, state, policy, now, state.seq + len(out) + 1))
    return out


def send_at(approved_at: int, policy: Policy) -> int:
    """When an approved reply is sent: ``reply_delay_ms`` after its approval."""
    return approved_at + policy.reply_delay_ms


def _allowance_refusal(state: CampaignState, cost: int, now: int, balance: int | None = None,
                       allowance: AllowanceState | None = None) -> str | None:
    policy = state.policy
    return allowance_check(allowance or state.pacing, cost,
                           state.balance_micros if balance is None else balance,
                           policy.reserve_micros, policy.burst_percent, now, state.ends_at)


# Ranges whose first texts come faster than one per RANGE_PERIOD_MS (after a burst of
# RANGE_BURST) carry a debt; during a surge a request from an indebted range waits behind
# the others (SIM-rotating trolls share a few ranges). The debt decays by itself: one period
# per period, and a denied text adds none.
RANGE_PERIOD_MS = 10 * MINUTE_MS
RANGE_BURST = 3
RANGE_DEBT_LEVELS = 99


def priority_key(state: CampaignState, command: RequestReply) -> int:
    """The surge queue's priority, smaller first: a sender texting again (his earlier text was
    not answered, and he is no flooder: screening says so by forwarding him) before a first
    text, then the lighter-loaded number range."""
    retry = 0 if command.texts_from_sender > 1 else 1
    return retry * (RANGE_DEBT_LEVELS + 1) + min(RANGE_DEBT_LEVELS,
                                                 range_debt(state, command.prefix, command.occurred_at))


def range_debt(state: CampaignState, prefix: str, now: int) -> int:
    """First texts of the range ``prefix`` above its schedule at ``now`` (0: on schedule)."""
    if not prefix:
        return 0
    period, _ = _range_rate(state.policy)
    return max(0, state.prefix_tat.get(prefix, 0) - now) // period


def _range_rate(policy: Policy) -> tuple[int, int]:
    if policy.prefix_burst > 0:
        return policy.prefix_period_ms, policy.prefix_burst
    return RANGE_PERIOD_MS, RANGE_BURST


def _defer(state: CampaignState, command: RequestReply, policy: Policy,
           out: list[Decision]) -> str | None:
    """Queue the request (appending its events to ``out``), or the reason it cannot be."""
    priority = priority_key(state, command)
    item = Deferred(command.message_id, priority, command.occurred_at)
    queue = state.queue
    evicted = None
    if len(queue) >= policy.surge_queue:
        worst = queue.items[-1]
        if rank(item) > rank(worst):
            return "queue_full"  # lower priority than everything queued
        evicted = worst
    seq = state.seq + 1
    out.append(ReplyDeferred(
        message_id=command.message_id, campaign_id=command.campaign_id, sender=command.sender,
        prefix=command.prefix, texts_from_sender=command.texts_from_sender,
        queued=len(queue) + (0 if evicted else 1), seq=seq, occurred_at=command.occurred_at,
        policy_version=policy.version, priority=priority,
    ))
    if evicted is not None:
        out.append(_expired(state, evicted, "queue_full", seq + 1, command.occurred_at))
    return None


def _expired(state: CampaignState, item: Deferred, reason: str, seq: int, now: int) -> ReplyExpired:
    sender, _ = state.queued.get(item.message_id, ("", ""))
    return ReplyExpired(
        message_id=item.message_id, campaign_id=state.campaign_id, sender=sender, reason=reason,
        deferred_at=item.enqueued_at, seq=seq, occurred_at=now,
        policy_version=state.policy.version,
    )


# Releases in one tick at most: a tick's events stay a bounded batch; the next tick goes on.
MAX_RELEASES_PER_TICK = 1_000


def release_rate(state: CampaignState, priority: int, surge_active: bool) -> int | None:
    """Releases a minute from the surge queue for an item of ``priority``: senders who texted
    again, as fast as the budget and the allowance allow (after the watch); first texts during
    a surge at the policy's ``surge_release_per_minute`` (0: they wait for the surge's end),
    after it as fast as allowed (a surge that looked human; a raid's were expired)."""
    if priority <= RANGE_DEBT_LEVELS or not surge_active:
        return None
    return state.policy.surge_release_per_minute


def looked_human(state: CampaignState) -> bool:
    """Whether the last surge looked like people rather than a raid: at least
    ``surge_human_percent`` % of its arrivals texted again at a human pace (a one-shot raid
    never does; genuine pests, told nothing, often do)."""
    return state.surge_promoted * 100 >= state.surge_arrivals * state.policy.surge_human_percent


def decide_tick(state: CampaignState, command: Tick, campaign: Campaign) -> list[Decision]:
    """At ``command.occurred_at``: end the surge if it is over, expire queued requests older
    than the TTL (all of them when the budget can pay no reply), then release the best
    queued ones that have been watched long enough, while the budget, the allowance and the
    release rate allow. Nothing to do: no events (a tick leaves no trace)."""
    policy = state.policy
    now = command.occurred_at
    out: list[Decision] = []
    seq = state.seq
    surge_active = state.surge.active
    if surge_active:
        surge = _copy_surge(state.surge)
        surge_roll(surge, now)
        if surge_transition(surge, policy) == "leave":
            seq += 1
            out.append(_surge_event("leave", surge, state, policy, now, seq))
            surge_active = False
            if not looked_human(state):  # a raid: its first texts are not paid
                for item in state.queue.items:
                    if item.priority_key > RANGE_DEBT_LEVELS:
                        seq += 1
                        out.append(_expired(state, item, "raid", seq, now))
    gone = {e.message_id for e in out if type(e) is ReplyExpired}
    if len(state.queue) > len(gone):
        out += _tick_queue(state, campaign, now, seq, surge_active, gone)
    return out


def _tick_queue(state: CampaignState, campaign: Campaign, now: int, seq: int,
                surge_active: bool, gone: set[str]) -> list[Decision]:
    """Expire and release what waits in the queue (``gone``: already expired in this tick)."""
    policy = state.policy
    out: list[Decision] = []
    cost = reply_cost(campaign, policy)
    broke = (cost.cost_micros > state.balance_micros
             or state.balance_micros - cost.cost_micros < policy.reserve_micros)
    waiting = []
    for item in state.queue.items:  # priority order
        if item.message_id in gone:
            continue
        if broke or now - item.enqueued_at > policy.surge_ttl_ms:
            seq += 1
            out.append(_expired(state, item, "budget_exhausted" if broke else "ttl", seq, now))
        else:
            waiting.append(item)
    if broke or not campaign.starts_at <= now < campaign.ends_at:
        return out
    balance = state.balance_micros
    allowance = AllowanceState(state.pacing.tokens, state.pacing.at)
    release_tat = state.release_tat
    released = 0
    for item in waiting:  # priority order
        if now - item.enqueued_at < policy.surge_watch_ms:
            continue  # still watched: a flooder shows himself and is withdrawn
        if released >= MAX_RELEASES_PER_TICK:
            break
        if cost.cost_micros > balance or balance - cost.cost_micros < policy.reserve_micros:
            break
        if policy.pacing and _allowance_refusal(state, cost.cost_micros, now, balance, allowance):
            break
        rate = release_rate(state, item.priority_key, surge_active)
        if rate is not None:
            if rate == 0:
                break  # first texts wait for the surge's end; the rest rank lower
            allowed, tat = gcra_check(Gcra(release_tat), now, MINUTE_MS // rate, rate)
            if not allowed:
                break  # the rest rank lower and are rate-limited too
            release_tat = tat
        allowance_spend(allowance, cost.cost_micros, balance, policy.reserve_micros,
                        policy.burst_percent, now, state.ends_at)
        balance -= cost.cost_micros
        released += 1
        sender, prefix = state.queued.get(item.message_id, ("", ""))
        seq += 1
        out.append(ReplyApproved(
            message_id=item.message_id, campaign_id=campaign.id, sender=sender,
            segments=cost.segments, encoding=cost.encoding, cost_micros=cost.cost_micros,
            balance_after_micros=balance, seq=seq, occurred_at=now,
            policy_version=policy.version, prefix=prefix, send_at=send_at(now, policy),
            deferred_at=item.enqueued_at,
        ))
    return out


def decide_review(state: CampaignState, command: ReviewRequest) -> list[ReplyExpired | ReplyPromoted]:
    """What screening learned about the sender of a queued request: a flooder's is not paid
    (``ReplyExpired(flooder)``); one who texted again moves ahead of the first texts
    (``ReplyPromoted``, once). A request not queued (approved, never deferred): nothing."""
    item = next((i for i in state.queue.items if i.message_id == command.message_id), None)
    if item is None:
        return []
    if command.reason == "flooder":
        return [_expired(state, item, "flooder", state.seq + 1, command.occurred_at)]
    if command.reason == "texted_again" and item.priority_key > RANGE_DEBT_LEVELS:
        return [ReplyPromoted(
            message_id=item.message_id, campaign_id=state.campaign_id,
            sender=state.queued.get(item.message_id, ("", ""))[0],
            priority=item.priority_key - RANGE_DEBT_LEVELS - 1, seq=state.seq + 1,
            occurred_at=command.occurred_at, policy_version=state.policy.version)]
    return []


def decide_and_apply(state: CampaignState, command: RequestReply | Tick | ReviewRequest,
                     campaign: Campaign) -> list[Decision]:
    """What a campaign shard does with one command: decide and evolve. Before a request, a
    tick at the request's time releases or expires what waits in the queue (the requests'
    event time moves the campaign's clock too)."""
    out: list[Decision] = []
    if isinstance(command, RequestReply):
        if (state.queue.items or state.surge.active) and command.message_id not in state.decided:
            out += decide_tick(state, Tick(command.campaign_id, command.occurred_at), campaign)
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


# --- surge bookkeeping: the same steps in decide (on a copy) and in evolve ------------------


def _copy_surge(surge: SurgeState) -> SurgeState:
    return SurgeState(surge.minute, surge.count, list(surge.history), surge.active,
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
    reply already refunded is not priced, and a priced one is not refunded."""
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
        return [ReplyCostReconciled(
            estimated_micros=approval.cost_micros, actual_micros=command.price_micros,
            balance_after_micros=state.balance_micros + approval.cost_micros
            - command.price_micros,
            **common)]
    return []


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
            state.surge_arrivals = state.surge_promoted = 0
        return state
    key = idempotency_key(event)
    memory = state.commands if t is PolicyChanged or t is BudgetCredited else state.decided
    earlier = memory.get(key)
    # A deferred request is decided twice: deferred, then released or expired.
    if earlier is not None and not (type(earlier) is ReplyDeferred
                                    and (t is ReplyExpired or t is ReplyApproved)):
        return state
    memory[key] = event
    if earlier is not None:
        memory.move_to_end(key)
    if memory is state.commands:
        oldest_kept = event.occurred_at - COMMAND_MEMORY_MS
        while next(iter(memory.values())).occurred_at < oldest_kept:
            memory.popitem(last=False)
    elif len(state.decided) > REMEMBERED_DECISIONS:
        state.decided.popitem(last=False)
    state.seq = event.seq
    balance_before = state.balance_micros
    if t is ReplyApproved:
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
    elif t is ReplyDenied:
        state.denied += 1
        if event.reason == "queue_full":
            state.surge_arrivals += 1
        observe_first_text(state.surge, state.policy, event.occurred_at)
        if event.reason not in _NOT_COUNTED:
            _count_prefix(state, event.prefix, event.occurred_at)
    elif t is ReplyDeferred:
        observe_first_text(state.surge, state.policy, event.occurred_at)
        _count_prefix(state, event.prefix, event.occurred_at)
        state.queue.push(Deferred(event.message_id, event.priority, event.occurred_at))
        state.surge_arrivals += 1
        state.queued[event.message_id] = (event.sender, event.prefix)
    elif t is ReplyExpired:
        state.denied += 1
        if event.reason == "flooder" and any(
                i.message_id == event.message_id and i.priority_key <= RANGE_DEBT_LEVELS
                for i in state.queue.items):
            state.surge_promoted -= 1  # his texting again was no sign of a person after all
        _dequeue(state, event.message_id)
    elif t is ReplyPromoted:
        state.surge_promoted += 1
        item = state.queue.remove(event.message_id)
        if item is not None:
            state.queue.push(Deferred(item.message_id, event.priority, item.enqueued_at))
    elif t is ReplyRefunded:
        state.balance_micros = event.balance_after_micros
        state.spent_micros -= event.refund_micros
        state.refunded_micros += event.refund_micros
        _allowance(state, _refund, event.refund_micros, event.occurred_at, balance_before)
    elif t is ReplyCostReconciled:
        state.balance_micros = event.balance_after_micros
        overrun = event.actual_micros - event.estimated_micros
        state.spent_micros += overrun
        if overrun > 0:
            _allowance(state, allowance_spend, overrun, event.occurred_at, balance_before)
        elif overrun < 0:
            _allowance(state, _refund, -overrun, event.occurred_at, balance_before)
    elif isinstance(event, PolicyChanged):
        state.policy = apply_changes(state.policy, event.changes, event.version)
    elif isinstance(event, BudgetCredited):
        state.balance_micros = event.balance_after_micros
        state.credited_micros += event.amount_micros
        _allowance(state, allowance_credit, event.amount_micros, event.occurred_at, balance_before)
    return state


def _refund(allowance: AllowanceState, amount: int, balance_before: int, reserve: int,
            burst_percent: int, now: int, ends_at: int) -> None:
    allowance_credit(allowance, amount, balance_before, reserve, burst_percent, now, ends_at,
                     refund=True)


def _allowance(state: CampaignState, step: Any, amount: int, now: int, balance_before: int) -> None:
    policy = state.policy
    step(state.pacing, amount, balance_before, policy.reserve_micros, policy.burst_percent, now,
         state.ends_at)
