"""The web views: MessageBird's inbound-text webhook (a text becomes a ScreenText on
sms-received, acked before the 200), its delivery-report webhook (journaled; a price settles
the reply's cost), ``/health`` and ``/campaigns`` (a web-only process, ``--role web``: its
own ``/health``, no ``/campaigns``). Parsing and signatures: ``streams.intake.messagebird``,
``streams.intake.messagebird_reports``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.web import Request, Response, View

from infra.faust.patches import bulk_health
from infra.gateway import DryRunGateway
from schemas import codec
from schemas.commands import ScreenText, SettleReply
from schemas.events import DeliveryReported, TextRejected, TextTimeClamped
from streams.intake.messagebird import (
    MAX_BODY_BYTES,
    BadRequest,
    NumberFacts,
    Unauthorized,
    WebhookError,
    event_time,
    parse_inbound,
)
from streams.intake.messagebird_reports import parse_delivery_report
from streams.rules.sendstate import price_settles
from streams.settings import STATUS_PATH, WEBHOOK_PATH
from streams.stages.admission import register_admission
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


async def read_bounded(request: Request, timeout_s: float | None = None) -> bytes:
    # aiohttp's own limit (1 MiB) answers in plain text: refuse bigger bodies here, in
    # JSON, and never buffer more than one byte past the limit. A body that takes longer
    # than timeout_s is a slow client (infra/faust/httpguard.py): 408.
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
    content = request.content
    # A small body sent at once (MessageBird's) is in the buffer already: taken without a
    # timer (a TimerHandle per request, 2% of a webhook's CPU).
    chunks = [content.read_nowait(MAX_BODY_BYTES + 1)]
    size = len(chunks[0])
    if size <= MAX_BODY_BYTES and not content.at_eof():
        try:
            async with asyncio.timeout(timeout_s):
                while size <= MAX_BODY_BYTES:
                    chunk = await content.read(MAX_BODY_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise BadRequest("slow_body", f"body not received within {timeout_s:g} s",
                             status=408) from None
    if size > MAX_BODY_BYTES:
        raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
    return b"".join(chunks)


def refusal(response: Response, request: Request) -> Response:
    """A refusal answered before its request's body was all received (a forged token, a
    slow body): its connection is closed after it, so what is still on its way is never
    read, nor buffered."""
    if not request.content.is_eof():
        response.force_close()
    return response


def signed_url(public_url: str | None, request: Request) -> str:
    # The URL MessageBird called, path and query as sent (raw_path): what it hashed.
    try:
        base = (public_url.rstrip("/") if public_url
                else f"{request.scheme}://{request.host}")
        return base + request.raw_path
    except ValueError:  # a Host header no URL can be built from
        raise Unauthorized("invalid_signature", "the request URL cannot be checked") from None


def register_views(rt: Runtime) -> None:
    rt.admission = register_admission(rt.app, rt.settings.webhook_concurrency)
    register_inbound_webhook(rt)
    register_delivery_reports(rt)
    register_status_views(rt)


def register_inbound_webhook(rt: Runtime) -> None:
    settings, verifier, privacy = rt.settings, rt.verifier, rt.privacy
    by_number = {c.number: c for c in settings.campaigns}
    number_facts = NumberFacts()

    @rt.app.page(WEBHOOK_PATH)
    class InboundWebhook(View):
        async def post(self, request: Request) -> Response:
            claims: dict[str, Any] = {}
            try:
                if rt.refuse_unsigned:
                    raise Unauthorized("missing_signature", "no MessageBird signing key is set")
                if verifier is not None:  # the token before the body is read
                    claims = verifier.check_token(
                        request.headers.get("MessageBird-Signature-JWT"),
                        signed_url(settings.public_url, request))
                raw = await read_bounded(request, settings.http_body_timeout_s)
                if verifier is not None:
                    verifier.check_body(claims, raw)
                sms = parse_inbound(request.headers.get("Content-Type", ""), raw)
            except WebhookError as exc:
                return refusal(self.json(exc.body(), status=exc.status), request)
            if rt.broker_down():  # `up`'s broker died: refuse at once, MessageBird retries
                if verifier is not None and claims:
                    verifier.forget(claims["jti"])
                return self.json({"error": "unavailable",
                                  "message": "the broker is down; retry"}, status=503)
            received_at = rt.now_ms()
            occurred_at = event_time(sms.created_at_ms, received_at, settings.event_skew_ms)
            campaign = by_number.get(sms.recipient)
            try:
                if campaign is None:
                    rejected = TextRejected(
                        message_id=sms.message_id, recipient=privacy.pseudonym(sms.recipient),
                        reason="unknown_recipient", occurred_at=occurred_at,
                    )
                    async with asyncio.timeout(settings.ack_timeout_s):
                        await rt.acknowledged(rt.produce(
                            rt.topics.journal, rejected.recipient.encode(),
                            codec.encode(rejected)))
                    err = BadRequest("unknown_recipient", "no campaign uses this recipient number",
                                     "recipient", status=404)
                    return self.json(err.body(), status=err.status)
                sender = privacy.pseudonym(sms.originator)
                if sms.created_at_ms is not None and occurred_at != sms.created_at_ms:
                    clamped = TextTimeClamped(message_id=sms.message_id, campaign_id=campaign.id,
                                              sender=sender, reported_at=sms.created_at_ms,
                                              received_at=received_at, occurred_at=occurred_at)
                    async with asyncio.timeout(settings.ack_timeout_s):
                        await rt.acknowledged(rt.produce(rt.topics.journal, sender.encode(),
                                                         codec.encode(clamped)))
                # Here, while the number is in clear (cached by pseudonym, not by number).
                number = number_facts.get(sender, sms.originator)
                command = ScreenText(
                    message_id=sms.message_id, campaign_id=campaign.id, sender=sender,
                    body=sms.body, occurred_at=occurred_at,
                    reply_to=privacy.seal(sms.originator, campaign_id=campaign.id, sender=sender),
                    number_kind=number.kind, country=number.country, prefix=number.prefix,
                )
                await rt.store_text(command)
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


def register_delivery_reports(rt: Runtime) -> None:
    settings, verifier = rt.settings, rt.verifier

    @rt.app.page(STATUS_PATH)
    class DeliveryReports(View):
        """MessageBird's delivery report for one of our replies: journaled as a fact; its
        price, if any, goes to the campaign to replace the estimated cost."""

        async def get(self, request: Request) -> Response:
            try:
                if rt.refuse_unsigned:
                    raise Unauthorized("missing_signature", "no MessageBird signing key is set")
                if verifier is not None:
                    verifier.verify(request.headers.get("MessageBird-Signature-JWT"),
                                    signed_url(settings.public_url, request), b"")
                report = parse_delivery_report(request.query, len(request.query_string))
            except WebhookError as exc:
                return self.json(exc.body(), status=exc.status)
            if report.campaign_id not in rt.campaigns:
                err = BadRequest("unknown_campaign", "no such campaign", "campaign", status=404)
                return self.json(err.body(), status=err.status)
            if rt.broker_down():
                return self.json({"error": "unavailable",
                                  "message": "the broker is down; retry"}, status=503)
            sender = rt.privacy.pseudonym(report.recipient)
            at = report.status_at_ms if report.status_at_ms is not None else rt.now_ms()
            fact = DeliveryReported(
                message_id=report.reference, campaign_id=report.campaign_id, sender=sender,
                provider_message_id=report.provider_message_id, status=report.status,
                status_reason=report.status_reason, error_code=report.error_code,
                price_micros=report.price_micros, currency=report.currency, occurred_at=at,
            )
            try:
                await asyncio.wait_for(rt.acknowledged(rt.topics.journal.send(
                    key=sender.encode(), value=codec.encode(fact))), settings.ack_timeout_s)
                if price_settles(report.price_micros, report.currency):
                    await asyncio.wait_for(rt.settle(SettleReply(message_id=report.reference,
                                                                 campaign_id=report.campaign_id,
                                                                 sender=sender, outcome="priced",
                                                                 price_micros=report.price_micros,
                                                                 occurred_at=at)), settings.ack_timeout_s)
            except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
                log.error("delivery report for %s not stored: %s", report.reference,
                          type(exc).__name__)
                return self.json({"error": "unavailable",
                                  "message": "the report could not be stored; retry"},
                                 status=503)
            return self.json({"status": "accepted", "reference": report.reference})


def register_status_views(rt: Runtime) -> None:
    if rt.settings.role == "web":
        register_web_health(rt)
        return

    @rt.app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            broker = rt.broker_status()
            up = broker is None or broker.up
            return self.json({
                "status": "ok" if up else f"broker down: {broker.reason}",
                # Under `up`: its broker (infra/supervisor.py), what it lost that this worker
                # had read, the texts written again after it came back (stages.broker).
                "broker": broker.to_json() if broker is not None else None,
                "records_lost": rt.tail_guard.health(),
                "texts_written_again": rt.ack_window.rewritten if rt.ack_window else 0,
                "campaigns": sorted(rt.campaigns),
                "dry_run": all(isinstance(g, DryRunGateway) for g in rt.all_gateways()),
                "signed_webhooks": rt.verifier is not None,
                "webhooks": rt.admission.health(),  # under way, limit, turned away
                "messagebird_circuit": rt.breaker.state,
                "bad_records": dict(rt.bad_records),  # skipped, by topic role
                # Times Faust was found to have dropped fetched records, fetched again.
                "records_refetched": {
                    "holes": sum(guard.holes for guard in rt.in_order.values()),
                    "tail": rt.redelivered,
                    # Partitions sought back and still waiting for the record (inorder.py).
                    "waiting": {name: w for name, guard in rt.in_order.items()
                                if (w := getattr(guard, "waiting", list)())},
                },
                # Table recovery found waiting for good, and what was done (recovery_guard).
                # And what was read in bulk (infra/faust/patches.py bulk_read).
                "table_recovery": ({**rt.recovery_guard.health(),
                                    **bulk_health(rt.app.tables.recovery)}
                                   if rt.recovery_guard is not None else None),
            }, status=200 if up else 503)

    @rt.app.page("/campaigns")
    class CampaignStatus(View):
        async def get(self, request: Request) -> Response:
            return self.json(await rt.deciders.status())


def register_web_health(rt: Runtime) -> None:
    """/health of a web-only process (``antirelou worker --role web``): no stage runs here,
    so only what its webhooks depend on: the campaigns and the signing."""

    @rt.app.page("/health")
    class WebHealth(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "role": "web", "campaigns": sorted(rt.campaigns),
                              "signed_webhooks": rt.verifier is not None,
                              "webhooks": rt.admission.health()})
