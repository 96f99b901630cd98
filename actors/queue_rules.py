"""The surge queue's rules: who is deferred and at what priority, who is released by a
tick and when, who expires, and what screening's review of a queued request does. Pure;
``actors.campaign`` re-exports the public names."""

from __future__ import annotations

from actors.campaign_state import (
    CampaignState,
    Decision,
    _allowance_refusal,
    _copy_surge,
    _surge_event,
    reply_cost,
    send_at,
    surge_transition,
)
from actors.gcra import Gcra, gcra_check
from actors.pacing import (
    AllowanceState,
    allowance_spend,
)
from actors.surge import (
    MINUTE_MS,
    Deferred,
    rank,
    surge_roll,
)
from schemas.campaign import Campaign
from schemas.commands import (
    RequestReply,
    ReviewRequest,
    Tick,
)
from schemas.events import (
    ReplyApproved,
    ReplyDeferred,
    ReplyExpired,
    ReplyPromoted,
)
from schemas.policy import Policy
from schemas.reasons import BUDGET_EXHAUSTED, FLOODER, QUEUE_FULL, RAID, TEXTED_AGAIN, TTL

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
            return QUEUE_FULL  # lower priority than everything queued
        evicted = worst
    seq = state.seq + 1
    out.append(ReplyDeferred(
        message_id=command.message_id, campaign_id=command.campaign_id, sender=command.sender,
        prefix=command.prefix, texts_from_sender=command.texts_from_sender,
        queued=len(queue) + (0 if evicted else 1), seq=seq, occurred_at=command.occurred_at,
        policy_version=policy.version, priority=priority,
    ))
    if evicted is not None:
        out.append(_expired(state, evicted, QUEUE_FULL, seq + 1, command.occurred_at))
    return None


def _expired(state: CampaignState, item: Deferred, reason: str, seq: int, now: int) -> ReplyExpired:
    sender, _ = state.queued.get(item.message_id, ("", ""))
    return ReplyExpired(
        message_id=item.message_id, campaign_id=state.campaign_id, sender=sender, reason=reason,
        deferred_at=item.enqueued_at, seq=seq, occurred_at=now,
        policy_version=state.policy.version,
    )


# After a raid's last surging minute, its stragglers' minutes: expired with the raid.
RAID_STRAGGLER_MINUTES = 1

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


# How far one number range's promotions count as people (``human_promotions``): at most
# HUMAN_RANGE_FACTOR times the share of the surge's promotions its arrivals would have had,
# and at least HUMAN_RANGE_MIN.
HUMAN_RANGE_FACTOR = 2
HUMAN_RANGE_MIN = 3


def human_promotions(arrivals: dict[str, int], promoted: dict[str, int]) -> int:
    """The surge's promotions (senders who texted again, by number range) that count as
    people. People text again as often in one range as in another: a range's promotions
    count up to twice its arrivals' share of them (at least 3). SIM-rotating trolls text
    again from the few ranges of the SIMs they bought, far more often than the surge's
    other senders, so a raid with them is not taken for people (raid seed 200: 40
    promotions, all from 4 ranges holding 62 of its 327 arrivals)."""
    total_arrivals = sum(arrivals.values())
    total_promoted = sum(promoted.values())
    if not total_arrivals:
        return total_promoted
    counted = 0
    for prefix, n in promoted.items():
        share = HUMAN_RANGE_FACTOR * total_promoted * arrivals.get(prefix, 0) // total_arrivals
        counted += min(n, max(HUMAN_RANGE_MIN, share))
    return counted


def looked_human(state: CampaignState) -> bool:
    """Whether the last surge looked like people rather than a raid: at least
    ``surge_human_percent`` % of its arrivals texted again at a human pace, from many
    number ranges (``human_promotions``; a one-shot raid never does; genuine pests, told
    nothing, often do)."""
    promoted = human_promotions(state.surge_arrival_ranges, state.surge_promoted_ranges)
    return promoted * 100 >= state.surge_arrivals * state.policy.surge_human_percent


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
            if not looked_human(state):  # a raid: its first texts are not paid, but for
                # those of the quiet minutes after it (the raid's stragglers aside, one
                # minute): they came at a normal rate (genuine pests who texted once just
                # after the raid) and are released as any.
                quiet_from = (surge.last_surge_minute + 1 + RAID_STRAGGLER_MINUTES) * MINUTE_MS
                for item in state.queue.items:
                    if item.priority_key > RANGE_DEBT_LEVELS and item.enqueued_at < quiet_from:
                        seq += 1
                        out.append(_expired(state, item, RAID, seq, now))
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
            out.append(_expired(state, item, BUDGET_EXHAUSTED if broke else TTL, seq, now))
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
    if command.reason == FLOODER:
        return [_expired(state, item, FLOODER, state.seq + 1, command.occurred_at)]
    if command.reason == TEXTED_AGAIN and item.priority_key > RANGE_DEBT_LEVELS:
        return [ReplyPromoted(
            message_id=item.message_id, campaign_id=state.campaign_id,
            sender=state.queued.get(item.message_id, ("", ""))[0],
            priority=item.priority_key - RANGE_DEBT_LEVELS - 1, seq=state.seq + 1,
            occurred_at=command.occurred_at, policy_version=state.policy.version)]
    return []
