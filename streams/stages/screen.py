"""The screening stage: ``screen_senders`` reads sms-received in batches, screens each text
on its sender's state (the pure core, ``streams.rules.screening``), journals TextReceived and the
verdict, and forwards a RequestReply to reply-requests. Also the offset-order guards
(``infra/faust/inorder.py``) of sms-received, reply-requests and control."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faust

from infra.faust.inorder import InOrder
from schemas import codec
from schemas.commands import NoteReplyOutcome, RequestReply, ReviewRequest, ScreenText
from schemas.events import TextReceived
from streams.rules.pipeline import reopen, screen
from streams.rules.screening import UNKNOWN_CAMPAIGN_POLICY, SenderState
from streams.stages.failures import BatchRunner
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


def compact(data: bytes) -> bytes:
    """A copy of ``data`` of its own size, to keep for long. orjson 3.x returns bytes objects
    that hold a 4 KiB allocation however short the JSON (measured: 4,120 bytes each for 151
    bytes of JSON; the copy takes 202): kept a million times, that is 4 GiB."""
    return bytes(memoryview(data))


def register_order_guards(rt: Runtime) -> None:
    """Every source partition of sms-received and reply-requests in offset order, or
    fetched again (infra/faust/inorder.py); the guards start again on each rebalance."""
    app = rt.app

    async def first_offset(tp: Any) -> int:
        return await rt.start_offset(tp) or 0

    async def seek_back(tp: Any, offset: int) -> None:
        # Consumer.seek (not seek_wait) also moves Faust's read offset, below which it
        # drops what it fetches.
        await app.consumer.seek(tp, offset)

    async def log_start(tp: Any) -> int | None:
        return (await app.consumer.earliest_offsets(tp)).get(tp)

    async def on_gone(tp: Any, first: int, start: int) -> None:
        fact = rt.tail_guard.deleted(tp.topic, tp.partition, first, start, rt.now_ms())
        await rt.acknowledged(rt.produce(rt.topics.journal, tp.topic.encode(),
                                         codec.encode(fact)))

    for name in (rt.names["inbound"], rt.names["requests"], rt.names["control"]):
        # A seek back undone by Faust's fetch loop is made again until it holds.
        rt.in_order[name] = InOrder(name, first_offset, seek_back, log_start=log_start,
                                    on_gone=on_gone)

    @app.on_partitions_revoked.connect
    async def on_revoked_restart_order(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        for guard in rt.in_order.values():
            guard.reset()


def register_screening(rt: Runtime) -> None:
    settings = rt.settings

    runner = BatchRunner(rt, "screen", "inbound")

    async def handle(admitted: Sequence[Any]) -> None:
        await screen_batch(rt, admitted)

    @rt.app.agent(rt.topics.inbound)
    async def screen_senders(stream: faust.StreamT) -> None:
        # In batches: the texts in order, each on its sender's latest state; then each state
        # written once, one journal write for the batch, the forwarded requests. Faust's
        # take_events acknowledges a batch even when this body raised, and its commit then
        # passes the batch: the body never raises. A batch that fails is not acknowledged
        # and is fetched again (streams/stages/failures.py), as after a crash: a text its
        # sender's state remembers gets its verdict again (the pure core), so a verdict
        # (or a request) lost in a failure or a crash is journaled (or sent) then.
        async for batch in stream.take_events(settings.screen_batch_size,
                                              within=settings.screen_window_s):
            await rt.policies_loaded.wait()
            await runner.run(await rt.in_order[rt.names["inbound"]].admit(batch), handle)


async def screen_batch(rt: Runtime, admitted: Sequence[Any]) -> None:
    senders_by_pseudonym = rt.tables.senders_by_pseudonym
    states: dict[str, SenderState] = {}
    stored_of: dict[str, bytes | None] = {}  # sender -> his state as the table holds it
    partition_of: dict[str, int] = {}  # sender -> the partition of his texts
    journaled: list[Any] = []
    forwarded: list[RequestReply | ReviewRequest] = []
    for text_event in admitted:
        value = text_event.value
        # The webhook and the decide stage write here: a bad record is said, and skipped.
        command = rt.decode_or_skip("inbound", value, (ScreenText, NoteReplyOutcome))
        if command is None:
            continue
        policy = rt.live_policies.get(command.campaign_id, UNKNOWN_CAMPAIGN_POLICY)
        state = states.get(command.sender)
        if state is None:
            stored = senders_by_pseudonym.get(command.sender)
            state = SenderState.from_dict(codec.load_data(stored)) if stored else SenderState()
            states[command.sender] = state
            stored_of[command.sender] = stored
            partition_of[command.sender] = text_event.message.partition
        if isinstance(command, NoteReplyOutcome):
            # A request of his ended without a reply: he is answered on a later text.
            journaled.extend(reopen(state, command))
            continue
        if command.message_id in state.recent:
            log.info("text %s seen before: its verdict again", command.message_id)
        screened = screen(state, command, policy)
        journaled.append(TextReceived(
            message_id=command.message_id, campaign_id=command.campaign_id,
            sender=command.sender, body=command.body, occurred_at=command.occurred_at,
            number_kind=command.number_kind, country=command.country, prefix=command.prefix,
            test_text=command.test_text, words=command.words,
        ))
        journaled.extend(screened.verdicts)
        forwarded.extend(screened.to_campaign)  # a request; a review of an awaited one
    changed = []
    for sender, state in states.items():
        value = codec.dump_data(state.to_dict())
        if value == stored_of[sender]:
            # Nothing changed (texts seen before, a note that reopens nothing): no changelog
            # record for a value the changelog holds already.
            continue
        changed.append((sender, compact(value), partition_of[sender]))
    # Reassign: the changelog only sees values that are set.
    await senders_by_pseudonym.put_many(changed)
    await rt.record(journaled)
    await rt.send_records(rt.names["requests"], [
        (request.campaign_id.encode(), codec.encode(request)) for request in forwarded])
