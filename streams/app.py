"""The Faust app: topics, tables, then the stages (``streams.stages``), wired by ``create_app``.

Nothing is built at import time: ``streams.cli`` (``antirelou worker`` / ``antirelou up``)
loads the settings, starts Ray and the campaign shards, then calls ``create_app`` and runs
a Faust worker on it. ``Settings.role`` (``antirelou worker --role``) says which part:

- ``all``: everything below (``up``, one machine);
- ``web``: the web views alone, in Faust's producer-only mode: no Ray, no stage, no group;
- ``decide``: every stage but the send (and the views): a Ray node, no provider key;
- ``send``: the send stage alone, in a consumer group of its own (``<app id>-send``): the
  provider keys, no Ray. With ``decide``, no process that holds the keys runs Ray tasks.

Data flow (topic names are prefixed with the app id)::

    POST /webhooks/messagebird/sms --ScreenText--> sms-received (key: sender pseudonym)
    POST /webhooks/bird (Bird's sms.inbound events, stages.bird) --ScreenText--> idem
    screen_senders: per-sender table, TextReceived + SenderScreened -> journal
        forward --RequestReply--> reply-requests (key: campaign)
    decide_replies: batches -> Ray campaign shards, ReplyApproved/Denied/Deferred -> journal
        approved --SendReply--> sms-outbound (key: campaign)
        (a deferred request's sealed reply-to waits in deferred_reply_to_by_campaign,
         one entry per request)
    tick_campaigns (leader timer) --Tick--> reply-requests: releases and expiries
    send_replies: SMS gateway (MessageBird or dry run), ReplySent/Failed -> journal

Ordering: the sender table is keyed like ``sms-received``, so one worker screens all texts of
a sender in order; ``reply-requests`` is keyed by campaign, so one worker feeds a campaign's
requests to its shard in order, and each decision carries the campaign's sequence number.
The journal is keyed by sender pseudonym: a sender's events are in one partition, in order.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore

from actors.campaign import initial_policy
from actors.snapshot import MAX_SNAPSHOT_BYTES
from infra.faust.httpguard import bound_http_connections
from infra.gateway import SmsGateway
from infra.partitioner import MemoPartitioner
from infra.privacy import Privacy
from infra.sending import CircuitBreaker
from streams.intake.messagebird import SignatureVerifier
from streams.settings import ACK_TIMEOUT_S, STATUS_PATH, WEBHOOK_PATH, Settings, topic_names
from streams.stages.bird import register_bird
from streams.stages.broker import register_broker_recovery
from streams.stages.control import register_control
from streams.stages.decide import register_decide
from streams.stages.notary import register_notary
from streams.stages.runtime import Deciders, Runtime, Tables, Topics
from streams.stages.screen import register_order_guards, register_screening
from streams.stages.send import register_send
from streams.stages.views import register_status_views, register_views
from streams.stages.watchdog import register_watchdog

ROLES = ("all", "web", "decide", "send")  # Settings.role

__all__ = [
    "ACK_TIMEOUT_S", "ROLES", "STATUS_PATH", "WEBHOOK_PATH", "Deciders", "Settings",
    "TextPartitionedTable", "create_app", "topic_names",
]


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

    @contextlib.contextmanager
    def _to_partition(self, key: Any, partition: int) -> Iterator[None]:
        self.partition_of[key] = partition
        try:
            yield
        finally:
            del self.partition_of[key]

    def put(self, key: Any, value: Any, partition: int) -> None:
        """``table[key] = value``, to the changelog's ``partition``."""
        with self._to_partition(key, partition):
            self[key] = value

    def remove(self, key: Any, partition: int) -> None:
        """``del table[key]`` (a tombstone to the changelog's ``partition``)."""
        with self._to_partition(key, partition):
            if key in self:
                del self[key]

    async def put_many(self, items: Sequence[tuple[Any, Any, int]]) -> None:
        """``put`` of many (key, value, partition), their changelog records written as one
        record batch per partition straight to the producer under Faust's: the same bytes
        and partitions as ``put`` (the changelog topic's own serializers), without Faust's
        buffer, FutureMessage and callback per record (profiled: a changelog record cost
        five times a journal one). A value of None deletes the key (a tombstone). For the
        in-memory store only (its persisted offsets are not kept, so the callback does
        nothing); any other store: ``put`` / ``remove`` one by one."""
        producer = await self.app.maybe_start_producer()
        ensure = getattr(producer, "_ensure_producer", None)
        if ensure is None or not isinstance(self.data, MemoryStore):
            for key, value, partition in items:
                if value is None:
                    self.remove(key, partition)
                else:
                    self.put(key, value, partition)
            return
        kafka, topic = ensure(), self.changelog_topic
        name = topic.get_topic_name()
        records: list[tuple[int, bytes, bytes | None]] = []
        for key, value, partition in items:
            key_bytes, key_headers = topic.prepare_key(key, self.key_serializer)
            if value is None:
                if self.data.pop(key, None) is not None:
                    records.append((partition, key_bytes, None))
                continue
            value_bytes, value_headers = topic.prepare_value(value, self.value_serializer)
            if key_headers or value_headers:  # a schema that adds headers: Faust's way
                self.put(key, value, partition)
                continue
            self.data[key] = value
            records.append((partition, key_bytes, value_bytes))
        if not records:
            return
        await kafka.partitions_for(name)  # the topic's metadata, as send() waits for it
        batches: dict[int, Any] = {}
        full: list[tuple[int, Any]] = []
        for partition, key_bytes, value_bytes in records:
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = kafka.create_batch()
            if batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:
                full.append((partition, batch))
                batch = batches[partition] = kafka.create_batch()
                batch.append(key=key_bytes, value=value_bytes, timestamp=None)
        for partition, batch in (*full, *batches.items()):
            await kafka.send_batch(batch, name, partition=partition)


