"""Stage: Bird's webhook events (``POST /webhooks/bird``) for the campaigns on Bird.

``sms.inbound`` becomes what a classic text becomes, built by the same builder
(``streams.intake.build``, with the worker's ``--event-skew-minutes``) and stored the same way
(``stages.webhooks``): a ``ScreenText`` on sms-received (keyed by the sender pseudonym),
after its ``TextTimeClamped`` if Bird dated it out of bounds, or a ``TextRejected`` on a
channel no campaign uses. ``sms.outbound`` with a delivery status becomes the same
``DeliveryReported`` (journal), and with a EUR price the same reconciliation
(``SettleReply`` "priced"). Verification and parsing are in ``streams.intake.bird``; this
module gives it the ports.
"""

from __future__ import annotations

from typing import Any

from schemas.campaign import Campaign
from schemas.events import DeliveryReported
from streams.intake.bird import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BirdPorts,
    BirdSignatureVerifier,
    delivery_fact_of,
    intake_of,
    register_bird_webhook,
)
from streams.intake.build import Intake, IntakeBuilder
from streams.stages.runtime import Runtime
from streams.stages.webhooks import read_bounded, signed_url, store_intake, store_report


def register_bird(rt: Runtime) -> None:
    settings = rt.settings
    intake = IntakeBuilder(pseudonym=rt.privacy.pseudonym, seal=rt.privacy.seal,
                           skew_ms=settings.event_skew_ms)

    def refuse_while_the_broker_is_down() -> None:
        if rt.broker_down():  # `up`'s broker died: a 503 at once, Bird retries
            raise ConnectionError("the broker is down")

    async def store_text(text: Intake) -> None:
        refuse_while_the_broker_is_down()
        await store_intake(rt, text)

    async def store_fact(fact: DeliveryReported) -> None:
        refuse_while_the_broker_is_down()
        await store_report(rt, fact)

    def campaign_for_channel(channel: str) -> Campaign | None:
        cid = settings.bird_channels.get(channel)
        return rt.campaigns.get(cid) if cid is not None else None

    verifier = (BirdSignatureVerifier(settings.bird_signing_key, clock=rt.clock)
                if settings.bird_signing_key else None)

    async def read_signed_body(request: Any) -> bytes:
        # An unsigned or malformed signature is refused before the body is read (Bird's
        # signature covers the body: a forged one is found once it is read, bounded).
        if verifier is not None:
            verifier.check_headers(request.headers.get(SIGNATURE_HEADER),
                                   request.headers.get(TIMESTAMP_HEADER))
        return await read_bounded(request, settings.http_body_timeout_s)

    register_bird_webhook(rt.app, BirdPorts(
        verifier=verifier,
        stored=rt.stored_events, campaign_for_channel=campaign_for_channel,
        read_body=read_signed_body,
        signed_url=lambda request: signed_url(settings.public_url, request),
        to_intake=lambda text, c: intake_of(text, c, intake, received_at=rt.now_ms()),
        to_fact=lambda status, c: delivery_fact_of(status, c, intake, now_ms=rt.now_ms()),
        store_text=store_text, store_report=store_fact, clock=rt.clock,
    ))
