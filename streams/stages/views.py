"""The web views: MessageBird's inbound-text webhook (a text becomes a ScreenText on
sms-received, acked before the 200), its delivery-report webhook (journaled; a price settles
the reply's cost), ``/health`` and ``/campaigns`` (a web-only process, ``--role web``: its
own ``/health``, no ``/campaigns``). Parsing and signatures: ``streams.intake.messagebird``,
``streams.intake.messagebird_reports``; what a text or report becomes:
``streams.intake.build``, shared with Bird's webhook (``stages.bird``), as is the storing
(``stages.webhooks``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.web import Request, Response, View

from infra.faust.patches import bulk_health
from infra.gateway import DryRunGateway
from schemas.reasons import UNKNOWN_RECIPIENT
from streams.intake.build import IntakeBuilder
from streams.intake.errors import BadRequest, Unauthorized, WebhookError
from streams.intake.messagebird import parse_inbound
from streams.intake.messagebird_reports import parse_delivery_report, report_event_id
from streams.intake.once import store_once
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

STATUS_WAIT_S = 10.0  # /campaigns waits this long for the shards


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

            def not_stored() -> None:
                # Not stored: MessageBird's retry may carry the same token (its jti is spent
                # only when what it signed was stored: streams.intake.once).
                if verifier is not None and claims:
                    verifier.forget(claims["jti"])

            async def store() -> None:
                await store_intake(rt, intake.text(sms, campaign, received_at=rt.now_ms(),
                                                   reached=sms.recipient,
                                                   refusal=UNKNOWN_RECIPIENT))

            try:
                if campaign is None:  # journaled (TextRejected), then refused
                    await store()
                    err = BadRequest(UNKNOWN_RECIPIENT, "no campaign uses this recipient "
                                     "number", "recipient", status=404)
                    return self.json(err.body(), status=err.status)
                # Stored once: a re-delivery after a lost 200 is a 200 storing nothing.
                status, answer = await store_once(
                    rt.stored_events, f"messagebird.sms:{sms.message_id}", rt.clock(), store,
                    {"status": "accepted", "message_id": sms.message_id,
                     "campaign": campaign.id}, not_stored)
            except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
                log.error("inbound text %s not stored: %s", sms.message_id, type(exc).__name__)
                not_stored()
                return self.json(
                    {"error": "unavailable", "message": "the text could not be stored; retry"},
                    status=503,
                )
            return self.json(answer, status=status)


def register_delivery_reports(rt: Runtime) -> None:
    settings, verifier = rt.settings, rt.verifier
    intake = IntakeBuilder(pseudonym=rt.privacy.pseudonym, seal=rt.privacy.seal)

    @rt.app.page(STATUS_PATH)
    class DeliveryReports(View):
        """MessageBird's delivery report for one of our replies: journaled as a fact; its
        price, if any, goes to the campaign to replace the estimated cost."""

        async def get(self, request: Request) -> Response:
            claims: dict[str, Any] = {}
            try:
                if rt.refuse_unsigned:
                    raise Unauthorized("missing_signature", "no MessageBird signing key is set")
                if verifier is not None:
                    claims = verifier.verify(request.headers.get("MessageBird-Signature-JWT"),
                                             signed_url(settings.public_url, request), b"")
                report = parse_delivery_report(request.query, len(request.query_string))
            except WebhookError as exc:
                return self.json(exc.body(), status=exc.status)

            def not_stored() -> None:
                # The token is spent only when the report is stored: MessageBird's retry of
                # a report answered 404 or 503 must pass (streams.intake.once).
                if verifier is not None and claims:
                    verifier.forget(claims["jti"])

            if report.campaign_id not in rt.campaigns:
                not_stored()
                err = BadRequest("unknown_campaign", "no such campaign", "campaign", status=404)
                return self.json(err.body(), status=err.status)
            if rt.broker_down():
                not_stored()
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
                # Stored once: a report delivered again after a lost 200 is a 200 that
                # journals nothing.
                status, answer = await store_once(
                    rt.stored_events, report_event_id(report), rt.clock(),
                    lambda: store_report(rt, fact),
                    {"status": "accepted", "reference": report.reference}, not_stored)
            except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
                log.error("delivery report for %s not stored: %s", report.reference,
                          type(exc).__name__)
                return self.json({"error": "unavailable",
                                  "message": "the report could not be stored; retry"},
                                 status=503)
            return self.json(answer, status=status)


def register_status_views(rt: Runtime) -> None:
    if rt.settings.role == "web":
        register_web_health(rt)
        return

    @rt.app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            broker = rt.broker_status()
            up = broker is None or broker.up
            # Degraded (still 200: a probe must not restart a worker that waits for a
            # shard): a stage whose batches fail, a campaign shard away or not answering.
            problems = rt.health_problems()
            status = ("ok" if not problems else "degraded: " + "; ".join(problems)) if up \
                else f"broker down: {broker.reason}"
            shards = getattr(rt.deciders, "health", None)
            now = rt.clock()
            return self.json({
                "status": status,
                # Each stage's failed batches (fetched again) and poison records passed
                # over (streams/stages/failures.py); the shards as the calls find them.
                "stages": {name: h.to_json(now) for name, h in sorted(rt.stage_health.items())},
                "shards": shards() if shards is not None else None,
                # Under `up`: its broker (infra/supervisor.py), what it lost that this worker
                # had read, the texts written again after it came back (stages.broker).
                "broker": broker.to_json() if broker is not None else None,
                "records_lost": rt.tail_guard.health(),
                "texts_written_again": rt.ack_window.rewritten if rt.ack_window else 0,
                "campaigns": sorted(rt.campaigns),
                # The policy version each campaign's screening uses (stages.control).
                "policy_versions": {cid: p.version for cid, p in sorted(rt.live_policies.items())},
                "dry_run": all(isinstance(g, DryRunGateway) for g in rt.all_gateways()),
                "signed_webhooks": rt.verifier is not None,
                # Under way, limit, turned away (none in a send-only process: no webhook).
                "webhooks": rt.admission.health() if rt.admission is not None else None,
                "messagebird_circuit": rt.breaker.state,
                "bad_records": dict(rt.bad_records),  # skipped, by topic role
                # Deferred requests whose sealed reply-to this worker holds (one entry each).
                "deferred_reply_tos": (len(rt.tables.deferred_reply_to)
                                       if rt.tables.deferred_reply_to is not None else None),
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

    if rt.deciders is None:  # the send role: the campaigns' figures are the deciders'
        return

    @rt.app.page("/campaigns")
    class CampaignStatus(View):
        async def get(self, request: Request) -> Response:
            try:
                return self.json(await asyncio.wait_for(rt.deciders.status(), STATUS_WAIT_S))
            except TimeoutError:
                return self.json({"error": "shards_away", "message": "the campaign shards "
                                  f"did not answer within {STATUS_WAIT_S:g} s (see /health)"},
                                 status=503)


def register_web_health(rt: Runtime) -> None:
    """/health of a web-only process (``antirelou worker --role web``): no stage runs here,
    so only what its webhooks depend on: the campaigns and the signing."""

    @rt.app.page("/health")
    class WebHealth(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "role": "web", "campaigns": sorted(rt.campaigns),
                              "signed_webhooks": rt.verifier is not None,
                              "webhooks": rt.admission.health() if rt.admission else None})
