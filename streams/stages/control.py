"""The control stage, the worker's side of operator commands (``streams.cli.control`` is the
operator's side: it writes them and waits for the answer). ``apply_controls`` checks each
command on the control topic (``infra.operators``) and hands it to the campaign shards;
each PolicyChanged goes to the policies topic, which ``follow_policies`` (a task on every
worker) reads from the start into the live policies the screening uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.operators import Refusal, authorize
from schemas import codec
from schemas.events import ControlRefused, PolicyChanged
from schemas.policy import next_version
from streams.stages.failures import BatchRunner
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")

POLICY_POLL_S = 0.25  # how often a worker looks for new policy changes (README: within 1 s)
CONTROL_BATCH = 16
CONTROL_WINDOW_S = 0.05


def register_control(rt: Runtime) -> None:

    @rt.app.task
    async def follow_policies() -> None:
        await follow(rt)

    runner = BatchRunner(rt, "control", "control")

    async def handle(admitted: Sequence[Any]) -> None:
        for event in admitted:
            await apply_control(rt, event.value)

    @rt.app.agent(rt.topics.control)
    async def apply_controls(stream: faust.StreamT) -> None:
        # Operator commands are rare: small batches, each command in turn. Never raises: a
        # batch that fails is fetched again (streams/stages/failures.py); a command decided
        # before gets the same answer again (by its id), which is journaled and published.
        async for events in stream.take_events(CONTROL_BATCH, within=CONTROL_WINDOW_S):
            await runner.run(await rt.in_order[rt.names["control"]].admit(events), handle)


async def apply_control(rt: Runtime, value: bytes) -> None:
    """One operator command: checked (who signed it, what they may do, how fresh) before
    any shard sees it, decided by its campaign's shard, journaled; a PolicyChanged is
    published for every worker's screening."""
    settings = rt.settings
    now = rt.now_ms()
    checked = authorize(value, settings.operators, settings.app_id, now,
                        allow_unsigned=settings.allow_unsigned)
    if isinstance(checked, Refusal):
        log.warning("operator command %r refused: %s (operator %r, as claimed)",
                    checked.command_id, checked.reason, checked.operator)
        await rt.record([ControlRefused(
            command_id=checked.command_id, campaign_id=checked.campaign_id,
            operator=checked.operator, reason=checked.reason, occurred_at=now,
        )], acked=True)
        return
    if not settings.operators:
        log.warning("*** INSECURE DEV MODE: unsigned operator command %s accepted ***",
                    checked.command_id)
    outcomes = await rt.deciders.control([checked])
    await rt.record(outcomes, acked=True)
    rt.journaled(outcomes)
    for event in outcomes:
        if isinstance(event, PolicyChanged):
            log.info("campaign %s policy v%d by %s: %s", event.campaign_id,
                     event.version, event.operator, event.changes)
            await rt.acknowledged(rt.topics.policies.send(
                key=event.campaign_id.encode(), value=codec.encode(event)))


async def follow(rt: Runtime) -> None:
    """Read the policies topic from its start, for ever, into ``rt.live_policies``; set
    ``rt.policies_loaded`` once what was there at start is read."""
    name = rt.names["policies"]
    consumer = AIOKafkaConsumer(bootstrap_servers=rt.settings.kafka, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(name, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        log.info("following %d policy change(s) on %s", end, name)
        if end == 0:
            rt.policies_loaded.set()
        while True:
            if await consumer.position(tp) >= end:
                # Nothing new: ask for the end offset now and then instead of fetching,
                # which a broker without long polls (noida-db) answers at once, so an
                # idle fetch loop costs a core there (profiled: tests/benchmarks).
                consumer.pause(tp)
                await asyncio.sleep(POLICY_POLL_S)
                try:
                    end = (await consumer.end_offsets([tp]))[tp]
                except KafkaError as exc:  # the broker is away: ask again later
                    log.warning("policy follower: %s", type(exc).__name__)
                consumer.resume(tp)
                continue
            batches = await consumer.getmany(tp, timeout_ms=200)
            for record_ in batches.get(tp, []):
                event = rt.decode_or_skip("policies", record_.value, (PolicyChanged,))
                current = rt.live_policies.get(event.campaign_id) if event else None
                nxt = None if current is None else next_version(current, event.version,
                                                                 event.changes)
                if nxt is not None:
                    rt.live_policies[event.campaign_id] = nxt
                if record_.offset + 1 >= end:
                    rt.policies_loaded.set()
    finally:
        await consumer.stop()
