"""The campaign's decisions: pure functions of the state and one command.

``decide_reply(state, request, campaign)``: a request is denied at once when it cannot be
paid (not started, ended, its number range over its rate, the budget or the reserve), when
its sender texted another campaign of the deployment within a day (``other_campaign``) or
when its words are a raid's already (``raid_words``, ``actors.evidence``). Otherwise it waits
in the queue for the **safety delay** (``reply_delay_ms``; during a surge at least
``surge_watch_ms``): ``ReplyDeferred`` with ``hold_until``. With no delay and no surge it is
approved as it comes, within the allowance.

``decide_tick(state, tick, campaign)``: at the tick's time, a surge ends after its quiet
minutes; requests past the TTL expire; each request whose delay is over is **judged once**
(``judge``) on what the events show by then:

- its words (or a later text's) are a raid's: ``ReplyExpired(raid_words)``;
- it arrived in a spike (a surge's cohort): ``ReplyHeldBack`` with the evidence and a rank
  (the smaller its minute's excess over the baseline, then its range's debt, first; a fixed
  hash of the message id among equals, so neither arrival order nor texting again, which a
  troll can fake, decides);
- otherwise it is clean: paid now (``ReplyApproved``, ``deferred_at`` set) as the budget,
  the reserve and the allowance allow, or it waits for them.

Held-back requests are then released best first while the surge has spent less than its
bound (``SurgeStarted.spend_cap_micros``: ``surge_spend_percent`` of the allowance at its
start, the surges of one TTL sharing one bound), the allowance allows and
``surge_release_per_minute`` (0: no limit) allows; what is still there at the TTL expires.
No single end-of-surge verdict decides the queue: each request is decided by its own
evidence, and the bound caps what a surge can cost when its arrivals cannot be told from
people (a raid that mimics pests costs at most the bound).

``decide_review``: what screening learned of a queued request's sender: a flooder, or one who
texted another campaign, is expired; one who texted again at a human pace is
``ReplyPromoted`` (journaled evidence, with the later text's words: a pest's "allo ?" may
be a raid's too, so they do not condemn his request).

``decide_settlement`` (refund or price an approved reply) and ``decide_control`` (operator
commands). No clock, no randomness, no I/O: time is the command's ``occurred_at``, money
integer micro-euros, the policy part of the state. Each event carries the next ``seq``.
"""

from __future__ import annotations

from actors.evidence import (
    BASELINE_MINUTES,
    MINUTE_MS,
    REF_UNIT,
    Cohorts,
    WordStats,
    baseline_sum,
    cohort_of,
    in_raid,
    is_pasted,
    is_spike,
    marked,
    observe,
    raid_start,
    roll,
    surge_transition,
    words_as_of,
)
from actors.gcra import Gcra, gcra_check
from actors.pacing import AllowanceState, allowance_spend, allowance_view
from actors.queue import Waiting
from actors.state import (
    CampaignState,
    ControlOutcome,
    Decision,
    Settlement,
    allowance_refusal,
    reply_cost,
    settlement_key,
    surge_of,
    surges_from,
)
from actors.words import is_body_key
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
    ReplyHeldBack,
    ReplyPromoted,
    ReplyRefunded,
    SurgeEnded,
    SurgeStarted,
)
from schemas.policy import Policy, apply_changes, check_changes, policy_problem
from schemas.reasons import (
    BUDGET_EXHAUSTED,
    ENDED,
    FLOODER,
    NOT_STARTED,
    OTHER_CAMPAIGN,
    PREFIX_FLOOD,
    QUEUE_FULL,
    RAID_WORDS,
    RESERVE_REACHED,
    TEXTED_AGAIN,
    TTL,
)

# A delivery report's price is charged up to this multiple of the reply's estimated cost
# (more parts than estimated, a price change), and never below the reserve; the rest of it
# is journaled (``reported_micros``), counted, and taken from the allowance.
PRICE_CAP_FACTOR = 3
# Ranges whose first texts come faster than one per RANGE_PERIOD_MS (after a burst of
# RANGE_BURST) carry a debt; among held-back requests, one from an indebted range ranks
# behind (SIM-rotating trolls share a few ranges). The debt decays by itself.
RANGE_PERIOD_MS = 10 * MINUTE_MS
RANGE_BURST = 3
RANGE_DEBT_LEVELS = 99
# A held-back request's rank (``held_rank``): its kind, then whether its body stands out as
# pasted, then its minute's excess (in powers of two), then its range's debt.
PASTE_LEVELS = 2
EXCESS_LEVELS = 64
HELD_KIND_UNIT = PASTE_LEVELS * EXCESS_LEVELS * (RANGE_DEBT_LEVELS + 1)
# A held-back request that arrived in a raid's minute is one of its people only up to this
# multiple of the baseline's rate of first texts a minute: so many are released at most.
RAID_MINUTE_PEOPLE = 2
PRE_RAID_MINUTES = 5
RAID_HIDDEN_PERCENT = 30
# Releases in one tick at most, and requests judged: a tick's events stay a bounded batch.
MAX_RELEASES_PER_TICK = 1_000
MAX_JUDGED_PER_TICK = 5_000

