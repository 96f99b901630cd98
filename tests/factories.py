"""What many tests build, written once: the repository's root, a campaign, a request and its
decision, and the journal of the real core driven as the shells drive it (``journal_of``).
Each suite states its own defaults on top (``campaign(**fields)`` overrides any field)."""

from __future__ import annotations

import zlib
from pathlib import Path

from actors.campaign import decide_reply, evolve_campaign, initial_policy
from actors.shard import CampaignShard
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, CreditBudget, RequestReply, ScreenText, SettleReply, Tick
from schemas.events import (
    DeliveryReported,
    PolicyChanged,
    ReplyApproved,
    ReplyFailed,
    ReplySent,
    TextReceived,
)
from schemas.policy import apply_changes
from streams.rules import pipeline as glue
from streams.rules.screening import UNKNOWN_CAMPAIGN_POLICY, SenderState, decide_screening, evolve_sender

ROOT = Path(__file__).resolve().parents[1]

T0 = 1_508_112_000_000  # 2017-10-16 00:00 UTC: the stories' first day
HOUR = 3_600_000
DAY = 24 * HOUR


def campaign(cid: str = "paris", **fields) -> Campaign:
    """A French campaign on +33 6 44 63 00 01 with EUR 10 and a one-segment reply, open from
    the epoch for ever, pacing on (the defaults), its requests decided as they come (no
    safety delay: the flood stories have their own); ``fields``: any other Campaign field."""
    return Campaign(**{
        "id": cid, "number": "33644630001", "reply_text": "Non.", "language": "fr",
        "country": "FR", "budget_micros": 10_000_000, "price_per_segment_micros": 80_000,
        "starts_at": 0, "ends_at": 2**53, "originator": "AntiRelou",
        "policy": (("reply_delay_ms", 0),), **fields})


REPLY = "Non, c'est non. Laissez-la tranquille."  # 1 GSM-7 segment


def story_campaign(cid="paris", budget=350_000, price=100_000, cooldown=None, reply=REPLY,
                   starts_at=T0, ends_at=T0 + 60 * DAY, pacing=False):
    """The audit stories' campaign: two months from T0, EUR 0.35, a reply of EUR 0.10."""
    return campaign(cid, number="3364463000" + str(len(cid) % 10), reply_text=reply,
                    budget_micros=budget, price_per_segment_micros=price, starts_at=starts_at,
                    ends_at=ends_at, cooldown_ms=cooldown, pacing=pacing)


REPLY_2017 = (
    "Bonjour. Ce numéro sert à tenir à distance les gens qui insistent. Par votre faute, une "
    "femme ne s'est pas sentie en sécurité. Non, c'est non : elle n'a pas à se justifier. Ne la "
    "contactez plus jamais. Ce message est automatique."
)


def campaign_2017(budget_micros=3_700_000_000, reply=REPLY_2017, cid="paris", **kw):
    """The 2017 campaign's reply and budget, for ever, pacing off unless asked (pacing has
    its own stories; the campaign's are about the budget)."""
    kw.setdefault("pacing", False)
    kw.setdefault("ends_at", 10**13)
    return campaign(cid, reply_text=reply, budget_micros=budget_micros, **kw)


def request(mid: str, at: int = 1_000, cid: str = "paris") -> RequestReply:
    """The campaign's request for message ``mid`` of sender ``s_x``."""
    return RequestReply(message_id=mid, campaign_id=cid, sender="s_x", occurred_at=at,
                        reply_to="sealed")


def decide(state, command, c):
    """The first decision of ``command``, applied to ``state``."""
    events = decide_reply(state, command, c)
    for e in events:
        evolve_campaign(state, e)
    return events[0]


