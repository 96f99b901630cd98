"""What the stages share: the app, its topics and tables, the ports, and the few pieces of
runtime state more than one stage reads (live policies, the offset-order guards, the
circuit breaker, the refetch count)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust

from actors.campaign import ControlOutcome
from infra.faust.inorder import InOrder
from infra.faust.lost_tail import AckWindow, TailGuard
from infra.gateway import SmsGateway
from infra.privacy import Privacy
from infra.sending import CircuitBreaker
from schemas import codec
from schemas.campaign import Campaign
from schemas.codec import CodecError
from schemas.commands import RequestReply, SettleReply, Tick
from schemas.policy import Policy
from streams.intake.messagebird import SignatureVerifier
from streams.intake.once import StoredEvents
from streams.settings import Settings

log = logging.getLogger("antirelou")

# Records from which ``Runtime.send_records`` writes record batches instead of one by one.
BATCH_FROM = 8


class Deciders(Protocol):
    async def decide(self, batch: list[RequestReply | SettleReply | Tick]) -> list[Any]: ...
    # Control records as they are on the topic: the shards verify them (actors/remote.py).
    async def control(self, batch: list[bytes]) -> list[ControlOutcome | Any]: ...
    async def snapshot(self, offsets: dict[int, int], taken: dict[str, int]
                       ) -> list[tuple[str, int, bytes]]: ...
    async def status(self) -> dict[str, dict[str, Any]]: ...


@dataclass
class StageHealth:
    """One stage's faults as /health and /metrics show them."""

    failures: int = 0  # batches that failed and were fetched again
    poisoned: int = 0  # records passed over as poison (RecordPoisoned)
    failing_since: float | None = None  # the first failure since the last batch done
    last_error: str = ""  # its exception's type

    def to_json(self, now: float) -> dict[str, Any]:
        return {"failures": self.failures, "poisoned": self.poisoned,
                "failing_for_s": (None if self.failing_since is None
                                  else round(now - self.failing_since, 1)),
                "last_error": self.last_error}


@dataclass(frozen=True)
class Topics:
    inbound: faust.TopicT  # sms-received, keyed by sender pseudonym
    requests: faust.TopicT  # reply-requests, keyed by campaign
    outbound: faust.TopicT  # sms-outbound, keyed by campaign
    journal: faust.TopicT  # keyed by sender pseudonym (else campaign)
    control: faust.TopicT  # operator commands
    policies: faust.TopicT  # PolicyChanged, one partition
    snapshots: faust.TopicT  # campaign snapshots, keyed by campaign
    bodies: faust.TopicT  # texts' bodies for their retention, keyed by message id


@dataclass(frozen=True)
class Tables:
    senders_by_pseudonym: Any  # TextPartitionedTable: SenderState as JSON bytes
    replies_by_message: Any  # TextPartitionedTable: where each reply got to (sendstate)
    deferred_reply_to: Any  # TextPartitionedTable: message id -> sealed reply-to (deferred)


