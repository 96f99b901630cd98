"""Operator commands: change a campaign's policy or credit its budget while it runs.

``submit`` writes the command to the control topic (acks=all) and waits for the campaign's
answer in the journal (``PolicyChanged``, ``BudgetCredited`` or ``ControlRejected``, or the
worker's ``ControlRefused`` for a command that is not signed by an operator allowed to send
it: ``infra.operators``), so the operator sees the new policy version or the refusal.
``current_status`` rebuilds every campaign from the journal with the same core the workers
use: no worker needs to run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from actors.shard import CampaignShard, is_campaign_event
from infra.journal import read_journal_async
from infra.kafka_auth import client_options
from schemas import codec
from schemas.campaign import Campaign
from schemas.commands import ChangePolicy, ControlCommand, CreditBudget


def new_change(campaign_id: str, changes: dict[str, Any], operator: str) -> ChangePolicy:
    return ChangePolicy(command_id=uuid.uuid4().hex, campaign_id=campaign_id, changes=changes,
                        operator=operator, occurred_at=int(time.time() * 1000))


def new_credit(campaign_id: str, amount_micros: int, source: str, operator: str) -> CreditBudget:
    return CreditBudget(command_id=uuid.uuid4().hex, campaign_id=campaign_id, amount_micros=amount_micros,
                        source=source, operator=operator, occurred_at=int(time.time() * 1000))


async def submit(kafka: str, names: dict[str, str], command: ControlCommand,
                 timeout: float = 15.0, wire: bytes | None = None) -> Any | None:
    """Send the command (as ``wire``, its signed form, when given); return the answer from
    the journal (the campaign's, or the worker's ``ControlRefused``), or None on timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False,
                                **client_options())
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", **client_options())
    try:
        await consumer.start()
        await producer.start()
    except BaseException:
        await producer.stop()  # what start() left half open (the broker is away)
        await consumer.stop()
        raise
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(names["journal"]) or set()
        tps = [TopicPartition(names["journal"], p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end positions before the command can be answered
            await consumer.position(tp)
        await producer.send_and_wait(names["control"], wire or codec.encode(command),
                                     key=command.campaign_id.encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(*tps, timeout_ms=200)).values():
                for record in records:
                    event = codec.decode(record.value)
                    if getattr(event, "command_id", None) == command.command_id:
                        return event
        return None
    finally:
        await producer.stop()
        await consumer.stop()


async def published(kafka: str, names: dict[str, str], event: Any, timeout: float = 20.0
                    ) -> bool:
    """Whether ``event`` (a PolicyChanged) is on the policies topic, which every worker's
    screening follows (a gap before it is repaired from the journal there): what "in
    force" means. Waits up to ``timeout`` for it (a worker that repairs a lost one publishes
    it again)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False,
                                **client_options())
    await consumer.start()
    try:
        tp = TopicPartition(names["policies"], 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                try:
                    seen = codec.decode(record.value)
                except codec.CodecError:
                    continue
                if (getattr(seen, "campaign_id", None), getattr(seen, "version", None)) == (
                        event.campaign_id, event.version):
                    return True
        return False
    finally:
        await consumer.stop()


async def current_status(kafka: str, names: dict[str, str],
                         campaigns: list[Campaign]) -> dict[str, dict[str, Any]]:
    history = [e for e in await read_journal_async(kafka, names["journal"]) if is_campaign_event(e)]
    return CampaignShard(campaigns, history).status()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
