"""The control stage, the worker's side of operator commands (``streams.cli.control`` is the
operator's side: it writes them and waits for the answer). ``apply_controls`` hands each
record of the control topic to the campaign shards, which check it where it takes effect
(``infra.operators.OperatorAuthority``) and apply it or refuse it;
each PolicyChanged goes to the policies topic, which ``follow_policies`` (a task on every
worker) reads from the start into the live policies the screening uses."""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.kafka_auth import client_options
from schemas import codec
from schemas.events import ControlRefused, PolicyChanged
from schemas.policy import next_version
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")

POLICY_POLL_S = 0.25  # how often a worker looks for new policy changes (README: within 1 s)


def register_control(rt: Runtime) -> None:
    settings = rt.settings

    @rt.app.task
    async def follow_policies() -> None:
        await follow(rt)

    @rt.app.agent(rt.topics.control)
    async def apply_controls(stream: faust.StreamT) -> None:
        # One command at a time: operator commands are rare, and no take() buffer here.
        async for value in stream:
            # The record as it is: the campaign's shard checks who signed it, what they may
            # do and how fresh it is, where it takes effect (infra.operators.authorize).
            outcomes = await rt.deciders.control([value])
            await rt.record(outcomes, acked=True)
            rt.journaled(outcomes)
            for event in outcomes:
                if isinstance(event, ControlRefused):
                    log.warning("operator command %r refused: %s (operator %r, as claimed)",
                                event.command_id, event.reason, event.operator)
                elif not settings.operators:
                    log.warning("*** INSECURE DEV MODE: unsigned operator command %s "
                                "accepted ***", event.command_id)
                if isinstance(event, PolicyChanged):
                    log.info("campaign %s policy v%d by %s: %s", event.campaign_id,
                             event.version, event.operator, event.changes)
                    await rt.acknowledged(rt.topics.policies.send(
                        key=event.campaign_id.encode(), value=codec.encode(event)))


async def follow(rt: Runtime) -> None:
    """Read the policies topic from its start, for ever, into ``rt.live_policies``; set
    ``rt.policies_loaded`` once what was there at start is read."""
    name = rt.names["policies"]
    consumer = AIOKafkaConsumer(bootstrap_servers=rt.settings.kafka, group_id=None, **client_options(),
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
