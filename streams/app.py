"""The Faust app: topics, tables, agents and web views, built by ``create_app``.

Nothing is built at import time: ``streams.cli`` (``antirelou worker`` / ``antirelou up``)
loads the settings, starts Ray and the campaign shards, then calls ``create_app`` and runs
a Faust worker on it.

Data flow (topic names are prefixed with the app id)::

    POST /webhooks/messagebird/sms --ScreenText--> sms-received (key: sender pseudonym)
    screen_senders: per-sender table, TextReceived + SenderScreened -> journal
        forward --RequestReply--> reply-requests (key: campaign)
    decide_replies: batches -> Ray campaign shards, ReplyApproved/Denied/Deferred -> journal
        approved --SendReply--> sms-outbound (key: campaign)
        (a deferred request's sealed reply-to waits in deferred_reply_to_by_campaign)
    tick_campaigns (leader timer) --Tick--> reply-requests: releases and expiries
    send_replies: SMS gateway (MessageBird or dry run), ReplySent/Failed -> journal

Ordering: the sender table is keyed like ``sms-received``, so one worker screens all texts of
a sender in order; ``reply-requests`` is keyed by campaign, so one worker feeds a campaign's
requests to its shard in order, and each decision carries the campaign's sequence number.
The journal is keyed by sender pseudonym: a sender's events are in one partition, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from actors.campaign import CampaignState, ControlOutcome, initial_policy
from actors.snapshot import MAX_SNAPSHOT_BYTES, encode_snapshot
from infra.messagebird_gateway import DryRunGateway, SendResult
from infra.operators import Operator, Refusal, authorize
from infra.privacy import Privacy
from schemas import codec
from schemas.campaign import Campaign
from schemas.codec import CodecError
from schemas.commands import (
    ControlCommand,
    RequestReply,
    ScreenText,
    SendReply,
    SettleReply,
    Tick,
)
from schemas.events import (
    ControlRefused,
    DeliveryReported,
    PolicyChanged,
    ReplyApproved,
    ReplyAttempted,
    ReplyDeferred,
    ReplyExpired,
    ReplyFailed,
    ReplySent,
    ReplyUncertain,
    TextReceived,
    TextRejected,
)
from schemas.policy import Policy, apply_changes
from streams.inorder import InOrder
from streams.lost_tail import AckWindow, TailGuard, resume_at_end
from streams.send_guard import JournalIndex, RecentOutcomes
from streams.reports import parse_delivery_report
from streams.screening import (
    UNKNOWN_CAMPAIGN_POLICY,
    SenderState,
    decide_screening,
    evolve_sender,
)
from streams.sending import CircuitBreaker, GroupCommit, RetryPolicy, deliver
from streams.webhook import (
    MAX_BODY_BYTES,
    BadRequest,
    NumberFacts,
    SignatureVerifier,
    Unauthorized,
    WebhookError,
    parse_inbound,
)

log = logging.getLogger("antirelou")

WEBHOOK_PATH = "/webhooks/messagebird/sms"
STATUS_PATH = "/webhooks/messagebird/status"  # delivery reports (GET), ?campaign=<id>
ACK_TIMEOUT_S = 10.0  # default of Settings.ack_timeout_s
POLICY_POLL_S = 0.25  # how often a worker looks for new policy changes (README: within 1 s)


def topic_names(app_id: str) -> dict[str, str]:
    return {
        "inbound": f"{app_id}.sms-received",
        "requests": f"{app_id}.reply-requests",
        "outbound": f"{app_id}.sms-outbound",
        "journal": f"{app_id}.journal",
        "control": f"{app_id}.control",
        "policies": f"{app_id}.policies",
        "snapshots": f"{app_id}.campaign-snapshots",
    }


def compact(data: bytes) -> bytes:
    """A copy of ``data`` of its own size, to keep for long. orjson 3.x returns bytes objects
    that hold a 4 KiB allocation however short the JSON (measured: 4,120 bytes each for 151
    bytes of JSON; the copy takes 202): kept a million times, that is 4 GiB."""
    return bytes(memoryview(data))


class TextPartitionedTable(faust.Table):
    """A table written in batches: ``put(key, value, partition)`` writes to the changelog
    partition given (that of the record that changed it), not that of Faust's current event
    (a batch's last, maybe of another partition). ``table[key] = value`` keeps Faust's rule.
    ``value_serializer`` (which Faust's tables derive from the value type only) sets how
    values go to the changelog: "raw" for bytes kept as they are."""

    def __init__(self, *args: Any, value_serializer: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if value_serializer is not None:  # before the store and the changelog topic exist
            self.value_serializer = value_serializer
        self.partition_of: dict[Any, int] = {}

    def partition_for_key(self, key: Any) -> int | None:
        partition = self.partition_of.get(key)
        return partition if partition is not None else super().partition_for_key(key)

    def put(self, key: Any, value: Any, partition: int) -> None:
        """``table[key] = value``, to the changelog's ``partition``."""
        self.partition_of[key] = partition
        try:
            self[key] = value
        finally:
            del self.partition_of[key]


class Gateway(Protocol):
    def send(
        self, *, originator: str, recipient: str, body: str, reference: str,
        report_url: str | None = None, scheduled_at: int | None = None,
    ) -> SendResult: ...


class Deciders(Protocol):
    async def decide(self, batch: list[RequestReply | SettleReply | Tick]) -> list[Any]: ...
    async def control(self, batch: list[ControlCommand]) -> list[ControlOutcome]: ...
    async def snapshot(self) -> list[CampaignState]: ...
    async def status(self) -> dict[str, dict[str, Any]]: ...


@dataclass
class Settings:
    kafka: str
    campaigns: Sequence[Campaign]
    secret: bytes
    app_id: str = "antirelou"
    partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path(".state/faust")
    signing_key: str | None = None
    allow_unsigned: bool = False
    public_url: str | None = None  # the base URL MessageBird signs, when behind a proxy
    batch_size: int = 500
    batch_window_s: float = 0.05
    # Texts screened together: a batch is taken when this many wait or the window has passed
    # since the first, so a lone text waits at most the window.
    screen_batch_size: int = 200
    screen_window_s: float = 0.01
    # The reply stage: MessageBird calls under way at once (threads), SendReply batches
    # taken at once (agent actors), and the size and wait of each batch.
    send_concurrency: int = 32
    send_batches: int = 4
    send_batch_size: int = 64
    send_batch_window_s: float = 0.02
    snapshot_interval_s: float = 30.0
    # Who may send operator commands (infra.operators); with none, only an insecure dev
    # deployment (allow_unsigned) applies them, unsigned.
    operators: Mapping[str, Operator] = field(default_factory=dict)
    # Where MessageBird sends delivery reports for our replies (public base URL; None: no
    # reportUrl is sent and the account's default status URL applies).
    report_base_url: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 5.0
    # How long the webhook waits for the broker's ack before answering 503 (MessageBird
    # then retries): short enough that its own request does not time out first.
    ack_timeout_s: float = ACK_TIMEOUT_S
    redelivery_check_s: float = 2.0  # see redeliver_dropped_records
    tick_interval_s: float = 5.0  # the clock Tick sent to each campaign (surge releases)
    # `up`'s broker supervisor (infra/supervisor.py): () -> BrokerStatus; None for a worker
    # on a broker it does not run. While it is down the webhook answers 503 at once.
    broker_status: Callable[[], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def create_app(
    settings: Settings,
    deciders: Deciders,
    gateway: Gateway,
    clock: Callable[[], float] = time.time,
) -> faust.App:
    if settings.signing_key is None and not settings.allow_unsigned:
        raise ValueError(
            "no webhook signing key: set MESSAGEBIRD_SIGNING_KEY, or pass --insecure-dev "
            "to accept unsigned webhooks while developing"
        )
    campaigns = {c.id: c for c in settings.campaigns}
    by_number = {c.number: c for c in settings.campaigns}
    privacy = Privacy(settings.secret)
    verifier = SignatureVerifier(settings.signing_key) if settings.signing_key else None
    number_facts = NumberFacts()
    names = topic_names(settings.app_id)

    def now_ms() -> int:
        return int(clock() * 1000)

    def broker_down() -> bool:
        return settings.broker_status is not None and not settings.broker_status().up

    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.partitions,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=60.0,
        # A worker that dies (kill -9) gives its partitions up after 10 s, not Faust's 60.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_max_request_size=MAX_SNAPSHOT_BYTES,  # campaign snapshots (actors/snapshot.py)
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=settings.partitions,
        )

    inbound = raw_topic(names["inbound"])
    requests = raw_topic(names["requests"])
    outbound = raw_topic(names["outbound"])
    journal = raw_topic(names["journal"])
    control = raw_topic(names["control"])
    policies = app.topic(names["policies"], key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=1)

    # The live policy of each campaign, as this worker knows it: version 1 from the file,
    # then every PolicyChanged read from the policies topic by follow_policies (each worker
    # reads all of it). Decisions record the version they used, so the audit can check them.
    live_policies: dict[str, Policy] = {c.id: initial_policy(c) for c in settings.campaigns}
    policies_loaded = asyncio.Event()

    # The sender pseudonym -> his SenderState as orjson bytes, in the partition of the
    # sender's texts (sms-received is keyed by the pseudonym). Bytes, not the dict: about a
    # third of the memory per sender (a million senders fit), and nothing to serialize for
    # the changelog. Changelogs written as JSON dicts read back the same.
    senders_by_pseudonym = app.tables.add(TextPartitionedTable(
        app, name="senders_by_pseudonym", default=None, beacon=app.tables.beacon,
        partitions=settings.partitions, key_type=str, value_serializer="raw",
    ))
    # Inbound message ids whose reply was handed to the gateway. Written in the partition of
    # sms-outbound (keyed by campaign), where every copy of one SendReply arrives.
    replies_by_message = app.tables.add(TextPartitionedTable(
        app, name="replies_by_message", default=None, beacon=app.tables.beacon,
        partitions=settings.partitions, key_type=str,
    ))

    async def acknowledged(send: Awaitable[Any]) -> None:
        # Two awaits: the first queues the record, the second waits for the broker's ack
        # (acks=all): stored once this returns.
        fut = await send
        await fut

    async def produce(topic: faust.TopicT, key: bytes, value: bytes) -> Awaitable[Any]:
        """Queue one record on the producer; returns its ack future. The same producer and
        partitioner as ``topic.send`` (raw bytes, no headers), without the FutureMessage,
        sensor state and callback Faust adds to each send (profiled: a third of each send's
        cost in the webhook and the journal writer)."""
        producer = await app.maybe_start_producer()
        return await producer.send(topic.get_topic_name(), key, value, None, None, None)

    async def record(events: Sequence[Any], acked: bool = False) -> None:
        # Journal key: the sender pseudonym, so one sender's story is totally ordered (the
        # screening replay needs that); campaign events carry their own sequence number.
        producer = await app.maybe_start_producer()
        send, topic = producer.send, names["journal"]
        futures = []
        for event in events:
            key = getattr(event, "sender", None) or event.campaign_id
            futures.append(await send(topic, key.encode(), codec.encode(event), None, None, None))
        if acked and futures:
            # Persist before acting: a campaign's events are stored before the next batch
            # reaches its shard, so a restarted shard recovers all it ever answered.
            await asyncio.gather(*futures)

    @app.task
    async def follow_policies() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(names["policies"], 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            log.info("following %d policy change(s) on %s", end, names["policies"])
            if end == 0:
                policies_loaded.set()
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
                    event = codec.decode(record_.value)
                    current = live_policies.get(event.campaign_id)
                    if current is not None and event.version == current.version + 1:
                        live_policies[event.campaign_id] = apply_changes(
                            current, event.changes, event.version)
                    if record_.offset + 1 >= end:
                        policies_loaded.set()
        finally:
            await consumer.stop()

    async def start_offset(tp: Any) -> int | None:
        """Where this assignment of ``tp`` started: its committed offset, else the log's
        first (Faust reads a committed 0 as none); None if the broker does not say."""
        committed = app.consumer._committed_offset.get(tp)
        if committed is None:
            committed = (await app.consumer.earliest_offsets(tp)).get(tp)
        return committed

    # Every source partition in offset order, or fetched again (streams/inorder.py).
    async def first_offset(tp: Any) -> int:
        return await start_offset(tp) or 0

    async def seek_back(tp: Any, offset: int) -> None:
        # Consumer.seek (not seek_wait) also moves Faust's read offset, below which it
        # drops what it fetches.
        await app.consumer.seek(tp, offset)

    in_order = {topic: InOrder(topic, first_offset, seek_back)
                for topic in (names["inbound"], names["requests"])}
    app.antirelou_in_order = in_order  # type: ignore[attr-defined]

    @app.on_partitions_revoked.connect
    async def on_revoked_restart_order(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        for guard in in_order.values():
            guard.reset()

    @app.agent(inbound)
    async def screen_senders(stream: faust.StreamT) -> None:
        # In batches: the texts in order, each on its sender's latest state; then each state
        # written once, one journal write for the batch, the forwarded requests. Faust acks
        # the batch's records only after this body has run. A crash before the writes are
        # stored gives the texts again; a text its sender's state remembers gets its
        # verdict again (the pure core), so a verdict lost in a crash is journaled then.
        async for batch in stream.take_events(settings.screen_batch_size,
                                              within=settings.screen_window_s):
            await policies_loaded.wait()
            states: dict[str, SenderState] = {}
            partition_of: dict[str, int] = {}  # sender -> the partition of his texts
            journaled: list[Any] = []
            forwarded: list[RequestReply] = []
            for text_event in await in_order[names["inbound"]].admit(batch):
                value = text_event.value
                try:
                    command = codec.decode(value)
                    policy = live_policies.get(command.campaign_id, UNKNOWN_CAMPAIGN_POLICY)
                except CodecError as exc:  # only the webhook writes here: say it, go on
                    log.error("sms-received: undecodable record skipped (%d bytes): %s",
                              len(value), exc)
                    continue
                state = states.get(command.sender)
                if state is None:
                    stored = senders_by_pseudonym.get(command.sender)
                    state = (SenderState.from_dict(orjson.loads(stored)) if stored
                             else SenderState())
                    states[command.sender] = state
                    partition_of[command.sender] = text_event.message.partition
                if command.message_id in state.recent:
                    log.info("text %s seen before: its verdict again", command.message_id)
                screened = decide_screening(state, command, policy)
                for event in screened:
                    evolve_sender(state, event, policy)
                journaled.append(TextReceived(
                    message_id=command.message_id, campaign_id=command.campaign_id,
                    sender=command.sender, body=command.body, occurred_at=command.occurred_at,
                    number_kind=command.number_kind, country=command.country,
                    prefix=command.prefix,
                ))
                journaled.extend(screened)
                if screened[0].verdict == "forward":
                    forwarded.append(RequestReply(
                        message_id=command.message_id, campaign_id=command.campaign_id,
                        sender=command.sender, occurred_at=command.occurred_at,
                        reply_to=command.reply_to, prefix=command.prefix,
                        texts_from_sender=screened[0].texts_from_sender,
                    ))
            for sender, state in states.items():
                # Reassign: the changelog only sees values that are set.
                senders_by_pseudonym.put(sender, compact(orjson.dumps(state.to_dict())),
                                         partition_of[sender])
            await record(journaled)
            for request in forwarded:
                await produce(requests, request.campaign_id.encode(), codec.encode(request))

    # The sealed reply-to of each deferred request, per campaign ({message id: sealed}),
    # from ReplyDeferred until its release or expiry; never journaled. Keyed by campaign like
    # reply-requests, with the producer's partitioner, so a campaign's entry is in the same
    # partition number as its requests and lives with the worker that decides them.
    deferred_reply_to = app.Table(
        "deferred_reply_to_by_campaign", default=None, partitions=settings.partitions,
        key_type=str, use_partitioner=True,
    )

    def hold_deferred(decisions: Sequence[Any], reply_to: dict[str, str]) -> dict[str, str]:
        """Keep the reply-to of newly deferred requests, drop those released or expired;
        returns the reply-to of the released ones."""
        released: dict[str, str] = {}
        held: dict[str, dict[str, str]] = {}
        for d in decisions:
            t = type(d)
            if t is not ReplyDeferred and t is not ReplyExpired and not (
                    t is ReplyApproved and d.deferred_at is not None):
                continue
            entry = held.get(d.campaign_id)
            if entry is None:
                entry = held[d.campaign_id] = dict(deferred_reply_to.get(d.campaign_id) or {})
            if t is ReplyDeferred:
                if d.message_id in reply_to:
                    entry[d.message_id] = reply_to[d.message_id]
            else:
                sealed = entry.pop(d.message_id, None)
                if t is ReplyApproved and sealed is not None:
                    released[d.message_id] = sealed
        for campaign_id, entry in held.items():
            # Reassign (or delete): the changelog only sees values that are set.
            if entry:
                deferred_reply_to[campaign_id] = entry
            elif deferred_reply_to.get(campaign_id) is not None:
                del deferred_reply_to[campaign_id]
        return released

    @app.timer(interval=settings.tick_interval_s, on_leader=True)
    async def tick_campaigns() -> None:
        # The clock reaches the campaigns through their request partitions, in order with the
        # requests; what a tick releases or expires is journaled with the tick's time.
        now = now_ms()
        for campaign_id in campaigns:
            await requests.send(key=campaign_id.encode(),
                                value=codec.encode(Tick(campaign_id, now)))

    @app.agent(requests)
    async def decide_replies(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_window_s):
            admitted = await in_order[names["requests"]].admit(events)
            if not admitted:
                continue
            batch = [codec.decode(e.value) for e in admitted]  # RequestReply, SettleReply, Tick
            reply_to = {c.message_id: c.reply_to for c in batch if isinstance(c, RequestReply)}
            decisions = await deciders.decide(batch)
            await record(decisions, acked=True)
            reply_to.update(hold_deferred(decisions, reply_to))
            for decision in decisions:
                if isinstance(decision, ReplyApproved):
                    if decision.message_id not in reply_to:
                        log.error("released reply %s has no reply-to any more; not sent",
                                  decision.message_id)
                        continue
                    send = SendReply(
                        message_id=decision.message_id, campaign_id=decision.campaign_id,
                        sender=decision.sender, occurred_at=decision.occurred_at,
                        reply_to=reply_to[decision.message_id],
                        send_at=decision.send_at if decision.send_at > decision.occurred_at
                        else None,
                    )
                    await produce(outbound, decision.campaign_id.encode(), codec.encode(send))

    # One long-lived client for the broker's end offsets, shared by the snapshot timer and
    # the watchdog below (a client per call would connect and fetch metadata every time).
    offsets_client: list[AIOKafkaConsumer] = []

    async def close_offsets_client() -> None:
        while offsets_client:
            with contextlib.suppress(Exception):
                await offsets_client.pop().stop()

    @app.on_before_shutdown.connect
    async def on_shutdown_close_offsets_client(app: faust.App, **kwargs: Any) -> None:
        await close_offsets_client()

    async def end_offsets_of(topic: str | None = None,
                             tps: Sequence[Any] = ()) -> dict[tuple[str, int], int]:
        """End offsets of ``tps``, or of every partition of ``topic``; by (topic, partition)."""
        if not offsets_client:
            offsets_client.append(AIOKafkaConsumer(bootstrap_servers=settings.kafka,
                                                   group_id=None, enable_auto_commit=False))
            try:
                await offsets_client[0].start()
            except Exception:
                await close_offsets_client()  # stop what start() left half open
                raise
        client = offsets_client[0]
        try:
            if topic is not None:
                await client.topics()  # fresh metadata
                tps = [TopicPartition(topic, p)
                       for p in sorted(client.partitions_for_topic(topic) or ())]
            ends = await client.end_offsets(
                [TopicPartition(tp.topic, tp.partition) for tp in tps]) if tps else {}
        except Exception:
            await close_offsets_client()  # a new client next time
            raise
        return {(tp.topic, tp.partition): o for tp, o in ends.items()}

    snapshots = raw_topic(names["snapshots"])
    snapshot_seqs: dict[str, int] = {}

    @app.timer(interval=settings.snapshot_interval_s, on_leader=True)
    async def snapshot_campaigns() -> None:
        try:
            await take_snapshots()
        except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker
            log.warning("campaign snapshot skipped (%s: %s); next try in %g s",
                        type(exc).__name__, exc, settings.snapshot_interval_s)

    async def take_snapshots() -> None:
        # Offsets first, states second: every event after the snapshot lies after them.
        offsets = {p: o for (_, p), o in (await end_offsets_of(names["journal"])).items()}
        for state in await deciders.snapshot():
            if snapshot_seqs.get(state.campaign_id) == state.seq:
                continue
            await acknowledged(snapshots.send(key=state.campaign_id.encode(),
                                              value=encode_snapshot(state, offsets)))
            snapshot_seqs[state.campaign_id] = state.seq

    @app.agent(control)
    async def apply_controls(stream: faust.StreamT) -> None:
        # One command at a time: operator commands are rare, and no take() buffer here.
        async for value in stream:
            # Checked before any shard sees it: who signed it, what they may do, how fresh.
            now = now_ms()
            checked = authorize(value, settings.operators, settings.app_id, now,
                                allow_unsigned=settings.allow_unsigned)
            if isinstance(checked, Refusal):
                log.warning("operator command %r refused: %s (operator %r, as claimed)",
                            checked.command_id, checked.reason, checked.operator)
                await record([ControlRefused(
                    command_id=checked.command_id, campaign_id=checked.campaign_id,
                    operator=checked.operator, reason=checked.reason, occurred_at=now,
                )], acked=True)
                continue
            if not settings.operators:
                log.warning("*** INSECURE DEV MODE: unsigned operator command %s accepted ***",
                            checked.command_id)
            outcomes = await deciders.control([checked])
            await record(outcomes, acked=True)
            for event in outcomes:
                if isinstance(event, PolicyChanged):
                    log.info("campaign %s policy v%d by %s: %s", event.campaign_id,
                             event.version, event.operator, event.changes)
                    await acknowledged(policies.send(key=event.campaign_id.encode(),
                                                     value=codec.encode(event)))

    breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s)
    app.antirelou_breaker = breaker  # type: ignore[attr-defined]

    async def settle(command: SettleReply) -> None:
        await acknowledged(requests.send(key=command.campaign_id.encode(),
                                         value=codec.encode(command)))

    # The reply stage. Sends run in a pool of their own, as many threads as calls may be
    # under way (send_concurrency): asyncio's default pool has min(32, cores + 4) threads
    # and is shared with anything else that runs in a thread.
    send_pool = ThreadPoolExecutor(settings.send_concurrency,
                                   thread_name_prefix="antirelou-send")
    send_slots = asyncio.Semaphore(settings.send_concurrency)
    send_jitter = random.Random()  # one for all replies: a new Random() per reply seeds
                                   # itself from os.urandom (2% of the worker in py-spy)

    @app.on_before_shutdown.connect
    async def on_shutdown_stop_sending(app: faust.App, **kwargs: Any) -> None:
        send_pool.shutdown(wait=False, cancel_futures=True)

    async def store_send_events(events: list[Any], flush: bool) -> None:
        await record(events, acked=True)
        if flush:  # the table's "attempting" values are stored too
            await app.producer.flush()

    send_journal = GroupCommit(store_send_events)
    app.antirelou_send_journal = send_journal  # type: ignore[attr-defined]

    async def send_one(command: SendReply, event: Any) -> str:
        """Send one reply whose first ReplyAttempted is stored (retried, behind the breaker);
        journal its outcome, then store it in the table (flushed); return it."""
        mid = command.message_id
        campaign = campaigns[command.campaign_id]
        report_url = (f"{settings.report_base_url.rstrip('/')}{STATUS_PATH}"
                      f"?campaign={campaign.id}" if settings.report_base_url else None)

        async def attempt(n: int) -> None:
            if n > 1:  # the first one was journaled with the batch, before any call
                await send_journal.write(
                    [ReplyAttempted(mid, command.campaign_id, command.sender, n, now_ms())])

        def call() -> Awaitable[SendResult]:
            return asyncio.get_running_loop().run_in_executor(send_pool, functools.partial(
                gateway.send, originator=campaign.originator,
                recipient=privacy.open(command.reply_to), body=campaign.reply_text,
                reference=mid, report_url=report_url, scheduled_at=command.send_at,
            ))

        outcome = await deliver(call, attempt, retry=settings.retry, breaker=breaker,
                                rng=send_jitter, slots=send_slots)
        common = dict(message_id=mid, campaign_id=command.campaign_id, sender=command.sender)
        if outcome.kind == "sent":
            result = outcome.result
            assert result is not None
            await send_journal.write([ReplySent(
                **common, provider_message_id=result.provider_message_id,
                price_micros=result.price_micros, dry_run=result.dry_run,
                occurred_at=now_ms())])
        elif outcome.kind == "failed":
            log.warning("reply %s not sent after %d attempt(s): %s", mid, outcome.attempts,
                        outcome.error)
            await send_journal.write([ReplyFailed(
                **common, error=f"{type(outcome.error).__name__}: {outcome.error}",
                retryable=outcome.retryable, occurred_at=now_ms(),
                attempts=outcome.attempts)])
            await settle(SettleReply(mid, command.campaign_id, command.sender, "failed", None,
                                     now_ms()))
        else:
            log.warning("reply %s may or may not have been sent (%s); not sent again", mid,
                        outcome.reason)
            await send_journal.write([ReplyUncertain(**common, reason=outcome.reason or "unknown",
                                                     occurred_at=now_ms())])
        # The outcome replaces "attempting", stored at once (the flush is shared with the
        # other replies finishing now): a copy redelivered after a crash then finds it.
        replies_by_message.put(mid, outcome.kind, event.message.partition)
        recent_marks.put(mid, outcome.kind)
        await send_journal.write([], flush=True)
        return outcome.kind

    in_flight: set[str] = set()
    # A reply with no mark whose record is older than this worker or than the broker's
    # last restart may have lost its mark: asked of this worker's memory and the journal
    # before it is sent (streams/send_guard.py).
    started_ms = now_ms()
    recent_marks = RecentOutcomes()
    journal_index = JournalIndex(settings.kafka, names["journal"])
    app.antirelou_journal_index = journal_index  # type: ignore[attr-defined]

    def suspect_before_ms() -> int:
        status = settings.broker_status() if settings.broker_status is not None else None
        back = status.back_at if status is not None and status.back_at else 0
        return max(started_ms, int(back * 1000))

    async def marks_lost(batch: Sequence[Any]) -> dict[str, str]:
        """What memory and the journal know of the batch's suspect replies (no mark)."""
        boundary = suspect_before_ms()
        known: dict[str, str] = {}
        ask: dict[str, int] = {}
        for event in batch:
            at = int((event.message.timestamp or 0) * 1000)
            if at >= boundary:
                continue
            mid = codec.decode(event.value).message_id
            if replies_by_message.get(mid) is not None or mid in in_flight:
                continue
            mark = recent_marks.get(mid)
            if mark is not None:
                known[mid] = mark
            else:
                ask[mid] = at
        if ask:
            # The record's time, less a margin for clocks: its attempt came after it.
            known.update(await journal_index.lookup(ask, min(ask.values()) - 60_000))
        return known

    async def send_batch(batch: Sequence[Any]) -> None:
        # At most once per approved request, across crashes. The table (changelog-backed,
        # partitioned like sms-outbound, where every copy of one SendReply arrives) says
        # where each reply got to: "attempting" is stored (flushed, acks=all) and
        # ReplyAttempted journaled before any call; the outcome replaces it afterwards.
        # A copy that finds "attempting" comes after a crash mid-call: ReplyUncertain, no
        # second send. Check and mark have no await between them: no race between the
        # agent's concurrent actors, nor between copies within one batch.
        fresh: list[SendReply] = []
        event_of: dict[str, Any] = {}
        noted: list[Any] = []
        settles: list[SettleReply] = []
        lost = await marks_lost(batch)  # before the loop: no await between check and mark
        for event in batch:
            command = codec.decode(event.value)
            mid = command.message_id
            where = replies_by_message.get(mid)
            if where is None and mid in lost and mid not in in_flight:
                where = lost.pop(mid)
                log.warning("reply %s: its mark was lost (broker or changelog); the %s "
                            "says %s: not sent again blindly", mid,
                            "journal" if recent_marks.get(mid) is None else "worker", where)
                replies_by_message.put(mid, where, event.message.partition)
            if where is None:
                replies_by_message.put(mid, "attempting", event.message.partition)
                recent_marks.put(mid, "attempting")
                in_flight.add(mid)
                fresh.append(command)
                event_of[mid] = event
            elif mid in in_flight:  # a copy of a reply this worker is sending right now
                log.info("reply %s is being sent; this copy is dropped", mid)
            elif where == "attempting":
                replies_by_message.put(mid, "uncertain", event.message.partition)
                log.warning("reply %s: a send was under way when the worker stopped; "
                            "marked uncertain, not sent again", mid)
                noted.append(ReplyUncertain(mid, command.campaign_id, command.sender,
                                            "crash_during_send", now_ms()))
            elif where == "failed":  # the refund may not have been asked for
                settles.append(SettleReply(mid, command.campaign_id, command.sender,
                                           "failed", None, now_ms()))
            else:
                log.info("reply %s already %s; not sent again", mid, where)
        try:
            # The whole batch's attempts (and the table's "attempting") in one acknowledged
            # round trip and one flush, before the first call.
            at = now_ms()
            if fresh or noted:
                await send_journal.write(
                    [*noted, *(ReplyAttempted(c.message_id, c.campaign_id, c.sender, 1, at)
                               for c in fresh)], flush=True)
            # Then every call at once (bounded by send_slots); a reply being retried holds
            # up only itself, and the batch until its outcome is stored.
            outcomes = await asyncio.gather(*(send_one(c, event_of[c.message_id])
                                              for c in fresh), return_exceptions=True)
        finally:
            in_flight.difference_update(c.message_id for c in fresh)
        for command_ in settles:
            await settle(command_)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:  # e.g. the broker went away: the agent stops, the batch is redelivered
            raise errors[0]

    @app.agent(outbound, concurrency=settings.send_batches)
    async def send_replies(stream: faust.StreamT) -> None:
        # In batches: one acknowledged round trip for a batch's attempts, one call per reply
        # in the send pool, outcomes journaled together (send_journal). The batch's records
        # are acknowledged to Kafka only once every reply of it has its outcome stored, so a
        # crash redelivers them (and the table turns "attempting" into uncertain).
        async for events in stream.take_events(settings.send_batch_size,
                                               within=settings.send_batch_window_s):
            await send_batch(events)

    async def read_bounded(request: Request) -> bytes:
        # aiohttp's own limit (1 MiB) answers in plain text: refuse bigger bodies here, in
        # JSON, and never buffer more than one byte past the limit.
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
        chunks, size = [], 0
        while size <= MAX_BODY_BYTES:
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
        return b"".join(chunks)

    def signed_url(request: Request) -> str:
        # The URL MessageBird called, path and query as sent (raw_path): what it hashed.
        try:
            base = (settings.public_url.rstrip("/") if settings.public_url
                    else f"{request.scheme}://{request.host}")
            return base + request.raw_path
        except ValueError:  # a Host header no URL can be built from
            raise Unauthorized("invalid_signature", "the request URL cannot be checked") from None

    # What the embedded broker may have lost when it died: the texts acknowledged in its
    # last seconds, written again once `up` has restarted it (streams/lost_tail.py).
    ack_window = AckWindow() if settings.broker_status is not None else None
    app.antirelou_ack_window = ack_window  # type: ignore[attr-defined]

    if ack_window is not None:
        restarts_seen = [0]

        @app.timer(interval=0.2)
        async def rewrite_texts_after_a_broker_crash() -> None:
            status = settings.broker_status()
            if status.up and status.restarts > restarts_seen[0]:
                restarts_seen[0] = status.restarts
                await resume_what_the_broker_kept(status.ends_at_restart or {})
            again = ack_window.to_rewrite(status)
            if not again:
                return
            try:
                futures = [await produce(inbound, k, v) for k, v in again]
                await asyncio.gather(*futures)
            except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker
                log.error("could not write again %d text(s) acknowledged before the broker "
                          "died: %s; trying again", len(again), type(exc).__name__)
                ack_window.retry_later(len(again))
                return
            log.warning("wrote again the %d text(s) acknowledged in the %g s before the broker "
                        "died (it keeps about its last second only); the screening takes a "
                        "text given twice once", len(again), ack_window.seconds)

    @app.page(WEBHOOK_PATH)
    class InboundWebhook(View):
        async def post(self, request: Request) -> Response:
            claims: dict[str, Any] = {}
            try:
                raw = await read_bounded(request)
                if verifier is not None:
                    claims = verifier.verify(request.headers.get("MessageBird-Signature-JWT"),
                                             signed_url(request), raw)
                sms = parse_inbound(request.headers.get("Content-Type", ""), raw)
            except WebhookError as exc:
                return self.json(exc.body(), status=exc.status)
            if broker_down():
                if verifier is not None and claims:
                    verifier.forget(claims["jti"])  # MessageBird's retry may carry it
                return self.json({"error": "unavailable",
                                  "message": "the broker is down; retry"}, status=503)
            occurred_at = sms.created_at_ms if sms.created_at_ms is not None else now_ms()
            campaign = by_number.get(sms.recipient)
            try:
                if campaign is None:
                    rejected = TextRejected(
                        message_id=sms.message_id, recipient=privacy.pseudonym(sms.recipient),
                        reason="unknown_recipient", occurred_at=occurred_at,
                    )
                    async with asyncio.timeout(settings.ack_timeout_s):
                        await acknowledged(produce(journal, rejected.recipient.encode(),
                                                   codec.encode(rejected)))
                    err = BadRequest("unknown_recipient", "no campaign uses this recipient number",
                                     "recipient", status=404)
                    return self.json(err.body(), status=err.status)
                sender = privacy.pseudonym(sms.originator)
                # Here, while the number is in clear (cached by pseudonym, not by number).
                number = number_facts.get(sender, sms.originator)
                command = ScreenText(
                    message_id=sms.message_id, campaign_id=campaign.id, sender=sender,
                    body=sms.body, occurred_at=occurred_at, reply_to=privacy.seal(sms.originator),
                    number_kind=number.kind, country=number.country, prefix=number.prefix,
                )
                # asyncio.timeout, not wait_for: no extra task per request.
                value = codec.encode(command)
                if ack_window is not None:
                    # In the order of the log (the producer's), not of the acks: written
                    # again, a sender's texts must come in the order they were screened.
                    ack_window.remember(sender.encode(), value)
                async with asyncio.timeout(settings.ack_timeout_s):
                    await acknowledged(produce(inbound, sender.encode(), value))
            except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
                log.error("inbound text %s not stored: %s", sms.message_id, type(exc).__name__)
                if verifier is not None and claims:
                    # Not stored: MessageBird's retry may carry the same token; the screening
                    # still refuses a text stored twice (duplicate message id).
                    verifier.forget(claims["jti"])
                return self.json(
                    {"error": "unavailable", "message": "the text could not be stored; retry"},
                    status=503,
                )
            return self.json({"status": "accepted", "message_id": sms.message_id,
                              "campaign": campaign.id})

    @app.page(STATUS_PATH)
    class DeliveryReports(View):
        """MessageBird's delivery report for one of our replies: journaled as a fact; its
        price, if any, goes to the campaign to replace the estimated cost."""

        async def get(self, request: Request) -> Response:
            try:
                if verifier is not None:
                    verifier.verify(request.headers.get("MessageBird-Signature-JWT"),
                                    signed_url(request), b"")
                report = parse_delivery_report(request.query, len(request.query_string))
            except WebhookError as exc:
                return self.json(exc.body(), status=exc.status)
            if report.campaign_id not in campaigns:
                err = BadRequest("unknown_campaign", "no such campaign", "campaign", status=404)
                return self.json(err.body(), status=err.status)
            sender = privacy.pseudonym(report.recipient)
            at = report.status_at_ms if report.status_at_ms is not None else now_ms()
            fact = DeliveryReported(
                message_id=report.reference, campaign_id=report.campaign_id, sender=sender,
                provider_message_id=report.provider_message_id, status=report.status,
                status_reason=report.status_reason, error_code=report.error_code,
                price_micros=report.price_micros, currency=report.currency, occurred_at=at,
            )
            try:
                await asyncio.wait_for(acknowledged(journal.send(
                    key=sender.encode(), value=codec.encode(fact))), settings.ack_timeout_s)
                if report.price_micros is not None and report.currency in (None, "EUR"):
                    await asyncio.wait_for(settle(SettleReply(
                        report.reference, report.campaign_id, sender, "priced",
                        report.price_micros, at)), settings.ack_timeout_s)
            except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
                log.error("delivery report for %s not stored: %s", report.reference,
                          type(exc).__name__)
                return self.json({"error": "unavailable",
                                  "message": "the report could not be stored; retry"},
                                 status=503)
            return self.json({"status": "accepted", "reference": report.reference})

    # Faust 0.15.3 sometimes drops records it has already taken from aiokafka (seen after a
    # worker restart on an existing group: aiokafka's position moves past a text that no
    # agent ever gets, and nothing fetches it again until the next rebalance), and after a
    # broker restart a partition may not be fetched again at all. This timer compares, for
    # each source partition, the broker's end offset with what Faust handed to the agents;
    # when records are waiting, nothing of the partition is pending in the agents, and the
    # picture has not moved for two ticks, it seeks the partition back to the first
    # undelivered offset. Redelivery is harmless: every agent is idempotent.
    sources = {names["inbound"], names["requests"], names["outbound"], names["control"]}
    suspects: dict[Any, tuple[int, int]] = {}
    tail_guard = TailGuard()
    app.antirelou_tail_guard = tail_guard  # type: ignore[attr-defined]
    app.antirelou_redelivered = 0  # type: ignore[attr-defined]

    @app.timer(interval=settings.redelivery_check_s)
    async def redeliver_dropped_records() -> None:
        try:
            await check_for_dropped_records()
        except Exception as exc:  # noqa: BLE001 - e.g. the broker is down; try again later
            log.info("check for undelivered records skipped: %s", type(exc).__name__)
            suspects.clear()

    async def check_for_dropped_records() -> None:
        consumer = app.consumer
        if app.rebalancing or not consumer.flow_active:
            suspects.clear()
            return
        pending = {message.tp for message in consumer.unacked}
        watched = [tp for tp in consumer.assignment() if tp.topic in sources]
        if not watched:
            return
        ends = await end_offsets_of(tps=watched)
        for tp in watched:
            end = ends.get((tp.topic, tp.partition))
            if tp in pending or end is None:
                suspects.pop(tp, None)
                continue
            # The last offset handed to the agents (Faust's monitor, not moved by seeks),
            # else where this assignment started: the committed offset or the beginning.
            last = app.monitor.tp_read_offsets.get(tp)
            expected = last + 1 if last is not None else await start_offset(tp)
            # Faust drops what it fetches below its read offset (the last record read, or
            # the committed offset after a rebalance).
            read_from = consumer._read_offset.get(tp)
            ahead = max(x for x in (expected, read_from, -1) if x is not None)
            if end < ahead:
                # The broker lost records this worker had read or committed: waiting for
                # them would leave every new record unread. Say so, go on from the end.
                fact = tail_guard.check(tp.topic, tp.partition, ahead, end,
                                        "position" if last is not None else "committed",
                                        now_ms())
                await resume_at_end(consumer, tp, end)
                app.monitor.tp_read_offsets.pop(tp, None)
                suspects.pop(tp, None)
                if fact is not None:
                    await acknowledged(produce(journal, tp.topic.encode(), codec.encode(fact)))
                continue
            if expected is None or end <= expected:
                suspects.pop(tp, None)
                continue
            if suspects.get(tp) != (end, expected):
                suspects[tp] = (end, expected)
                continue
            log.warning("%s: records %d..%d are waiting but were never delivered; fetching "
                        "them again", tp, expected, end - 1)
            await consumer.seek_wait({tp: expected})
            suspects.pop(tp, None)
            app.antirelou_redelivered += end - expected  # type: ignore[attr-defined]

    async def resume_what_the_broker_kept(ends: Mapping[tuple[str, int], int]) -> None:
        """After `up` restarted its broker: each source partition this worker had read past
        the end the broker came back with is read again from that end (streams/lost_tail)."""
        consumer = app.consumer
        for tp in list(consumer.assignment()):
            end = ends.get((tp.topic, tp.partition))
            if tp.topic not in sources or end is None:
                continue
            read = consumer._read_offset.get(tp)
            ahead = max(read + 1 if read is not None else -1,
                        consumer._committed_offset.get(tp) or -1,
                        await consumer.position(tp) or -1)
            fact = tail_guard.check(tp.topic, tp.partition, ahead, end, "position", now_ms())
            if fact is None:
                continue
            await resume_at_end(consumer, tp, end)
            app.monitor.tp_read_offsets.pop(tp, None)
            suspects.pop(tp, None)
            try:
                await acknowledged(produce(journal, tp.topic.encode(), codec.encode(fact)))
            except Exception as exc:  # noqa: BLE001 - said in the log already; go on
                log.error("RecordsLost not journaled: %s", type(exc).__name__)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            broker = settings.broker_status() if settings.broker_status is not None else None
            body = {
                "status": "ok" if broker is None or broker.up else
                          f"broker down: {broker.reason}",
                "broker": broker.to_json() if broker is not None else None,
                # Records the broker lost that this worker had read (streams/lost_tail.py).
                "records_lost": tail_guard.health(),
                "texts_written_again": ack_window.rewritten if ack_window is not None else 0,
                "campaigns": sorted(campaigns),
                "dry_run": isinstance(gateway, DryRunGateway),
                "signed_webhooks": verifier is not None,
                "messagebird_circuit": breaker.state,
                # Times Faust was found to have dropped fetched records, fetched again.
                "records_refetched": {
                    "holes": sum(guard.holes for guard in in_order.values()),
                    "tail": app.antirelou_redelivered,  # type: ignore[attr-defined]
                },
            }
            return self.json(body, status=200 if broker is None or broker.up else 503)

    @app.page("/campaigns")
    class CampaignStatus(View):
        async def get(self, request: Request) -> Response:
            return self.json(await deciders.status())

    app.antirelou_topics = names  # type: ignore[attr-defined]
    return app