@dataclass(eq=False)
class Runtime:
    app: faust.App
    settings: Settings
    deciders: Deciders
    gateway: SmsGateway  # or infra.providers.CampaignGateways: one per campaign
    clock: Callable[[], float]
    names: dict[str, str]
    topics: Topics
    tables: Tables
    privacy: Privacy
    verifier: SignatureVerifier | None
    campaigns: dict[str, Campaign]
    # The live policy of each campaign, as this worker knows it: version 1 from the file,
    # then every PolicyChanged read from the policies topic (stages.control).
    live_policies: dict[str, Policy]
    breaker: CircuitBreaker  # the gateway's (stages.send; /health shows its state)
    policies_loaded: asyncio.Event = field(default_factory=asyncio.Event)
    # Topic name -> its offset-order guard (infra/faust/inorder.py), set up by stages.screen.
    in_order: dict[str, InOrder] = field(default_factory=dict)
    # Records Faust dropped and the watchdog fetched again (stages.watchdog; /health).
    redelivered: int = 0
    # Faust's table recovery watched for partitions that wait for good (recovery_guard.py).
    recovery_guard: Any = None
    # Topic role -> records skipped because they are not what the stage reads (/health).
    bad_records: dict[str, int] = field(default_factory=dict)
    # Stage -> its failed batches (fetched again) and records passed over as poison
    # (streams/stages/failures.py; /health and /metrics).
    stage_health: dict[str, StageHealth] = field(default_factory=dict)
    # Campaign -> the highest policy version seen to exist (in a decision, the shards'
    # status, a later version on the policies topic); stages.control repairs screening's
    # policy from the journal when it is behind it, woken by ``policy_check``.
    policy_seen: dict[str, int] = field(default_factory=dict)
    policy_check: asyncio.Event = field(default_factory=asyncio.Event)

    def decode_or_skip(self, role: str, value: bytes | None, types: tuple[type, ...]) -> Any:
        """The message of one record, or None for a record the stage cannot read (not a
        known message, or not one of ``types``): logged, counted on /health, skipped, so
        one bad record never stops a stage (its batch would come back for ever)."""
        try:
            message = codec.decode(value)  # type: ignore[arg-type]
        except (CodecError, TypeError) as exc:
            reason = str(exc) if isinstance(exc, CodecError) else "not bytes"
        else:
            if isinstance(message, types):
                return message
            reason = f"a {type(message).__name__} does not belong here"
        self.bad_records[role] = self.bad_records.get(role, 0) + 1
        log.error("%s: bad record skipped (%d bytes): %s", self.names.get(role, role),
                  len(value or b""), reason)
        return None
    # Records the broker lost that this worker had read (infra/faust/lost_tail.py; /health).
    tail_guard: TailGuard = field(default_factory=TailGuard)
    # Under `up`: the texts acknowledged lately, written again after a broker crash
    # (stages.broker); None for a worker on a broker it does not run.
    ack_window: AckWindow | None = None
    # The provider events this process stored lately, both providers' (streams.intake.once).
    stored_events: StoredEvents = field(default_factory=StoredEvents)
    # The webhooks' concurrency limit (streams.stages.admission; /health shows it).
    admission: Any = None
    # Faust's producer once started (``kafka_producer``).
    _started_producer: Any = field(default=None, repr=False)

    def saw_policy(self, campaign_id: str, version: int) -> None:
        """Policy ``version`` of the campaign exists: screening's is repaired if behind."""
        if version > self.policy_seen.get(campaign_id, 0):
            self.policy_seen[campaign_id] = version
            live = self.live_policies.get(campaign_id)
            if live is not None and version > live.version:
                self.policy_check.set()

    def stage(self, name: str) -> StageHealth:
        health = self.stage_health.get(name)
        if health is None:
            health = self.stage_health[name] = StageHealth()
        return health

    def stage_failed(self, name: str, exc: BaseException) -> None:
        """A batch of stage ``name`` failed with ``exc`` (it is fetched again)."""
        health = self.stage(name)
        health.failures += 1
        health.last_error = type(exc).__name__
        if health.failing_since is None:
            health.failing_since = self.clock()

    def stage_ok(self, name: str) -> None:
        """A batch of stage ``name`` completed."""
        health = self.stage_health.get(name)
        if health is not None and health.failing_since is not None:
            log.warning("stage %s going again after %.0f s of failed batches", name,
                        self.clock() - health.failing_since)
            health.failing_since = None

    def health_problems(self) -> list[str]:
        """What keeps the worker from deciding now, one phrase each ([] when nothing does):
        a stage whose batches fail, a campaign shard away (``/health``: degraded)."""
        now = self.clock()
        problems = [f"stage {name} failing for {now - h.failing_since:.0f} s ({h.last_error})"
                    for name, h in sorted(self.stage_health.items())
                    if h.failing_since is not None]
        shards = getattr(self.deciders, "health", None)
        if shards is not None:
            for shard, away in shards()["away"].items():
                problems.append(f"campaign shard {shard} {away['reason']} for "
                                f"{away['for_s']:.0f} s")
        return problems

    def fault_figures(self) -> dict[str, Any]:
        """What /metrics shows of the faults: each stage's failures and poison records, the
        shards away (shard -> seconds), the problems /health lists."""
        shards = getattr(self.deciders, "health", None)
        away = shards()["away"] if shards is not None else {}
        return {"stages": dict(self.stage_health),
                "shards_away": {shard: a["for_s"] for shard, a in away.items()},
                "degraded": bool(self.health_problems())}

    def broker_status(self) -> Any:
        """`up`'s BrokerStatus (infra/supervisor.py), or None."""
        status = self.settings.broker_status
        return status() if status is not None else None

    def broker_down(self) -> bool:
        status = self.settings.broker_status
        return status is not None and not status().up

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def gateway_for(self, campaign_id: str) -> SmsGateway:
        """The campaign's gateway: with providers per campaign (infra.providers
        ``CampaignGateways``) the campaign picks it, else the one gateway serves all."""
        pick = getattr(self.gateway, "for_campaign", None)
        return pick(campaign_id) if pick is not None else self.gateway

    def all_gateways(self) -> list[SmsGateway]:
        every = getattr(self.gateway, "all", None)
        return every() if every is not None else [self.gateway]

    @property
    def refuse_unsigned(self) -> bool:
        """No MessageBird signing key outside insecure dev mode (a deployment on Bird only):
        the classic webhooks refuse every request rather than accept unsigned ones."""
        return self.settings.signing_key is None and not self.settings.allow_unsigned

    @staticmethod
    async def acknowledged(send: Awaitable[Any]) -> None:
        # Two awaits: the first queues the record, the second waits for the broker's ack
        # (acks=all): stored once this returns.
        fut = await send
        await fut

    async def kafka_producer(self) -> Any:
        """The aiokafka producer under Faust's (started), or None if Faust's transport has
        none. Records sent on it go through the same client, partitioner and acks=all as
        ``topic.send``, without Faust's per-send wrapper (the ``on_produce_message`` signal,
        header handling) and, for ``send_records``, without a future per record.

        Faust's producer is asked for once and kept while it runs: ``maybe_start_producer``
        (a stampede guard, the transaction check, the start check) was 7% of a webhook's
        CPU. It returns the same producer for as long as the app runs (no transactions
        here); if it ever stops, it is asked for again."""
        producer = self._started_producer
        if producer is None or not producer.started or producer.should_stop:
            producer = await self.app.maybe_start_producer()
            self._started_producer = producer if getattr(producer, "started", False) else None
        ensure = getattr(producer, "_ensure_producer", None)
        return ensure() if ensure is not None else None

    async def produce(self, topic: faust.TopicT, key: bytes, value: bytes) -> Awaitable[Any]:
        """Queue one record on the producer; returns its ack future. The same producer and
        partitioner as ``topic.send`` (raw bytes, no headers), without the FutureMessage,
        sensor state and callback Faust adds to each send (profiled: a third of each send's
        cost in the webhook and the journal writer)."""
        (future,) = await self.send_records(topic.get_topic_name(), [(key, value)])
        return future

    async def send_records(self, topic: str, records: Sequence[tuple[bytes, bytes]]
                           ) -> list[Awaitable[Any]]:
        """Queue ``records`` (key, value) on ``topic``, in order; their ack futures. From
        ``BATCH_FROM`` records on, one record batch per partition (``send_batch``: one
        future per batch, not per record; the partition the producer's partitioner gives
        the key, as ``send`` would, so a key's records keep their order with those sent one
        by one); fewer go one by one."""
        kafka = await self.kafka_producer()
        if kafka is None:  # another transport: Faust's own send
            producer = await self.app.maybe_start_producer()
            return [await producer.send(topic, key, value, None, None, None)
                    for key, value in records]
        if len(records) < BATCH_FROM:
            return [await kafka.send(topic, value, key=key) for key, value in records]
        await kafka.partitions_for(topic)  # the topic's metadata, as send() waits for it
        partition_of = kafka._partition
        open_batches: dict[int, Any] = {}
        full: list[tuple[int, Any]] = []  # in the order they filled: a key's order kept
        for key, value in records:
            partition = partition_of(topic, None, None, None, key, value)
            batch = open_batches.get(partition)
            if batch is None:
                batch = open_batches[partition] = kafka.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                full.append((partition, batch))  # full: sent before the next one
                batch = open_batches[partition] = kafka.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        # A full batch of a partition precedes the open one of the same partition.
        return [await kafka.send_batch(batch, topic, partition=partition)
                for partition, batch in (*full, *open_batches.items())]

    async def record(self, events: Sequence[Any], acked: bool = False) -> None:
        # Journal key: the sender pseudonym, so one sender's story is totally ordered (the
        # screening replay needs that); campaign events carry their own sequence number.
        encode = codec.encode
        futures = await self.send_records(self.names["journal"], [
            ((getattr(event, "sender", None) or event.campaign_id).encode(), encode(event))
            for event in events])
        if acked and futures:
            # Persist before acting: a campaign's events are stored before the next batch
            # reaches its shard, so a restarted shard recovers all it ever answered.
            await asyncio.gather(*futures)

    def journaled(self, events: Sequence[Any]) -> None:
        """The campaign events just stored (acknowledged): the shards' facade passes their
        seqs with its next calls, so a restarted shard catches up first (actors/remote.py)."""
        journaled = getattr(self.deciders, "journaled", None)
        if journaled is not None:
            journaled(events)

    async def settle(self, command: SettleReply) -> None:
        """A reply's cost settled (failed: refund; priced: the real price), to its campaign
        through reply-requests, in order with its requests."""
        await self.acknowledged(self.topics.requests.send(
            key=command.campaign_id.encode(), value=codec.encode(command)))

    async def start_offset(self, tp: Any) -> int | None:
        """Where this assignment of ``tp`` started: its committed offset, else the log's
        first (Faust reads a committed 0 as none); None if the broker does not say."""
        committed = self.app.consumer._committed_offset.get(tp)
        if committed is None:
            committed = (await self.app.consumer.earliest_offsets(tp)).get(tp)
        return committed
