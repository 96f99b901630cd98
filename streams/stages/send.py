"""The send stage: ``send_replies`` takes SendReply batches from sms-outbound and sends each
reply through the SMS gateway (MessageBird or the dry run), at most once per approved
request across crashes (the rule: ``streams.rules.sendstate``), journaling ReplyAttempted,
ReplySent / ReplyFailed / ReplyUncertain; a failed reply's cost is settled (refunded)."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from infra.faust.batches import BatchWorkers
from infra.faust.seenorder import SeenOrder
from infra.faust.send_guard import JournalIndex, RecentOutcomes
from infra.gateway import SendResult
from infra.sending import GroupCommit, deliver
from schemas import codec
from schemas.codec import CodecError
from schemas.commands import SendReply, SettleReply
from schemas.events import ReplyAttempted, ReplyFailed, ReplySent, ReplyUncertain
from schemas.reasons import CRASH_DURING_SEND
from streams.rules import sendstate
from streams.rules.pipeline import refund
from streams.settings import STATUS_PATH
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


def register_send(rt: Runtime) -> None:
    sender = ReplySender(rt)
    name = rt.names["outbound"]

    async def first_offset(tp: Any) -> int | None:
        return await rt.start_offset(tp)

    async def seek_back(tp: Any, offset: int) -> None:
        await rt.app.consumer.seek(tp, offset)

    # In rt.in_order: reset on each rebalance, its holes counted on /health.
    guard = rt.in_order[name] = SeenOrder(name, first_offset, seek_back)  # type: ignore[assignment]

    @rt.app.on_before_shutdown.connect
    async def on_shutdown_stop_sending(app: faust.App, **kwargs: Any) -> None:
        sender.pool.shutdown(wait=False, cancel_futures=True)

    async def fetch_again(batch: Sequence[Any], exc: BaseException) -> None:
        # Not acknowledged: each partition of the batch is read again from its first
        # offset (what comes twice is sent at most once: streams.rules.sendstate).
        # The error's type only: its text is not ours to vouch for (no number in a log).
        log.error("a batch of %d repl(ies) failed (%s); fetching it again", len(batch),
                  type(exc).__name__)
        await asyncio.sleep(1.0)  # not a hot loop while the broker is away
        first: dict[Any, int] = {}
        for event in batch:
            tp, offset = event.message.tp, event.message.offset
            first[tp] = min(offset, first.get(tp, offset))
        for tp, offset in first.items():
            await seek_back(tp, offset)

    @rt.app.agent(rt.topics.outbound)
    async def send_replies(stream: faust.StreamT) -> None:
        # One actor takes the records; send_batches batches run at once (infra/faust/batches.py:
        # a busy batch holds no record). One acknowledged round trip for a batch's
        # attempts, one call per reply in the send pool, outcomes journaled together
        # (GroupCommit). A batch's records are acknowledged to Kafka only once every reply
        # of it has its outcome stored, so a crash redelivers them (and the table turns
        # "attempting" into uncertain).
        # Each record as it leaves the agent's queue, in offset order (infra/faust/seenorder.py).
        stream.add_processor(lambda value: (guard.see(stream.current_event), value)[1])
        settings = rt.settings
        workers = BatchWorkers(
            sender.send_batch, stream.ack, workers=settings.send_batches,
            size=settings.send_batch_size, window=settings.send_batch_window_s,
            on_failure=fetch_again)
        stream.enable_acks = False  # acknowledged by the batch that handled the record
        try:
            async for event in stream.events():
                await workers.put(event)
        finally:
            await workers.stop()


class ReplySender:
    """The reply stage's state: its thread pool, the replies being sent by this worker,
    and the group commit of their journal events."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.replies_by_message = rt.tables.replies_by_message
        # Sends run in a pool of their own, as many threads as calls may be under way
        # (send_concurrency): asyncio's default pool has min(32, cores + 4) threads and is
        # shared with anything else that runs in a thread.
        self.pool = ThreadPoolExecutor(rt.settings.send_concurrency,
                                       thread_name_prefix="antirelou-send")
        self.slots = asyncio.Semaphore(rt.settings.send_concurrency)
        self.jitter = random.Random()  # one for all replies: a new Random() per reply seeds
                                       # itself from os.urandom (2% of the worker in py-spy)
        self.in_flight: set[str] = set()
        self.journal = GroupCommit(self.store_events)
        # A reply with no mark whose record is older than this worker or than `up`'s
        # broker's last restart may have lost its mark: asked of this worker's memory and
        # the journal before it is sent (infra/faust/send_guard.py).
        self.started_ms = rt.now_ms()
        self.recent = RecentOutcomes()
        self.journal_index = JournalIndex(rt.settings.kafka, rt.names["journal"])

    def suspect_before_ms(self) -> int:
        status = self.rt.broker_status()
        back = status.back_at if status is not None and status.back_at else 0
        return max(self.started_ms, int(back * 1000))

    async def marks_lost(self, batch: Sequence[Any]) -> dict[str, str]:
        """What memory and the journal know of the batch's suspect replies (no mark)."""
        boundary = self.suspect_before_ms()
        known: dict[str, str] = {}
        ask: dict[str, int] = {}
        for event in batch:
            at = int((event.message.timestamp or 0) * 1000)
            if at >= boundary:
                continue
            try:
                mid = codec.decode(event.value).message_id
            except (CodecError, TypeError, AttributeError):
                continue  # a bad record: the batch's decode skips and counts it
            if self.replies_by_message.get(mid) is not None or mid in self.in_flight:
                continue
            mark = self.recent.get(mid)
            if mark is not None:
                known[mid] = mark
            else:
                ask[mid] = at
        if ask:
            # From the record's time, less a margin for clocks: its attempt came after it.
            known.update(await self.journal_index.lookup(ask, min(ask.values()) - 60_000))
        return known

    async def store_events(self, events: list[Any], flush: bool) -> None:
        await self.rt.record(events, acked=True)
        if flush:  # the table's "attempting" values are stored too
            await self.rt.app.producer.flush()

    async def send_batch(self, batch: Sequence[Any]) -> None:
        # At most once per approved request, across crashes (streams.rules.sendstate). Check and
        # mark have no await between them: no race between the agent's concurrent actors,
        # nor between copies within one batch.
        rt, table = self.rt, self.replies_by_message
        fresh: list[SendReply] = []
        event_of: dict[str, Any] = {}
        noted: list[Any] = []
        settles: list[SettleReply] = []
        lost = await self.marks_lost(batch)  # before the loop: no await from check to mark
        for event in batch:
            command = rt.decode_or_skip("outbound", event.value, (SendReply,))
            if command is None:
                continue
            mid = command.message_id
            where = table.get(mid)
            if where is None and mid in lost and mid not in self.in_flight:
                where = lost.pop(mid)
                log.warning("reply %s: its mark was lost (broker or changelog); the %s says "
                            "%s: not sent again blindly", mid, "worker" if self.recent.get(mid)
                            else "journal", where)
                table.put(mid, where, event.message.partition)
            step = sendstate.next_step(where, mid in self.in_flight)
            mark = sendstate.MARK_OF_STEP[step]
            if mark is not None:
                table.put(mid, mark, event.message.partition)
                self.recent.put(mid, mark)
            if step == sendstate.SEND:
                self.in_flight.add(mid)
                fresh.append(command)
                event_of[mid] = event
            elif step == sendstate.DROP:
                log.info("reply %s is being sent; this copy is dropped", mid)
            elif step == sendstate.MARK_UNCERTAIN:
                log.warning("reply %s: a send was under way when the worker stopped; "
                            "marked uncertain, not sent again", mid)
                noted.append(ReplyUncertain(message_id=mid, campaign_id=command.campaign_id,
                                            sender=command.sender, reason=CRASH_DURING_SEND,
                                            occurred_at=rt.now_ms()))
            elif step == sendstate.SETTLE_AGAIN:
                settles.append(refund(command, rt.now_ms()))
            else:
                log.info("reply %s already %s; not sent again", mid, where)
        try:
            # The whole batch's attempts (and the table's "attempting") in one acknowledged
            # round trip and one flush, before the first call.
            at = rt.now_ms()
            if fresh or noted:
                try:
                    await self.journal.write(
                        [*noted, *(ReplyAttempted(
                            message_id=c.message_id, campaign_id=c.campaign_id, sender=c.sender, attempt=1,
                            occurred_at=at,
                        ) for c in fresh)], flush=True)
                except Exception:
                    # No call was made: the marks go, and the batch fetched again sends
                    # these replies (instead of finding "attempting": uncertain, unsent).
                    for c in fresh:
                        table.remove(c.message_id, event_of[c.message_id].message.partition)
                        self.recent.forget(c.message_id)
                    raise
            # Then every call at once (bounded by the slots); a reply being retried holds
            # up only itself, and the batch until its outcome is stored.
            outcomes = await asyncio.gather(*(self.send_one(c, event_of[c.message_id])
                                              for c in fresh), return_exceptions=True)
        finally:
            self.in_flight.difference_update(c.message_id for c in fresh)
        for command_ in settles:
            await rt.settle(command_)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:  # e.g. the broker went away: the agent stops, the batch is redelivered
            raise errors[0]

    async def send_one(self, command: SendReply, event: Any) -> str:
        """Send one reply whose first ReplyAttempted is stored (retried, behind the breaker);
        journal its outcome, then store it in the table (flushed); return it."""
        rt, mid = self.rt, command.message_id
        settings = rt.settings
        campaign = rt.campaigns[command.campaign_id]
        report_url = (f"{settings.report_base_url.rstrip('/')}{STATUS_PATH}"
                      f"?campaign={campaign.id}" if settings.report_base_url else None)

        async def attempt(n: int) -> None:
            if n > 1:  # the first one was journaled with the batch, before any call
                await self.journal.write(
                    [ReplyAttempted(message_id=mid, campaign_id=command.campaign_id, sender=command.sender,
                                    attempt=n, occurred_at=rt.now_ms())])

        def call() -> Awaitable[SendResult]:
            return asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(
                rt.gateway_for(campaign.id).send, originator=campaign.originator,
                recipient=rt.privacy.open(command.reply_to, campaign_id=command.campaign_id,
                                          sender=command.sender), body=campaign.reply_text,
                reference=mid, report_url=report_url, scheduled_at=command.send_at,
            ))

        outcome = await deliver(call, attempt, retry=settings.retry, breaker=rt.breaker,
                                rng=self.jitter, slots=self.slots)
        await self.journal_outcome(command, outcome)
        # The outcome replaces "attempting", stored at once (the flush is shared with the
        # other replies finishing now): a copy redelivered after a crash then finds it.
        self.replies_by_message.put(mid, outcome.kind, event.message.partition)
        self.recent.put(mid, outcome.kind)
        await self.journal.write([], flush=True)
        return outcome.kind

    async def journal_outcome(self, command: SendReply, outcome: Any) -> None:
        rt, mid = self.rt, command.message_id
        common = dict(message_id=mid, campaign_id=command.campaign_id, sender=command.sender)
        if outcome.kind == sendstate.SENT:
            result = outcome.result
            assert result is not None
            await self.journal.write([ReplySent(
                **common, provider_message_id=result.provider_message_id,
                price_micros=result.price_micros, dry_run=result.dry_run,
                occurred_at=rt.now_ms())])
        elif outcome.kind == sendstate.FAILED:
            log.warning("reply %s not sent after %d attempt(s): %s", mid, outcome.attempts,
                        outcome.error)
            await self.journal.write([ReplyFailed(
                **common, error=f"{type(outcome.error).__name__}: {outcome.error}",
                retryable=outcome.retryable, occurred_at=rt.now_ms(),
                attempts=outcome.attempts, reason=outcome.reason)])
            await rt.settle(refund(command, rt.now_ms()))
        else:
            log.warning("reply %s may or may not have been sent (%s); not sent again", mid,
                        outcome.reason)
            await self.journal.write([ReplyUncertain(
                **common, reason=outcome.reason, occurred_at=rt.now_ms())])
