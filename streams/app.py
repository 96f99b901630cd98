"""The Faust app: topics, tables, agents and web views, built by ``create_app``.

Nothing is built at import time: ``streams.cli`` (``antirelou worker`` / ``antirelou up``)
loads the settings, starts Ray and the campaign shards, then calls ``create_app`` and runs
a Faust worker on it.

Data flow (topic names are prefixed with the app id)::

    POST /webhooks/messagebird/sms --ScreenText--> sms-received (key: sender pseudonym)
    screen_senders: per-sender table, TextReceived + SenderScreened -> journal
        forward --RequestReply--> reply-requests (key: campaign)
    decide_replies: batches -> Ray campaign shards, ReplyApproved/Denied -> journal
        approved --SendReply--> sms-outbound (key: campaign)
    send_replies: SMS gateway (MessageBird or dry run), ReplySent/Failed -> journal

Ordering: the sender table is keyed like ``sms-received``, so one worker screens all texts of
a sender in order; ``reply-requests`` is keyed by campaign, so one worker feeds a campaign's
requests to its shard in order, and each decision carries the campaign's sequence number.
The journal is keyed by sender pseudonym: a sender's events are in one partition, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from actors.campaign import CampaignState, ControlOutcome, Decision, initial_policy
from actors.snapshot import MAX_SNAPSHOT_BYTES, encode_snapshot
from infra.journal import end_offsets
from infra.messagebird_gateway import (
    DryRunGateway,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
)
from infra.numbers import classify
from infra.privacy import Privacy
from schemas import codec
from schemas.campaign import Campaign
from schemas.commands import ControlCommand, RequestReply, ScreenText, SendReply
from schemas.events import (
    PolicyChanged,
    ReplyApproved,
    ReplyFailed,
    ReplySent,
    TextReceived,
    TextRejected,
)
from schemas.policy import Policy, apply_changes
from streams.screening import SenderState, decide_screening, evolve_sender
from streams.webhook import BadRequest, SignatureVerifier, WebhookError, parse_inbound

log = logging.getLogger("antirelou")

WEBHOOK_PATH = "/webhooks/messagebird/sms"
ACK_TIMEOUT_S = 10.0
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


class Gateway(Protocol):
    def send(
        self, *, originator: str, recipient: str, body: str, reference: str,
        report_url: str | None = None,
    ) -> SendResult: ...


class Deciders(Protocol):
    async def decide(self, batch: list[RequestReply]) -> list[Decision]: ...
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
    send_concurrency: int = 8
    snapshot_interval_s: float = 30.0
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
    names = topic_names(settings.app_id)

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

    senders_by_pseudonym = app.Table(
        "senders_by_pseudonym",
        default=None,
        partitions=settings.partitions,
        key_type=str,  # the sender pseudonym; values are SenderState dicts (JSON changelog)
    )
    # Inbound message ids whose reply was handed to the gateway. Written in the partition of
    # sms-outbound (keyed by campaign), where every copy of one SendReply arrives.
    replies_by_message = app.Table(
        "replies_by_message", default=None, partitions=settings.partitions, key_type=str,
    )

    async def record(events: Sequence[Any], acked: bool = False) -> None:
        # Journal key: the sender pseudonym, so one sender's story is totally ordered (the
        # screening replay needs that); campaign events carry their own sequence number.
        futures = []
        for event in events:
            key = getattr(event, "sender", None) or event.campaign_id
            futures.append(await journal.send(key=key.encode(), value=codec.encode(event)))
        if acked:
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

    @app.agent(inbound)
    async def screen_senders(stream: faust.StreamT) -> None:
        async for value in stream:
            command = codec.decode(value)
            await policies_loaded.wait()
            policy = live_policies[command.campaign_id]
            stored = senders_by_pseudonym.get(command.sender)
            state = SenderState.from_dict(stored) if stored else SenderState()
            screened = decide_screening(state, command, policy)
            for event in screened:
                evolve_sender(state, event, policy)
            # Reassign: the changelog only sees values that are set.
            senders_by_pseudonym[command.sender] = state.to_dict()
            received = TextReceived(
                message_id=command.message_id, campaign_id=command.campaign_id,
                sender=command.sender, body=command.body, occurred_at=command.occurred_at,
                number_kind=command.number_kind, country=command.country, prefix=command.prefix,
            )
            await record([received, *screened])
            if screened[0].verdict == "forward":
                request = RequestReply(
                    message_id=command.message_id, campaign_id=command.campaign_id,
                    sender=command.sender, occurred_at=command.occurred_at,
                    reply_to=command.reply_to,
                )
                await requests.send(key=command.campaign_id.encode(), value=codec.encode(request))

    @app.agent(requests)
    async def decide_replies(stream: faust.StreamT) -> None:
        async for values in stream.take(settings.batch_size, within=settings.batch_window_s):
            batch = [codec.decode(v) for v in values]
            reply_to = {c.message_id: c.reply_to for c in batch}
            decisions = await deciders.decide(batch)
            await record(decisions, acked=True)
            for decision in decisions:
                if isinstance(decision, ReplyApproved):
                    send = SendReply(
                        message_id=decision.message_id, campaign_id=decision.campaign_id,
                        sender=decision.sender, occurred_at=decision.occurred_at,
                        reply_to=reply_to[decision.message_id],
                    )
                    await outbound.send(
                        key=decision.campaign_id.encode(), value=codec.encode(send)
                    )

    snapshots = raw_topic(names["snapshots"])
    snapshot_seqs: dict[str, int] = {}

    @app.timer(interval=settings.snapshot_interval_s, on_leader=True)
    async def snapshot_campaigns() -> None:
        # Offsets first, states second: every event after the snapshot lies after them.
        offsets = await end_offsets(settings.kafka, names["journal"])
        for state in await deciders.snapshot():
            if snapshot_seqs.get(state.campaign_id) == state.seq:
                continue
            fut = await snapshots.send(key=state.campaign_id.encode(),
                                       value=encode_snapshot(state, offsets))
            await fut
            snapshot_seqs[state.campaign_id] = state.seq

    @app.agent(control)
    async def apply_controls(stream: faust.StreamT) -> None:
        # One command at a time: operator commands are rare, and no take() buffer here.
        async for value in stream:
            outcomes = await deciders.control([codec.decode(value)])
            await record(outcomes, acked=True)
            for event in outcomes:
                if isinstance(event, PolicyChanged):
                    log.info("campaign %s policy v%d by %s: %s", event.campaign_id,
                             event.version, event.operator, event.changes)
                    fut = await policies.send(key=event.campaign_id.encode(),
                                              value=codec.encode(event))
                    await fut

    @app.agent(outbound, concurrency=settings.send_concurrency)
    async def send_replies(stream: faust.StreamT) -> None:
        async for value in stream:
            command = codec.decode(value)
            # At-least-once delivery may bring the same SendReply again: send at most once.
            # Check and mark have no await between them, so concurrent actors cannot race.
            if replies_by_message.get(command.message_id) is not None:
                log.info("reply %s already handed to the gateway; not sent again",
                         command.message_id)
                continue
            replies_by_message[command.message_id] = "attempted"
            campaign = campaigns[command.campaign_id]
            number = privacy.open(command.reply_to)
            try:
                result = await asyncio.to_thread(
                    gateway.send,
                    originator=campaign.originator,
                    recipient=number,
                    body=campaign.reply_text,
                    reference=command.message_id,
                )
            except GatewayError as exc:
                log.warning("reply %s failed: %s", command.message_id, exc)
                await record([ReplyFailed(
                    message_id=command.message_id, campaign_id=command.campaign_id,
                    sender=command.sender, error=type(exc).__name__ + ": " + str(exc),
                    retryable=isinstance(exc, GatewayTimeout | GatewayUnavailable),
                    occurred_at=int(clock() * 1000),
                )])
                continue
            await record([ReplySent(
                message_id=command.message_id, campaign_id=command.campaign_id,
                sender=command.sender, provider_message_id=result.provider_message_id,
                price_micros=result.price_micros, dry_run=result.dry_run,
                occurred_at=int(clock() * 1000),
            )])

    async def acknowledged(send: Awaitable[Any]) -> None:
        # Two awaits: the first queues the record, the second waits for the broker's ack
        # (acks=all), so a 200 means the text is stored.
        fut = await send
        await fut

    @app.page(WEBHOOK_PATH)
    class InboundWebhook(View):
        async def post(self, request: Request) -> Response:
            raw = await request.read()
            try:
                if verifier is not None:
                    url = (settings.public_url.rstrip("/") + request.path_qs
                           if settings.public_url else str(request.url))
                    verifier.verify(request.headers.get("MessageBird-Signature-JWT"), url, raw)
                sms = parse_inbound(request.headers.get("Content-Type", ""), raw)
            except WebhookError as exc:
                return self.json(exc.body(), status=exc.status)
            occurred_at = sms.created_at_ms if sms.created_at_ms is not None else int(clock() * 1000)
            campaign = by_number.get(sms.recipient)
            try:
                if campaign is None:
                    rejected = TextRejected(
                        message_id=sms.message_id, recipient=privacy.pseudonym(sms.recipient),
                        reason="unknown_recipient", occurred_at=occurred_at,
                    )
                    await asyncio.wait_for(
                        acknowledged(journal.send(key=rejected.recipient.encode(),
                                                  value=codec.encode(rejected))),
                        ACK_TIMEOUT_S,
                    )
                    err = BadRequest("unknown_recipient", "no campaign uses this recipient number",
                                     "recipient", status=404)
                    return self.json(err.body(), status=err.status)
                sender = privacy.pseudonym(sms.originator)
                number = classify(sms.originator)  # here, while the number is in clear
                command = ScreenText(
                    message_id=sms.message_id, campaign_id=campaign.id, sender=sender,
                    body=sms.body, occurred_at=occurred_at, reply_to=privacy.seal(sms.originator),
                    number_kind=number.kind, country=number.country, prefix=number.prefix,
                )
                await asyncio.wait_for(
                    acknowledged(inbound.send(key=sender.encode(), value=codec.encode(command))),
                    ACK_TIMEOUT_S,
                )
            except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
                log.error("inbound text %s not stored: %s", sms.message_id, type(exc).__name__)
                return self.json(
                    {"error": "unavailable", "message": "the text could not be stored; retry"},
                    status=503,
                )
            return self.json({"status": "accepted", "message_id": sms.message_id,
                              "campaign": campaign.id})

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({
                "status": "ok",
                "campaigns": sorted(campaigns),
                "dry_run": isinstance(gateway, DryRunGateway),
                "signed_webhooks": verifier is not None,
            })

    @app.page("/campaigns")
    class CampaignStatus(View):
        async def get(self, request: Request) -> Response:
            return self.json(await deciders.status())

    app.antirelou_topics = names  # type: ignore[attr-defined]
    return app