def create_app(
    settings: Settings,
    deciders: Deciders | None,
    gateway: SmsGateway | None,
    clock: Callable[[], float] = time.time,
) -> faust.App:
    """The app of ``settings.role``: "all", every stage and the web views; "web", the
    webhooks and /health only (``deciders`` and ``gateway`` unused, may be None);
    "decide", all but the send stage (``gateway`` unused); "send", the send stage and
    /health (``deciders`` unused)."""
    if settings.role not in ROLES:
        raise ValueError(f"unknown role {settings.role!r}: one of {', '.join(ROLES)}")
    if settings.role != "send":  # the send role serves no webhook
        _check_signing(settings)
    names = topic_names(settings.app_id)
    app = _new_app(settings)
    web_only, send_only = settings.role == "web", settings.role == "send"
    tables = (Tables(None, None, None) if web_only
              else build_tables(app, settings.partitions, send_only=send_only))
    rt = Runtime(
        app=app, settings=settings, deciders=deciders, gateway=gateway,  # type: ignore[arg-type]
        clock=clock, names=names, topics=_topics(app, names, settings.partitions),
        tables=tables,
        privacy=Privacy(settings.secret),
        verifier=SignatureVerifier(settings.signing_key) if settings.signing_key else None,
        campaigns={c.id: c for c in settings.campaigns},
        live_policies={c.id: initial_policy(c) for c in settings.campaigns},
        breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s),
    )
    if web_only:
        _web_only(rt)
        return app
    app.antirelou_faults = rt.fault_figures  # /metrics (streams.console.ops)
    if send_only:
        _send_only(rt)
        return app
    # The stages, in the order of the data flow.
    register_control(rt)  # follow_policies first: screening waits for the live policies
    register_order_guards(rt)
    register_screening(rt)
    register_decide(rt)
    if settings.role == "all":  # "decide": the send stage runs apart (role "send")
        register_send(rt)
    register_watchdog(rt)
    register_notary(rt)  # leader: signed checkpoints of the journal
    register_broker_recovery(rt)  # under `up`: what its broker lost when it died
    register_views(rt)
    if settings.bird_channels:
        register_bird(rt)
    bound_http_connections(app, settings.http_idle_timeout_s)
    return app


def _web_only(rt: Runtime) -> None:
    """The webhooks of a web-only process. Faust's producer-only mode starts the web server
    and the producer, not the consumer: the process never joins the app's consumer group,
    so it takes no partition of any stage topic (nor the leader's, which runs the timers)
    from the full workers, and holds no table. No agent, timer or task is registered: the
    webhooks read nothing the stages write (no live policy, no table), so nothing needs
    following. Under `up` there is no web-only process (its broker's recovery is a stage)."""
    rt.app.producer_only = True
    register_views(rt)
    if rt.settings.bird_channels:
        register_bird(rt)
    bound_http_connections(rt.app, rt.settings.http_idle_timeout_s)


def _send_only(rt: Runtime) -> None:
    """The send stage of a process that holds the provider keys and is no Ray node: it
    takes the SendReply records of sms-outbound in a consumer group of its own (Faust's app
    id ``<app id>-send``: its table, replies_by_message, and its rebalances apart from the
    deciding workers'), journals the outcomes and settles failed replies through
    reply-requests. /health only; no webhook, no stage of the deciding workers."""
    register_send(rt)
    register_watchdog(rt)
    register_status_views(rt)
    bound_http_connections(rt.app, rt.settings.http_idle_timeout_s)


