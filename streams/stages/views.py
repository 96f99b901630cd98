"""The web views: MessageBird's inbound-text webhook (a text becomes a ScreenText on
sms-received, acked before the 200), its delivery-report webhook (journaled; a price settles
the reply's cost), ``/health`` and ``/campaigns`` (a web-only process, ``--role web``: its
own ``/health``, no ``/campaigns``). Parsing and signatures: ``streams.intake.messagebird``,
``streams.intake.messagebird_reports``; what a text or report becomes:
``streams.intake.build``, shared with Bird's webhook (``stages.bird``), as is the storing
(``stages.webhooks``)."""

from __future__ import annotations

import logging
from typing import Any

from faust.web import Request, Response, View

from infra.faust.patches import bulk_health
from infra.gateway import DryRunGateway
from schemas.reasons import UNKNOWN_RECIPIENT
from streams.intake.build import IntakeBuilder
from streams.intake.errors import BadRequest, Unauthorized, WebhookError
from streams.intake.messagebird import parse_inbound
from streams.intake.messagebird_reports import parse_delivery_report
from streams.settings import STATUS_PATH, WEBHOOK_PATH
from streams.stages.admission import register_admission
from streams.stages.runtime import Runtime
from streams.stages.webhooks import (
    read_bounded,
    refusal,
    signed_url,
    store_intake,
    store_report,
)

log = logging.getLogger("antirelou")


def register_views(rt: Runtime) -> None:
    rt.admission = register_admission(rt.app, rt.settings.webhook_concurrency)
    register_inbound_webhook(rt)
    register_delivery_reports(rt)
    register_status_views(rt)


def register_inbound_webhook(rt: Runtime) -> None:
    settings, verifier = rt.settings, rt.verifier
    by_number = {c.number: c for c in settings.campaigns}
    intake = IntakeBuilder(pseudonym=rt.privacy.pseudonym, seal=rt.privacy.seal,
                           skew_ms=settings.event_skew_ms)

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
            campaign = by_number.get(sms.recipient)
            try:
                await store_intake(rt, intake.text(sms, campaign, received_at=rt.now_ms(),
                                                   reached=sms.recipient,
                                                   refusal=UNKNOWN_RECIPIENT))
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
            if campaign is None:
                err = BadRequest(UNKNOWN_RECIPIENT, "no campaign uses this recipient number",
                                 "recipient", status=404)
                return self.json(err.body(), status=err.status)
            return self.json({"status": "accepted", "message_id": sms.message_id,
                              "campaign": campaign.id})


def register_delivery_reports(rt: Runtime) -> None:
    settings, verifier = rt.settings, rt.verifier
    intake = IntakeBuilder(pseudonym=rt.privacy.pseudonym, seal=rt.privacy.seal)

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
            fact = intake.delivery(
                reference=report.reference, campaign_id=report.campaign_id,
                recipient=report.recipient, provider_message_id=report.provider_message_id,
                status=report.status, status_reason=report.status_reason,
                error_code=report.error_code, price_micros=report.price_micros,
                currency=report.currency, status_at_ms=report.status_at_ms, now_ms=rt.now_ms(),
            )
            try:
                await store_report(rt, fact)
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