CLEAN, DOUBTFUL, RAID = "clean", "doubtful", "raid"


def range_rate(policy: Policy) -> tuple[int, int]:
    """(period, burst) of a number range's first texts: the per-prefix limit's when it is
    on, else the ranking's own."""
    if policy.prefix_burst > 0:
        return policy.prefix_period_ms, policy.prefix_burst
    return RANGE_PERIOD_MS, RANGE_BURST


def range_debt(state: CampaignState, prefix: str, now: int) -> int:
    """First texts of the range ``prefix`` above its schedule at ``now`` (0: on schedule)."""
    if not prefix:
        return 0
    period, _ = range_rate(state.policy)
    return min(RANGE_DEBT_LEVELS, max(0, state.prefix_tat.get(prefix, 0) - now) // period)


def prefix_within_rate(state: CampaignState, prefix: str, now: int) -> bool:
    """Whether one more first text from the number range ``prefix`` at ``now`` is within the
    policy's per-prefix rate (always, when the limit is off or the range unknown)."""
    policy = state.policy
    if policy.prefix_burst < 1 or not prefix:
        return True
    allowed, _ = gcra_check(Gcra(state.prefix_tat.get(prefix, 0)), now,
                            policy.prefix_period_ms, policy.prefix_burst)
    return allowed


def spend_cap(state: CampaignState, now: int) -> int:
    """A surge's bound on held-back requests: the surges of one TTL share one bound,
    ``surge_spend_percent`` % of the allowance (of the spendable balance with pacing off)
    as it was before they spent: what the surges begun within the TTL before ``now`` have
    spent comes off the new one's. A raid sent in waves, a surge each, took half of what
    was left at each wave (three waves: seven eighths), and the pests after it starved."""
    policy = state.policy
    spendable = max(0, state.balance_micros - policy.reserve_micros)
    if policy.pacing:
        spendable = allowance_view(state.pacing, state.balance_micros, policy.reserve_micros,
                                   policy.burst_percent, now, state.ends_at)[0]
    since = surges_from(state, now)
    spent = sum(s[2] for s in state.surges if s[0] >= since)
    return max(0, (spendable + spent) * policy.surge_spend_percent // 100 - spent)


# --- requests --------------------------------------------------------------------------


def decide_reply(state: CampaignState, command: RequestReply, campaign: Campaign) -> list[Decision]:
    """The decision on one request, then (when the request changes the surge) its
    ``SurgeStarted`` / ``SurgeEnded``; a request decided before gets its first decision."""
    earlier = state.decided.get(command.message_id)
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    policy = state.policy
    cost = reply_cost(campaign, policy)
    now = command.occurred_at
    balance = state.balance_micros
    reason: str | None = None
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
    elif command.other_campaigns > 0:
        reason = OTHER_CAMPAIGN
    elif marked(words_as_of(state.words, now), command.words, now // MINUTE_MS,
                command.texts_from_sender > 1):
        reason = RAID_WORDS
    spike = surging = False
    transition = None
    if policy.surge_multiple > 0 or state.cohorts.active:
        # The cohorts as they will be once this first text is counted (evolve does it).
        cohorts = state.cohorts.copy()
        observe(cohorts, now, policy, reason == RAID_WORDS)
        transition = surge_transition(cohorts, policy)
        surging = (cohorts.active and transition is None) or transition == "enter"
        spike = is_spike(cohorts.count, baseline_sum(cohorts.history, policy.surge_expected_per_minute),
                         policy)
    out: list[Decision] = []
    if reason is None:
        hold = max(policy.reply_delay_ms, policy.surge_watch_ms) if surging else policy.reply_delay_ms
        if hold > 0 or surging:
            reason = _defer(state, command, policy, now + hold, spike, out)
        elif policy.pacing and (paced := allowance_refusal(state, cost.cost_micros, now)):
            reason = paced  # ALLOWANCE
        else:
            out.append(ReplyApproved(
                message_id=command.message_id, campaign_id=campaign.id, sender=command.sender,
                segments=cost.segments, encoding=cost.encoding, cost_micros=cost.cost_micros,
                balance_after_micros=balance - cost.cost_micros, seq=state.seq + 1,
                occurred_at=now, policy_version=policy.version, prefix=command.prefix,
                send_at=now, deferred_at=None, words=command.words,
                texts_from_sender=command.texts_from_sender))
    if reason is not None:
        out.insert(0, ReplyDenied(
            message_id=command.message_id, campaign_id=campaign.id, sender=command.sender,
            reason=reason, cost_micros=cost.cost_micros, balance_after_micros=balance,
            seq=state.seq + 1, occurred_at=now, policy_version=policy.version,
            prefix=command.prefix, words=command.words,
            texts_from_sender=command.texts_from_sender))
    if transition is not None:
        out.append(_surge_event(transition, cohorts, state, now, state.seq + len(out) + 1))
    return out


def _defer(state: CampaignState, command: RequestReply, policy: Policy, hold_until: int,
           spike: bool, out: list[Decision]) -> str | None:
    """Queue the request (appending its events to ``out``), or the reason it cannot be. A
    full queue makes room for a request of a calm minute by pushing out its worst held-back
    one; a request of a spike is refused."""
    queue = state.queue
    evicted = None
    if len(queue) >= policy.surge_queue:
        evicted = queue.worst_held()
        if evicted is None or spike:
            return QUEUE_FULL
    seq = state.seq + 1
    out.append(ReplyDeferred(
        message_id=command.message_id, campaign_id=command.campaign_id, sender=command.sender,
        prefix=command.prefix, texts_from_sender=command.texts_from_sender,
        queued=len(queue) + (0 if evicted else 1), seq=seq, occurred_at=command.occurred_at,
        policy_version=policy.version,
        priority=range_debt(state, command.prefix, command.occurred_at),
        words=command.words, hold_until=hold_until))
    if evicted is not None:
        out.append(expired(state, evicted, QUEUE_FULL, seq + 1, command.occurred_at))
    return None


def _surge_event(transition: str, cohorts: Cohorts, state: CampaignState, now: int,
                 seq: int) -> SurgeStarted | SurgeEnded:
    policy = state.policy
    if transition == "enter":
        history = cohorts.history
        return SurgeStarted(
            campaign_id=state.campaign_id, first_texts=cohorts.count,
            baseline_texts=sum(history), baseline_minutes=len(history), seq=seq,
            occurred_at=now, policy_version=policy.version, spend_cap_micros=spend_cap(state, now))
    return SurgeEnded(campaign_id=state.campaign_id, queued=len(state.queue), seq=seq,
                      occurred_at=now, policy_version=policy.version)


def expired(state: CampaignState, item: Waiting, reason: str, seq: int, now: int) -> ReplyExpired:
    return ReplyExpired(
        message_id=item.message_id, campaign_id=state.campaign_id, sender=item.sender,
        reason=reason, deferred_at=item.enqueued_at, seq=seq, occurred_at=now,
        policy_version=state.policy.version)


# --- the clock -------------------------------------------------------------------------


def judge(state: CampaignState, item: Waiting, words: WordStats) -> tuple[str, int]:
    """``(verdict, excess %)`` of a request whose delay is over: ``RAID`` (its words are a
    raid's), ``DOUBTFUL`` (it arrived in a spike; the excess of its
    minute over the baseline in %), or ``CLEAN``."""
    if marked(words, item.words, item.enqueued_at // MINUTE_MS, item.again):
        return RAID, 0
    policy = state.policy
    count, base = cohort_of(state.cohorts, item.enqueued_at // MINUTE_MS,
                            policy.surge_expected_per_minute)
    if is_spike(count, base, policy):
        return DOUBTFUL, count * BASELINE_MINUTES * 100 // max(1, base)
    return CLEAN, 0


def held_rank(excess_percent: int, range_debt_: int, raid_minute: bool, words: str,
              stats: WordStats) -> int:
    """Smaller first: not a raid's minute; in a raid's minute, a text in words the campaign
    knew before (people write their own, in the campaign's vocabulary), then a text with
    words of its own, then one of common words only (what of a raid escapes its marks is
    its texts varied to the letter, "raid du 18-25 xd", and its pastes of common words,
    "lol", "allo ?"); then the minute's excess in powers of two, then the range's debt."""
    kind = 0
    if raid_minute:
        content = [w for w in words.split() if not is_body_key(w)]
        known = sum(1 for w in content if stats.ref.get(w, 0) >= REF_UNIT)
        kind = 1 if content and 2 * known >= len(content) else 2 if content else 3
    paste = int(is_pasted(words, stats))
    return (((kind * PASTE_LEVELS + paste) * EXCESS_LEVELS + excess_percent.bit_length())
            * (RANGE_DEBT_LEVELS + 1) + min(RANGE_DEBT_LEVELS, range_debt_))


def people_quota(state: CampaignState, minute: int, words: WordStats) -> int | None:
    """How many held-back requests of ``minute`` may be released: None (no limit but the
    surge's bound) unless a raid was found in it; then its people: RAID_MINUTE_PEOPLE x the
    people's rate before the raid (the baseline's, or the first texts a minute of the minutes
    just before it began if more: a launch the raid came into), or what the minute brought
    beyond the raid's requests refused for its words and the share of them that may have hid
    from the marks (RAID_HIDDEN_PERCENT more), if more (a raid in a crowd of people)."""
    first = raid_start(words, minute)
    if first is None:
        return None
    expected = state.policy.surge_expected_per_minute
    count, base = cohort_of(state.cohorts, minute, expected)
    before = [cohort_of(state.cohorts, m, expected)[0] for m in range(first - PRE_RAID_MINUTES, first)]
    rate = max(-(-base // BASELINE_MINUTES), -(-sum(before) // PRE_RAID_MINUTES), 1)
    refused = state.raid_refused.get(minute, 0)
    crowd = count - refused * (100 + RAID_HIDDEN_PERCENT) // 100
    return max(RAID_MINUTE_PEOPLE * rate, crowd)


def decide_tick(state: CampaignState, command: Tick, campaign: Campaign) -> list[Decision]:
    """At ``command.occurred_at``: end the surge if it is over; expire what is past the
    TTL; judge what is past its delay; release the held-back within the surge's bound.
    Nothing to do: no events (a tick leaves no trace)."""
    policy = state.policy
    now = command.occurred_at
    out: list[Decision] = []
    if state.cohorts.active:
        cohorts = state.cohorts.copy()
        roll(cohorts, now, policy)
        if surge_transition(cohorts, policy) == "leave":
            out.append(_surge_event("leave", cohorts, state, now, state.seq + 1))
    if len(state.queue):
        out += _tick_queue(state, campaign, now, state.seq + len(out))
    return out


class _Purse:
    """What the tick may still spend: the balance, the allowance and the surge's bound, as
    its releases take them (on copies: ``evolve`` applies the events)."""

    def __init__(self, state: CampaignState, cost: int, now: int, live: bool) -> None:
        self.state, self.cost, self.now, self.live = state, cost, now, live
        self.balance = state.balance_micros
        self.allowance = AllowanceState(state.pacing.tokens, state.pacing.at)
        # each surge's bound left, by its first minute: the tick's releases take from it
        self.surge_left = {s[0]: s[1] - s[2] for s in state.surges}
        self.release_tat = state.release_tat
        self.released = 0

    def broke(self) -> bool:
        policy = self.state.policy
        return self.cost > self.balance or self.balance - self.cost < policy.reserve_micros

    def can_pay(self) -> bool:
        state = self.state
        if not self.live or self.released >= MAX_RELEASES_PER_TICK or self.broke():
            return False
        return not (state.policy.pacing and allowance_refusal(
            state, self.cost, self.now, self.balance, self.allowance))

    def can_pay_held(self, surge: list[int] | None) -> bool:
        if surge is None or self.surge_left[surge[0]] < self.cost or not self.can_pay():
            return False
        rate = self.state.policy.surge_release_per_minute
        if rate:
            allowed, tat = gcra_check(Gcra(self.release_tat), self.now, MINUTE_MS // rate, rate)
            if not allowed:
                return False
            self.release_tat = tat
        return True

    def pay(self, surge: list[int] | None) -> int:
        policy = self.state.policy
        allowance_spend(self.allowance, self.cost, self.balance, policy.reserve_micros,
                        policy.burst_percent, self.now, self.state.ends_at)
        self.balance -= self.cost
        self.released += 1
        if surge is not None:
            self.surge_left[surge[0]] -= self.cost
        return self.balance


def _tick_queue(state: CampaignState, campaign: Campaign, now: int, seq: int) -> list[Decision]:
    policy = state.policy
    queue = state.queue
    cost = reply_cost(campaign, policy)
    purse = _Purse(state, cost.cost_micros, now, campaign.starts_at <= now < campaign.ends_at)
    words = words_as_of(state.words, now)
    out: list[Decision] = []

    def release(item: Waiting, surge: list[int] | None) -> None:
        nonlocal seq
        seq += 1
        out.append(ReplyApproved(
            message_id=item.message_id, campaign_id=campaign.id, sender=item.sender,
            segments=cost.segments, encoding=cost.encoding, cost_micros=cost.cost_micros,
            balance_after_micros=purse.pay(surge), seq=seq, occurred_at=now,
            policy_version=policy.version, prefix=item.prefix, send_at=now,
            deferred_at=item.enqueued_at))

    gone = set()
    oldest = now - policy.surge_ttl_ms
    for items in (queue.holding, queue.held):  # each in arrival order, near enough
        for item in items.values():
            if item.enqueued_at >= oldest:
                break
            seq += 1
            gone.add(item.message_id)
            out.append(expired(state, item, BUDGET_EXHAUSTED if purse.broke() else TTL, seq, now))
    judged = 0
    for item in queue.holding.values():
        if item.hold_until > now or judged >= MAX_JUDGED_PER_TICK:
            break
        if item.message_id in gone:
            continue
        judged += 1
        verdict, excess = judge(state, item, words)
        if verdict == RAID:
            seq += 1
            out.append(expired(state, item, RAID_WORDS, seq, now))
        elif verdict == DOUBTFUL:
            seq += 1
            raid_minute = in_raid(words, item.enqueued_at // MINUTE_MS)
            out.append(ReplyHeldBack(
                message_id=item.message_id, campaign_id=campaign.id, sender=item.sender,
                deferred_at=item.enqueued_at, excess_percent=excess, range_debt=item.range_debt,
                texted_again=item.texted_again, in_raid=raid_minute,
                rank=held_rank(excess, item.range_debt, raid_minute, item.words, words),
                seq=seq,
                occurred_at=now, policy_version=policy.version))
        elif purse.can_pay():
            release(item, None)
    released_of: dict[int, int] = {}  # this tick's, by arrival minute
    for _, _, message_id in queue.held_order:  # best first
        if message_id in gone:
            continue
        item = queue.held[message_id]
        minute = item.enqueued_at // MINUTE_MS
        if marked(words, item.words, minute, item.again):  # seen since
            seq += 1
            out.append(expired(state, item, RAID_WORDS, seq, now))
            continue
        quota = people_quota(state, minute, words)
        if quota is not None:
            if now < (minute + 1) * MINUTE_MS + policy.reply_delay_ms:
                continue  # its minute's people are chosen once the whole minute is judged
            done = state.held_released.get(minute, 0) + released_of.get(minute, 0)
            if done >= quota:
                continue  # the raid's minute has given its people; this one waits (TTL)
        surge = surge_of(state, minute)
        if not purse.can_pay_held(surge):
            if surge is not None and purse.surge_left[surge[0]] < purse.cost:
                continue  # its surge has spent its bound; an item of another may not have
            break
        release(item, surge)
        released_of[minute] = released_of.get(minute, 0) + 1
    return out


# --- screening's reviews ---------------------------------------------------------------


def decide_review(state: CampaignState, command: ReviewRequest) -> list[ReplyExpired | ReplyPromoted]:
    """What screening learned about the sender of a queued request: a flooder's, or one who
    texted another campaign, is not paid (``ReplyExpired``); one who texted again is
    ``ReplyPromoted`` once. A request not queued (decided already): nothing."""
    item = state.queue.get(command.message_id)
    if item is None:
        return []
    if command.reason in (FLOODER, OTHER_CAMPAIGN):
        return [expired(state, item, command.reason, state.seq + 1, command.occurred_at)]
    if command.reason == TEXTED_AGAIN and not item.texted_again:
        return [ReplyPromoted(
            message_id=item.message_id, campaign_id=state.campaign_id, sender=item.sender,
            priority=0, seq=state.seq + 1, occurred_at=command.occurred_at,
            policy_version=state.policy.version, words=command.words)]
    return []


# --- settlements and operators ----------------------------------------------------------


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


def decide_control(state: CampaignState, command: ControlCommand) -> list[ControlOutcome]:
    earlier = state.commands.get("cmd:" + command.command_id)
    if earlier is not None:
        return [earlier]  # type: ignore[list-item]
    if isinstance(command, ChangePolicy):
        problem = check_changes(command.changes) or policy_problem(
            apply_changes(state.policy, command.changes, state.policy.version + 1))
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