def journal_of(steps, campaigns, *, partitions=3, batch=2, redeliver=(), fail=(), priced=None,
             refund=False):
    """The journal of the real core driven the way the shells drive it, as the reader sees it.

    ``steps``: ``(message_id, campaign_id, sender, occurred_at[, prefix])`` texts in arrival order (a
    repeated text is a redelivered webhook), operator commands (ChangePolicy, CreditBudget),
    or a RequestReply reaching the shard once more, late, or a clock Tick.
    ``redeliver``: message ids whose RequestReply reaches the shard twice; ``fail``: message
    ids whose reply the gateway refuses (then refunded when ``refund``, as the shells do
    now; journals from before refunds have none); ``priced``: message id -> the price
    a delivery report gives (then reconciled). The journal is keyed like the real one (sender, else
    campaign) over ``partitions`` partitions and read partition after partition.
    """
    shard = CampaignShard(campaigns)
    live = {c.id: initial_policy(c) for c in campaigns}
    senders: dict[str, SenderState] = {}
    parts: list[list] = [[] for _ in range(partitions)]
    pending: list[RequestReply | SettleReply] = []
    sent: set[str] = set()
    priced = priced or {}

    def record(events):
        for e in events:
            key = getattr(e, "sender", None) or e.campaign_id
            parts[zlib.crc32(key.encode()) % partitions].append(e)

    settle: list[SettleReply] = []

    def flush():
        decisions = shard.decide(pending)
        record(decisions)
        for d in decisions:
            if isinstance(d, ReplyApproved) and d.message_id not in sent:
                sent.add(d.message_id)
                if d.message_id in fail:
                    record([ReplyFailed(message_id=d.message_id, campaign_id=d.campaign_id, sender=d.sender,
                                        error="GatewayRejected: no", retryable=False,
                                        occurred_at=d.occurred_at + 5_000, attempts=1,
                                        reason="provider_rejected")])
                    if refund:
                        settle.append(glue.refund(d, d.occurred_at + 5_000))
                else:
                    record([ReplySent(message_id=d.message_id, campaign_id=d.campaign_id, sender=d.sender,
                                      provider_message_id="mb-" + d.message_id, price_micros=None,
                                      dry_run=True, occurred_at=d.occurred_at + 5_000)])
                    if d.message_id in priced:
                        price = priced[d.message_id]
                        record([DeliveryReported(message_id=d.message_id, campaign_id=d.campaign_id,
                                                 sender=d.sender, provider_message_id="mb-" + d.message_id,
                                                 status="delivered", status_reason=None, error_code=None,
                                                 price_micros=price, currency="EUR",
                                                 occurred_at=d.occurred_at + 9_000)])
                        settle.append(glue.priced(d, price, d.occurred_at + 9_000))
        pending.clear()
        pending.extend(settle)  # settlements reach the shard with the next batch
        settle.clear()

    for step in steps:
        if isinstance(step, RequestReply | Tick):
            pending.append(step)
            continue
        if isinstance(step, ChangePolicy | CreditBudget):
            flush()
            outcomes = shard.control([step])
            record(outcomes)
            for e in outcomes:
                if isinstance(e, PolicyChanged):
                    live[e.campaign_id] = apply_changes(live[e.campaign_id], e.changes, e.version)
            continue
        mid, cid, sender, at, *rest = step  # (..., prefix[, body]): a classified mobile number
        facts = (dict(number_kind="mobile", country="FR", prefix=rest[0]) if rest
                 else dict(number_kind="unknown", country=None, prefix=""))
        body = rest[1] if len(rest) > 1 else "salut"
        policy = live.get(cid, UNKNOWN_CAMPAIGN_POLICY)
        state = senders.setdefault(sender, SenderState())
        text = dict(message_id=mid, campaign_id=cid, sender=sender, body=body, occurred_at=at)
        screened = decide_screening(state, ScreenText(**text, reply_to="sealed", **facts), policy)
        for e in screened:
            evolve_sender(state, e, policy)
        record([TextReceived(**text, **facts), *screened])
        if screened[0].verdict == "forward":
            request = glue.request_for(screened[0], facts["prefix"], "sealed")
            pending.append(request)
            if mid in redeliver:
                pending.append(request)
            if len(pending) >= batch:
                flush()
    flush()
    flush()  # the last settlements
    return [e for part in parts for e in part]
