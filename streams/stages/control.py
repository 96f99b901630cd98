"""The control stage, the worker's side of operator commands (``streams.cli.control`` is the
operator's side: it writes them and waits for the answer). ``apply_controls`` hands each
record of the control topic to the campaign shards, which check it where it takes effect
(``infra.operators.OperatorAuthority``) and apply it or refuse it;
each PolicyChanged goes to the policies topic, which ``follow_policies`` (a task on every
worker) reads from the start into the live policies the screening uses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.journal import end_offsets, iter_records
from infra.kafka_auth import client_options
from schemas import codec
from schemas.events import ControlRefused, PolicyChanged
from schemas.policy import PolicyChain
from streams.stages.failures import BatchRunner
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")

POLICY_POLL_S = 0.25  # how often a worker looks for new policy changes (README: within 1 s)
POLICY_REPAIR_S = 2.0  # a gap seen is repaired within this
POLICY_CHECK_S = 10.0  # the shards' policy versions are compared this often
POLICY_CONFIRM_S = 5.0  # a version this worker published and has not read back: sent again
CONTROL_BATCH = 16
CONTROL_WINDOW_S = 0.05


def register_control(rt: Runtime) -> None:

    follower = PolicyFollower(rt)

    @rt.app.task
    async def follow_policies() -> None:
        await follow(rt, follower)

    @rt.app.task
    async def repair_policy_gaps() -> None:
        await repair_policies(rt, follower)

    runner = BatchRunner(rt, "control", "control")

    async def handle(admitted: Sequence[Any]) -> None:
        for event in admitted:
            await apply_control(rt, event.value, follower)

    @rt.app.agent(rt.topics.control)
    async def apply_controls(stream: faust.StreamT) -> None:
        # Operator commands are rare: small batches, each command in turn. Never raises: a
        # batch that fails is fetched again (streams/stages/failures.py); a command decided
        # before gets the same answer again (by its id), which is journaled and published.
        async for events in stream.take_events(CONTROL_BATCH, within=CONTROL_WINDOW_S):
            await runner.run(await rt.in_order[rt.names["control"]].admit(events), handle)


async def apply_control(rt: Runtime, value: bytes, follower: PolicyFollower) -> None:
    """One operator command, the record as it is: the campaign's shard checks who signed it,
    what they may do and how fresh it is, where it takes effect
    (``infra.operators.OperatorAuthority``), and applies it or refuses it; journaled; a
    PolicyChanged is learnt by this worker's screening at once, then published for every
    worker's (each follows the topic within ``POLICY_POLL_S``). Learning it first means that
    once ``policy set`` sees it on the topic ("in force"), the worker that decided it screens
    under it: a text posted right after was screened under the version before (CI saw it)."""
    outcomes = await rt.deciders.control([value])
    await rt.record(outcomes, acked=True)
    rt.journaled(outcomes)
    for event in outcomes:
        if isinstance(event, ControlRefused):
            log.warning("operator command %r refused: %s (operator %r, as claimed)",
                        event.command_id, event.reason, event.operator)
            continue
        if not rt.settings.operators:
            log.warning("*** INSECURE DEV MODE: unsigned operator command %s accepted ***",
                        getattr(event, "command_id", "?"))
        if isinstance(event, PolicyChanged):
            log.info("campaign %s policy v%d by %s: %s", event.campaign_id,
                     event.version, event.operator, event.changes)
            follower.decided(event)
            await rt.acknowledged(rt.topics.policies.send(
                key=event.campaign_id.encode(), value=codec.encode(event)))


async def follow(rt: Runtime, follower: PolicyFollower) -> None:
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
                if event is not None:
                    follower.learn(event)
                if record_.offset + 1 >= end:
                    rt.policies_loaded.set()
    finally:
        await consumer.stop()


class PolicyFollower:
    """The chain of each campaign's policy versions as this worker's screening knows them
    (``rt.live_policies`` holds the latest of each), and its repair.

    Versions must be applied in order: one PolicyChanged missing from the policies topic
    (a publish that failed, a record the broker lost, one deleted by retention) froze the
    screening at the version before it for good, while the operator was told "in force".
    A gap is seen three ways: a later version on the topic (it waits in the chain), a
    decision of this worker's shards naming a later version (``Runtime.saw_policy``), or
    the shards' status, asked every ``POLICY_CHECK_S``. It is repaired from the journal,
    which holds every PolicyChanged (in the partition of its campaign's key): the versions
    found there are learnt, and published again on the policies topic, so every worker's
    screening catches up too (a version given twice is learnt once). A version this
    worker's control stage decides is screened under here at once (``decided``) and must
    come back on the topic within ``POLICY_CONFIRM_S``, else it is published again: the
    other workers would not see the gap before the next version."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.chains = {cid: PolicyChain(policy) for cid, policy in rt.live_policies.items()}
        self.on_topic: dict[str, set[int]] = {cid: set() for cid in self.chains}
        self.read_to: dict[int, int] = {}  # journal partition -> offset read to (repairs)
        self.repaired = 0  # versions learnt from the journal (/health, tests)
        # Versions this worker's control stage decided and published, not read back from the
        # topic yet: (campaign, version) -> (the event, when published, time.monotonic).
        self.unconfirmed: dict[tuple[str, int], tuple[PolicyChanged, float]] = {}

    def decided(self, event: PolicyChanged, now: float | None = None) -> None:
        """A version this worker's control stage decided: screened under at once, and
        expected back on the policies topic (else ``repair`` publishes it again)."""
        if event.campaign_id not in self.chains:
            return  # not a campaign this worker screens (learn ignores it too)
        self.learn(event, on_topic=False)
        if event.version not in self.on_topic[event.campaign_id]:
            self.unconfirmed[(event.campaign_id, event.version)] = (
                event, time.monotonic() if now is None else now)

    def learn(self, event: PolicyChanged, on_topic: bool = True) -> None:
        chain = self.chains.get(event.campaign_id)
        if chain is None:
            return
        if on_topic:
            self.on_topic[event.campaign_id].add(event.version)
            self.unconfirmed.pop((event.campaign_id, event.version), None)
        chain.learn(event.version, event.changes)
        self.rt.live_policies[event.campaign_id] = chain.latest
        if chain.waiting:
            self.rt.saw_policy(event.campaign_id, chain.waiting)

    def behind(self) -> dict[str, int]:
        """Campaigns whose screening is behind a version known to exist: the version."""
        return {cid: version for cid, version in self.rt.policy_seen.items()
                if cid in self.chains and version > self.chains[cid].latest.version}

    async def check_shards(self) -> None:
        """The shards' policy versions, as a sign of a gap (a shard away: next time)."""
        try:
            status = await asyncio.wait_for(self.rt.deciders.status(), POLICY_CHECK_S / 2)
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - asked again later
            log.debug("policy check: shards not asked (%s)", type(exc).__name__)
            return
        for cid, figures in status.items():
            self.rt.saw_policy(cid, figures["policy"]["version"])

    async def repair(self, now: float | None = None) -> None:
        """Publish again what this worker published and never read back; learn the versions
        screening misses from the journal and publish them again."""
        now = time.monotonic() if now is None else now
        for _, (event, sent) in sorted(self.unconfirmed.items()):
            if now - sent >= POLICY_CONFIRM_S:
                await self.publish_again(event)  # and no longer unconfirmed
        behind = self.behind()
        if not behind:
            return
        found = await policy_changes(self.rt, sorted(behind), self.read_to)
        for event in sorted(found, key=lambda e: e.version):
            chain = self.chains[event.campaign_id]
            if event.version <= chain.latest.version and event.version in self.on_topic[
                    event.campaign_id]:
                continue
            self.learn(event, on_topic=False)
            self.repaired += 1
            if event.version not in self.on_topic[event.campaign_id]:
                await self.publish_again(event)
        for cid, version in self.behind().items():
            log.warning("campaign %s: screening has policy v%d, v%d exists and is not in "
                        "the journal yet; looking again", cid,
                        self.chains[cid].latest.version, version)

    async def publish_again(self, event: PolicyChanged) -> None:
        log.warning("campaign %s: policy v%d was missing from %s; published again",
                    event.campaign_id, event.version, self.rt.names["policies"])
        await self.rt.acknowledged(self.rt.topics.policies.send(
            key=event.campaign_id.encode(), value=codec.encode(event)))
        self.on_topic[event.campaign_id].add(event.version)
        self.unconfirmed.pop((event.campaign_id, event.version), None)


async def repair_policies(rt: Runtime, follower: PolicyFollower) -> None:
    """For ever: repair a gap when one is seen, and ask the shards now and then."""
    asked = 0.0
    while True:
        try:
            await asyncio.wait_for(rt.policy_check.wait(), POLICY_REPAIR_S)
        except TimeoutError:
            pass
        rt.policy_check.clear()
        try:
            if time.monotonic() - asked >= POLICY_CHECK_S:
                asked = time.monotonic()
                await follower.check_shards()
            await follower.repair()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the broker is away: next time
            log.warning("policy repair: %s; trying again", type(exc).__name__)


async def policy_changes(rt: Runtime, campaign_ids: list[str], read_to: dict[int, int]
                         ) -> list[PolicyChanged]:
    """The PolicyChanged of these campaigns in the journal, from where the last repair read
    (``read_to``, moved on): each in the partition of its campaign's key."""
    from aiokafka.partitioner import DefaultPartitioner

    topic = rt.names["journal"]
    ends = await end_offsets(rt.settings.kafka, topic)
    if not ends:
        return []
    parts = sorted(ends)
    wanted = {DefaultPartitioner()(cid.encode(), parts, parts) for cid in campaign_ids}
    start = {p: (read_to.get(p, 0) if p in wanted else ends[p]) for p in parts}
    found = []
    async for partition, offset, _key, value in iter_records(rt.settings.kafka, topic,
                                                             start=start):
        read_to[partition] = offset + 1
        if partition in wanted and value and b'"PolicyChanged"' in value[:40]:
            event = codec.decode(value)
            if isinstance(event, PolicyChanged) and event.campaign_id in campaign_ids:
                found.append(event)
    return found
