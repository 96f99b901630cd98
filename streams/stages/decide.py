"""The decide stage: ``decide_replies`` feeds reply-requests (RequestReply, SettleReply,
Tick) in batches to the campaign shards (Ray), journals their decisions (acked), and sends
a SendReply to sms-outbound for each approval; ``tick_campaigns`` (leader timer) brings the
clock to every campaign. A deferred request's sealed reply-to waits in
``deferred_reply_to_by_campaign``, one entry per request (what it becomes:
``streams.rules.approvals.hold_deferred``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import faust

from infra.privacy import PrivacyError
from schemas import codec
from schemas.commands import RequestReply, ReviewRequest, SendReply, SettleReply, Tick
from schemas.events import RecordPoisoned, ReplyApproved, ReplyFailed
from schemas.reasons import REPLY_TO_LOST, REPLY_TO_UNVERIFIED
from streams.rules.approvals import Held, hold_deferred, send_command
from streams.rules.pipeline import outcome_note, refund, tick
from streams.stages.failures import BatchRunner
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


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

    async def reopen_poisoned(event: Any, fact: RecordPoisoned) -> None:
        # A request passed over: its sender is told, as for a request denied, so he is
        # not left awaiting (and is answered on a later text).
        note = outcome_note(fact)
        if note is not None:
            await rt.acknowledged(rt.produce(rt.topics.inbound, note.sender.encode(),
                                             codec.encode(note)))

    runner = BatchRunner(rt, "decide", "requests", on_poison=reopen_poisoned)

    async def handle(admitted: Sequence[Any]) -> None:
        await decide_batch(rt, admitted)

    @rt.app.agent(rt.topics.requests)
    async def decide_replies(stream: faust.StreamT) -> None:
        # Never raises: a batch that fails is fetched again (streams/stages/failures.py),
        # and the shard answers its commands again with the same events (actors/remote.py).
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_window_s):
            await runner.run(await rt.in_order[rt.names["requests"]].admit(events), handle)


REQUEST_TYPES = (RequestReply, ReviewRequest, SettleReply, Tick)  # what reply-requests carries


async def decide_batch(rt: Runtime, admitted: Sequence[Any]) -> None:
    decoded = [(c, e) for c, e in ((rt.decode_or_skip("requests", e.value, REQUEST_TYPES), e)
                                   for e in admitted) if c is not None]
    if not decoded:
        return
    batch = [c for c, _ in decoded]
    reply_to = {c.message_id: c.reply_to for c in batch if isinstance(c, RequestReply)}
    # reply-requests is keyed by campaign: a campaign's requests are in one partition.
    partition_of = {c.campaign_id: e.message.partition for c, e in decoded}
    decisions = await rt.deciders.decide(batch)
    await rt.record(decisions, acked=True)
    for decision in decisions:  # a version screening lacks is repaired (stages.control)
        rt.saw_policy(decision.campaign_id, getattr(decision, "policy_version", 0))
    table = rt.tables.deferred_reply_to
    held = hold_deferred(decisions, reply_to, table)
    await keep_deferred(table, held, partition_of)
    reply_to.update(held.released)
    notes: list[tuple[bytes, bytes]] = []
    sends: list[tuple[bytes, bytes]] = []
    lost: list[tuple[ReplyApproved, str]] = []
    for decision in decisions:
        note = outcome_note(decision)
        if note is not None:
            # Back to the sender's screening, keyed and partitioned like his texts: a request
            # ended without a reply (denied, expired, refunded) reopens him.
            notes.append((note.sender.encode(), codec.encode(note)))
        if isinstance(decision, ReplyApproved):
            send = send_command(decision, reply_to)
            if send is None:
                lost.append((decision, REPLY_TO_LOST))
                continue
            send = for_approved(rt, send)
            if send is None:
                lost.append((decision, REPLY_TO_UNVERIFIED))
                continue
            sends.append((decision.campaign_id.encode(), codec.encode(send)))
    # Each topic's records in the order of the decisions (a campaign's sends in one
    # partition: one record batch).
    await rt.send_records(rt.names["inbound"], notes)
    await rt.send_records(rt.names["outbound"], sends)
    # A reply that cannot be sent fails only once the others' sends are written: a batch
    # failing before this point is asked again and journals it once, not once per attempt.
    for decision, reason in lost:
        await reply_to_lost(rt, decision, reason)
    # Only now, once every send is written, are the released reply-tos dropped and the
    # decisions called journaled to the shards: a batch failing before this point is
    # asked again and gets the same answer (actors/remote.py), its releases still held.
    await drop_deferred(table, held, partition_of)
    rt.journaled(decisions)


def for_approved(rt: Runtime, send: SendReply) -> SendReply | None:
    """``send`` with its reply-to sealed for this approval (infra/privacy.py
    ``reseal_for_reply``): the send stage opens nothing else, so a request's token copied
    into sms-outbound sends nothing. None if the request's token does not open (it was not
    sealed for this campaign and sender: not this deployment's)."""
    try:
        return replace(send, reply_to=rt.privacy.reseal_for_reply(
            send.reply_to, campaign_id=send.campaign_id, sender=send.sender,
            message_id=send.message_id))
    except PrivacyError:
        return None


async def reply_to_lost(rt: Runtime, decision: ReplyApproved, reason: str) -> None:
    """A charged reply whose reply-to is gone (``REPLY_TO_LOST``: a released one whose
    table entry was lost) or does not open in its record (``REPLY_TO_UNVERIFIED``) cannot be
    sent: it fails, journaled, and is refunded like any reply not sent."""
    log.error("approved reply %s has no usable reply-to (%s): not sent, refunded",
              decision.message_id, reason)
    error = ("reply_to_lost: the sealed number is gone" if reason == REPLY_TO_LOST
             else "reply_to_unverified: the sealed number is not this request's")
    now = rt.now_ms()
    await rt.record([ReplyFailed(
        message_id=decision.message_id, campaign_id=decision.campaign_id, sender=decision.sender,
        error=error, retryable=False, occurred_at=now, attempts=0, reason=reason,
    )], acked=True)
    await rt.settle(refund(decision, now))


async def keep_deferred(table: Any, held: Held, partition_of: dict[str, int]) -> None:
    """Keep the reply-to of newly deferred requests in ``table``, one entry each in the
    partition of its campaign's requests (``partition_of``)."""
    await table.put_many([(mid, sealed, partition_of[cid])
                          for mid, (cid, sealed) in held.keep.items()])


async def drop_deferred(table: Any, held: Held, partition_of: dict[str, int]) -> None:
    """Drop the reply-tos of the requests released or expired (their sends written), and
    the first layout's entries changed. The changelog only sees values that are set:
    deleted as None."""
    await table.put_many([(mid, None, partition_of[cid]) for mid, cid in held.drop.items()])
    for campaign_id, entry in held.legacy.items():
        if entry:
            table[campaign_id] = entry
        else:
            del table[campaign_id]
