"""The decide stage: ``decide_replies`` feeds reply-requests (RequestReply, SettleReply,
Tick) in batches to the campaign shards (Ray), journals their decisions (acked), and sends
a SendReply to sms-outbound for each approval; ``tick_campaigns`` (leader timer) brings the
clock to every campaign. A deferred request's sealed reply-to waits in
``deferred_reply_to_by_campaign`` (what it becomes: ``streams.rules.approvals.hold_deferred``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faust

from schemas import codec
from schemas.commands import RequestReply, ReviewRequest, SettleReply, Tick
from schemas.events import ReplyApproved, ReplyFailed
from schemas.reasons import REPLY_TO_LOST
from streams.rules.approvals import hold_deferred, send_command
from streams.rules.pipeline import outcome_note, refund, tick
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


def deferred_reply_to_table(app: faust.App, partitions: int) -> Any:
    """The sealed reply-to of each deferred request, per campaign ({message id: sealed}),
    from ReplyDeferred until its release or expiry; never journaled. Keyed by campaign like
    reply-requests, with the producer's partitioner, so a campaign's entry is in the same
    partition number as its requests and lives with the worker that decides them."""
    return app.Table(
        "deferred_reply_to_by_campaign", default=None, partitions=partitions,
        key_type=str, use_partitioner=True,
    )


def register_decide(rt: Runtime) -> None:
    settings = rt.settings

    @rt.app.timer(interval=settings.tick_interval_s, on_leader=True)
    async def tick_campaigns() -> None:
        # The clock reaches the campaigns through their request partitions, in order with the
        # requests; what a tick releases or expires is journaled with the tick's time.
        now = rt.now_ms()
        for campaign_id in rt.campaigns:
            await rt.topics.requests.send(key=campaign_id.encode(),
                                          value=codec.encode(tick(campaign_id, now)))

    @rt.app.agent(rt.topics.requests)
    async def decide_replies(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_window_s):
            admitted = await rt.in_order[rt.names["requests"]].admit(events)
            if admitted:
                await decide_batch(rt, admitted)


REQUEST_TYPES = (RequestReply, ReviewRequest, SettleReply, Tick)  # what reply-requests carries


async def decide_batch(rt: Runtime, admitted: Sequence[Any]) -> None:
    batch = [c for c in (rt.decode_or_skip("requests", e.value, REQUEST_TYPES)
                         for e in admitted) if c is not None]
    if not batch:
        return
    reply_to = {c.message_id: c.reply_to for c in batch if isinstance(c, RequestReply)}
    decisions = await rt.deciders.decide(batch)
    await rt.record(decisions, acked=True)
    rt.journaled(decisions)
    reply_to.update(store_deferred(rt.tables.deferred_reply_to, decisions, reply_to))
    notes: list[tuple[bytes, bytes]] = []
    sends: list[tuple[bytes, bytes]] = []
    for decision in decisions:
        note = outcome_note(decision)
        if note is not None:
            # Back to the sender's screening, keyed and partitioned like his texts: a request
            # ended without a reply (denied, expired, refunded) reopens him.
            notes.append((note.sender.encode(), codec.encode(note)))
        if isinstance(decision, ReplyApproved):
            send = send_command(decision, reply_to)
            if send is None:
                await reply_to_lost(rt, decision)
                continue
            sends.append((decision.campaign_id.encode(), codec.encode(send)))
    # Each topic's records in the order of the decisions (a campaign's sends in one
    # partition: one record batch).
    await rt.send_records(rt.names["inbound"], notes)
    await rt.send_records(rt.names["outbound"], sends)


async def reply_to_lost(rt: Runtime, decision: ReplyApproved) -> None:
    """A charged reply whose reply-to is gone (a released one whose table entry was lost)
    cannot be sent: it fails, journaled, and is refunded like any reply not sent."""
    log.error("approved reply %s has no reply-to any more: not sent, refunded",
              decision.message_id)
    now = rt.now_ms()
    await rt.record([ReplyFailed(
        message_id=decision.message_id, campaign_id=decision.campaign_id, sender=decision.sender,
        error="reply_to_lost: the sealed number is gone", retryable=False, occurred_at=now,
        attempts=0, reason=REPLY_TO_LOST,
    )], acked=True)
    await rt.settle(refund(decision, now))


def store_deferred(table: Any, decisions: Sequence[Any], reply_to: dict[str, str]
                   ) -> dict[str, str]:
    """Keep the reply-to of newly deferred requests in ``table``, drop those released or
    expired; returns the reply-to of the released ones."""
    held = hold_deferred(decisions, reply_to, table)
    for campaign_id, entry in held.entries.items():
        # Reassign (or delete): the changelog only sees values that are set.
        if entry:
            table[campaign_id] = entry
        elif table.get(campaign_id) is not None:
            del table[campaign_id]
    return held.released
