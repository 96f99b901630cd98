"""Stage: Bird's webhook events (``POST /webhooks/bird``) for the campaigns on Bird.

``sms.inbound`` becomes the same ``ScreenText`` as a classic text (sms-received, keyed by
the sender pseudonym); ``sms.outbound`` with a delivery status the same ``DeliveryReported``
(journal), and with a EUR price the same reconciliation (``SettleReply`` "priced").
Verification and parsing are in ``streams.intake.bird``; this module gives it the ports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from schemas import codec
from schemas.campaign import Campaign
from schemas.commands import ScreenText, SettleReply
from schemas.events import DeliveryReported
from streams.intake.bird import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BirdPorts,
    BirdSignatureVerifier,
    SeenEvents,
    delivery_fact_of,
    register_bird_webhook,
    screen_text_of,
)
from streams.intake.messagebird import NumberFacts
from streams.rules.sendstate import price_settles
from streams.stages.runtime import Runtime
from streams.stages.views import read_bounded, signed_url


def register_bird(rt: Runtime) -> None:
    settings = rt.settings
    number_facts = NumberFacts()

    async def bounded(stored: Awaitable[None]) -> None:
        async with asyncio.timeout(settings.ack_timeout_s):
            await stored

    def refuse_while_the_broker_is_down() -> None:
        if rt.broker_down():  # `up`'s broker died: a 503 at once, Bird retries
            raise ConnectionError("the broker is down")

    async def store_text(command: ScreenText) -> None:
        refuse_while_the_broker_is_down()
        await rt.store_text(command)

    async def store_report(fact: DeliveryReported) -> None:
        refuse_while_the_broker_is_down()
        await bounded(rt.acknowledged(rt.produce(rt.topics.journal, fact.sender.encode(),
                                                 codec.encode(fact))))
        if price_settles(fact.price_micros, fact.currency):
            await bounded(rt.settle(SettleReply(
                message_id=fact.message_id, campaign_id=fact.campaign_id, sender=fact.sender,
                outcome="priced", price_micros=fact.price_micros, occurred_at=fact.occurred_at,
            )))

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
        seen=SeenEvents(), campaign_for_channel=campaign_for_channel, read_body=read_signed_body,
        signed_url=lambda request: signed_url(settings.public_url, request),
        to_command=lambda text, c: screen_text_of(
            text, c, pseudonym=rt.privacy.pseudonym, seal=rt.privacy.seal,
            number_facts=number_facts, now_ms=rt.now_ms()),
        to_fact=lambda status, c: delivery_fact_of(status, c, pseudonym=rt.privacy.pseudonym,
                                                   now_ms=rt.now_ms()),
        store_text=store_text, store_report=store_report, clock=rt.clock,
    ))