def faust_app_id(settings: Settings) -> str:
    """Faust's app id, its consumer group and its tables' prefix: the deployment's app id,
    but for the send role's group of its own."""
    return f"{settings.app_id}-send" if settings.role == "send" else settings.app_id


def _check_signing(settings: Settings) -> None:
    """Webhooks are signed, unless in insecure development mode (ValueError)."""
    if settings.bird_channels and settings.bird_signing_key is None \
            and not settings.allow_unsigned:
        raise ValueError(
            "no Bird webhook signing key: set BIRD_SIGNING_KEY, or pass --insecure-dev "
            "to accept unsigned webhooks while developing"
        )
    if settings.signing_key is None and not settings.allow_unsigned \
            and not settings.bird_channels:
        raise ValueError(
            "no webhook signing key: set MESSAGEBIRD_SIGNING_KEY, or pass --insecure-dev "
            "to accept unsigned webhooks while developing"
        )


def _new_app(settings: Settings) -> faust.App:
    from infra.kafka_auth import KafkaAuth

    return faust.App(
        faust_app_id(settings),
        broker=f"kafka://{settings.kafka}",
        # TLS and SASL/SCRAM as this process's role connects (infra/kafka_auth.py).
        broker_credentials=KafkaAuth.from_env().faust_credentials(),
        store="memory://",
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=60.0,
        # A worker that dies (kill -9) gives its partitions up after 10 s, not Faust's 60.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_max_request_size=MAX_SNAPSHOT_BYTES,  # campaign snapshots (actors/snapshot.py)
        # The default partitioner's partitions, each key's murmur2 kept (infra/partitioner.py).
        producer_partitioner=MemoPartitioner(),
        # No standby replicas (Faust's default is one): a standby reads and applies every
        # changelog record of another worker's tables, and with the in-memory store it
        # buys nothing, since a worker given a partition reads its changelog from the
        # start whatever it held (faust/stores/memory.py: persisted_offset is None). With
        # two workers it cost 0.08-0.12 ms of CPU per text (two workers' CPU per text
        # 1.24-1.43x one worker's; without, 1.10 or less) and a second copy of the tables;
        # the takeover took as long with it (tests/benchmarks/README.md, sixth pass).
        table_standby_replicas=0,
    )


def _topics(app: faust.App, names: dict[str, str], partitions: int) -> Topics:
    def raw_topic(name: str, partitions: int = partitions) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=partitions,
        )

    return Topics(
        inbound=raw_topic(names["inbound"]), requests=raw_topic(names["requests"]),
        outbound=raw_topic(names["outbound"]), journal=raw_topic(names["journal"]),
        control=raw_topic(names["control"]), policies=raw_topic(names["policies"], 1),
        snapshots=raw_topic(names["snapshots"]), bodies=raw_topic(names["bodies"]),
    )


def build_tables(app: faust.App, partitions: int, send_only: bool = False) -> Tables:
    if send_only:  # the send stage's table only
        return Tables(None, _replies_table(app, partitions), None)
    return Tables(
        # The sender pseudonym -> his SenderState as orjson bytes, in the partition of the
        # sender's texts (sms-received is keyed by the pseudonym). Bytes, not the dict: about
        # a third of the memory per sender (a million senders fit), and nothing to serialize
        # for the changelog. Changelogs written as JSON dicts read back the same.
        senders_by_pseudonym=app.tables.add(TextPartitionedTable(
            app, name="senders_by_pseudonym", default=None, beacon=app.tables.beacon,
            partitions=partitions, key_type=str, value_serializer="raw",
        )),
        replies_by_message=_replies_table(app, partitions),
        # The sealed reply-to of each deferred request, by message id, from ReplyDeferred
        # until its release or expiry (streams.rules.approvals), never journaled; written to
        # the changelog partition of its campaign's requests (reply-requests is keyed by
        # campaign), so it lives with the worker that decides them. One entry per request:
        # a record per campaign held its whole queue and passed the broker's 1 MB limit at
        # about 11,300 requests. (The name is from that first layout, whose entries are
        # still read.)
        deferred_reply_to=app.tables.add(TextPartitionedTable(
            app, name="deferred_reply_to_by_campaign", default=None, beacon=app.tables.beacon,
            partitions=partitions, key_type=str, use_partitioner=True,
        )),
    )


def _replies_table(app: faust.App, partitions: int) -> Any:
    # Inbound message ids whose reply was handed to the gateway. Written in the partition
    # of sms-outbound (keyed by campaign), where every copy of one SendReply arrives.
    return app.tables.add(TextPartitionedTable(
        app, name="replies_by_message", default=None, beacon=app.tables.beacon,
        partitions=partitions, key_type=str,
    ))
