"""Bird (Channels API) webhook events: verify, parse, and turn into our commands and facts.

Bird delivers inbound SMS and the status of our replies as events of a Notifications API
webhook subscription (docs.bird.com: "Webhook subscriptions", "Message status and
interactions", "Receiving messages", "Verifying a webhook subscription"; checked
2026-12-01), POSTed as JSON::

    {"service": "channels", "event": "sms.inbound" | "sms.outbound", "payload": <message>}

* ``sms.inbound``: ``payload`` is the incoming message: ``id``, ``channelId``,
  ``sender.contact.identifierValue`` (E.164 with ``+``), ``body`` ``{"type": "text",
  "text": {"text": ...}}``, ``direction`` ``incoming``, ``createdAt``. It does not name our
  number: the channel (``channelId``) says which campaign it reached.
* ``sms.outbound``: one of our messages changed status (``accepted``, ``processing``,
  ``scheduled``, ``sent``, ``sending_failed``, ``delivered``, ``delivery_failed``...), with
  the ``reference`` we sent (the inbound message id), ``receiver.contacts[]`` and
  ``lastStatusAt``. The statuses map to the classic delivery report's (``STATUS_MAP``) so
  both providers journal the same ``DeliveryReported``. A ``price`` object (``amount``,
  ``currency``) is read when present: the pages we found do not show one, so without it a
  status reconciles nothing and the campaign keeps its estimate.
* Signature (headers ``MessageBird-Signature``, base64, and ``MessageBird-Request-Timestamp``,
  unix seconds): ``HMAC-SHA256(signing key, timestamp + "\\n" + URL + "\\n" +
  sha256(raw body))``, the body hash as raw bytes, compared in constant time. The URL is
  the subscription's, as Bird called it (``--public-url`` behind a proxy).
* Bird retries a delivery without a 2xx answer for 8 hours ("Retries").

Refused here, on top of the signature: a timestamp more than ``max_age_s`` (5 minutes) away
from our clock. An event is stored once (``streams.intake.once``, the rule of both
providers): one delivered again after its 200 was lost (Bird retries what got no 2xx for 8
hours, "Retries") is answered 200 ``duplicate`` and stores nothing; one answered 503 is
taken when it comes again. Its id is the message id, event and status (Bird's envelope
carries no event id of its own). An event we do not handle (a status of a message we did
not send) is answered 200 and ignored, so Bird does not retry it for hours.

``register_bird_webhook`` adds the view to a Faust app given the ports it needs; the rest is
plain functions tested without a broker. Errors (``streams.intake.fields``; never a number in
them): ``BadRequest`` 400/413/415/422, ``Unauthorized`` 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from infra.bird_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_payload
from infra.privacy import mask_numbers
from schemas.campaign import Campaign
from schemas.events import DeliveryReported
from schemas.reasons import UNKNOWN_CHANNEL
from streams.intake.build import Intake, IntakeBuilder
from streams.intake.errors import BadRequest, Unauthorized, WebhookError
from streams.intake.fields import MAX_BODY_BYTES, MAX_ID_CHARS, MAX_TEXT_CHARS, iso_ms, json_object, msisdn
from streams.intake.once import StoredEvents, store_once

log = logging.getLogger("antirelou.bird")

BIRD_WEBHOOK_PATH = "/webhooks/bird"
MAX_AGE_S = 300
MAX_SIGNATURE_CHARS = 256

# Bird's message statuses -> the classic delivery report's vocabulary (DeliveryReported).
STATUS_MAP = {
    "accepted": "buffered",
    "processing": "buffered",
    "scheduled": "scheduled",
    "sent": "sent",
    "delivered": "delivered",
    "sending_failed": "delivery_failed",
    "delivery_failed": "delivery_failed",
    "expired": "expired",
}


# -- signature, timestamp, replay -----------------------------------------------------


class BirdSignatureVerifier:
    """Checks ``MessageBird-Signature`` over timestamp, URL and body; refuses stale ones."""

    def __init__(self, signing_key: str, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.time) -> None:
        if not signing_key:
            raise ValueError("a Bird signing key is required")
        self._key = signing_key.encode()
        self.max_age_s = max_age_s
        self._clock = clock

    def verify(self, signature: str | None, timestamp: str | None, url: str,
               body: bytes) -> int:
        """The request's timestamp (unix seconds) when signed and fresh; else Unauthorized."""
        given = self.check_headers(signature, timestamp)
        try:
            payload = signed_payload(timestamp, url, body)  # type: ignore[arg-type]
        except UnicodeEncodeError:  # a URL built from undecodable bytes
            raise Unauthorized("invalid_signature", "the request URL cannot be checked") from None
        expected = hmac.digest(self._key, payload, "sha256")
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("invalid_signature", "signature refused")
        # After the signature: an unsigned stale request learns nothing about our clock.
        at = int(timestamp)  # type: ignore[arg-type]
        if abs(self._clock() - at) > self.max_age_s:
            raise Unauthorized("stale_signature",
                               f"the timestamp is more than {self.max_age_s:g} s away")
        return at

    def check_headers(self, signature: str | None, timestamp: str | None) -> bytes:
        """The signature's bytes when both headers are there and well formed (checked before
        the body is read: an unsigned request is refused with none of it buffered; the
        signature itself covers the body, so it is checked after); else Unauthorized."""
        if not signature:
            raise Unauthorized("missing_signature", f"{SIGNATURE_HEADER} header is required")
        if not timestamp:
            raise Unauthorized("missing_timestamp", f"{TIMESTAMP_HEADER} header is required")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise Unauthorized("invalid_timestamp", "the timestamp is not unix seconds")
        if not signature.isascii() or len(signature) > MAX_SIGNATURE_CHARS:
            raise Unauthorized("invalid_signature", "the signature is not base64")
        try:
            return base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise Unauthorized("invalid_signature", "the signature is not base64") from None


# -- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BirdText:
    """An inbound SMS (``sms.inbound``)."""

    event_id: str
    channel_id: str
    message_id: str
    originator: str  # E.164 digits; never log it
    body: str
    created_at_ms: int | None


@dataclass(frozen=True, slots=True)
class BirdStatus:
    """A status of one of our replies (``sms.outbound``), in the classic vocabulary."""

    event_id: str
    channel_id: str
    provider_message_id: str
    reference: str  # the inbound message id the reply answered
    recipient: str  # E.164 digits; never log it
    status: str  # STATUS_MAP value
    bird_status: str
    status_at_ms: int | None
    status_reason: str | None
    price_micros: int | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event we do not act on (answered 200 so Bird does not retry it)."""

    event_id: str | None
    reason: str


BirdEvent = BirdText | BirdStatus | Ignored


def parse_bird_event(content_type: str, raw: bytes) -> BirdEvent:
    """Parse one webhook body; BadRequest (4xx) names the offending field."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise BadRequest("unsupported_media_type", "send application/json", status=415)
    data = json_object(raw, "body is not valid JSON (UTF-8)")
    event = _text(data, "event", "event", limit=64)
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise BadRequest("missing_field", "'payload' must be an object", "payload")
    if event not in ("sms.inbound", "sms.outbound"):
        # Named only when it looks like an event name: the answer never repeats what could
        # be a number (hypothesis found one).
        shown = repr(event) if re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", event) else "of this kind"
        return Ignored(None, f"event {shown} is not handled")
    message_id = _ident(payload, "id", "payload.id")
    channel_id = _ident(payload, "channelId", "payload.channelId")
    status = _text(payload, "status", "payload.status", required=False, limit=32)
    event_id = f"{event}:{message_id}:{status or ''}"
    if event == "sms.inbound":
        direction = payload.get("direction")
        if direction not in (None, "incoming"):
            return Ignored(event_id, "an sms.inbound event that is not incoming")
        sender = _dig(payload, ("sender", "contact", "identifierValue"))
        if sender is None:
            raise BadRequest("missing_field", "'payload.sender.contact.identifierValue' is "
                             "required", "payload.sender")
        originator = msisdn(_as_str(sender, "payload.sender"), "payload.sender")
        return BirdText(event_id, channel_id, message_id, originator, _body_text(payload),
                        _when(payload, "createdAt"))
    # sms.outbound
    reference = _text(payload, "reference", "payload.reference", required=False)
    if reference is None:
        return Ignored(event_id, "a message we did not send (no reference)")
    if status is None:
        raise BadRequest("missing_field", "'payload.status' is required", "payload.status")
    mapped = STATUS_MAP.get(status)
    if mapped is None:
        return Ignored(event_id, f"status {status!r} is not a delivery status")
    contacts = _dig(payload, ("receiver", "contacts"))
    first = contacts[0] if isinstance(contacts, list) and contacts else None
    number = first.get("identifierValue") if isinstance(first, dict) else None
    if number is None:
        raise BadRequest("missing_field", "'payload.receiver.contacts[0].identifierValue' is "
                         "required", "payload.receiver")
    recipient = msisdn(_as_str(number, "payload.receiver"), "payload.receiver")
    price, currency = _price(payload.get("price"))
    reason = _text(payload, "reason", "payload.reason", required=False, limit=256)
    return BirdStatus(event_id, channel_id, message_id, reference, recipient, mapped, status,
                      _when(payload, "lastStatusAt"), reason, price, currency)


def _as_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"{name!r} must be a string", name)
    if "\x00" in value:
        raise BadRequest("invalid_field", f"{name!r} holds a NUL character", name)
    return value


def _text(data: Mapping[str, Any], key: str, name: str, *, required: bool = True,
          limit: int = MAX_ID_CHARS) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise BadRequest("missing_field", f"{name!r} is required", name)
        return None
    text = _as_str(value, name)
    if len(text) > limit or not text.isprintable():
        # Logged and journaled: bounded, no line breaks, bidi overrides or other controls.
        raise BadRequest("invalid_field", f"{name!r} is too long or holds control "
                         "characters", name)
    return text


def _ident(data: Mapping[str, Any], key: str, name: str) -> str:
    text = _text(data, key, name)
    assert text is not None
    if not text.strip():
        raise BadRequest("missing_field", f"{name!r} is empty", name)
    return text


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _body_text(payload: Mapping[str, Any]) -> str:
    body = payload.get("body")
    if body is None:
        return ""
    if not isinstance(body, dict):
        raise BadRequest("invalid_field", "'payload.body' must be an object", "payload.body")
    if body.get("type") != "text":
        return ""  # an image or a file texted to the number: screened like an empty text
    text = _dig(body, ("text", "text"))
    if text is None:
        return ""
    text = _as_str(text, "payload.body.text")
    if len(text) > MAX_TEXT_CHARS:
        raise BadRequest("invalid_field", f"'payload.body.text' is longer than "
                         f"{MAX_TEXT_CHARS}", "payload.body.text")
    return mask_numbers(text)  # here, before the body is stored, journaled or logged


def _when(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    name = f"payload.{key}"
    text = _as_str(value, name)
    if len(text) > 64:
        raise BadRequest("invalid_field", f"{name!r} is not ISO 8601", name)
    try:
        return iso_ms(text)
    except (BadRequest, OverflowError, ValueError):
        raise BadRequest("invalid_field", f"{name!r} is not ISO 8601", name) from None


def _price(value: Any) -> tuple[int | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise BadRequest("invalid_field", "'payload.price' must be an object", "payload.price")
    amount, currency = value.get("amount"), value.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, str | int | float):
        raise BadRequest("invalid_field", "'payload.price.amount' is not a price",
                         "payload.price")
    try:
        eur = Decimal(str(amount)) if len(str(amount)) <= 32 else Decimal("NaN")
    except InvalidOperation:
        eur = Decimal("NaN")
    if not eur.is_finite() or eur < 0 or eur > 1000:
        raise BadRequest("invalid_field", "'payload.price.amount' is not a price",
                         "payload.price")
    if currency is not None and not (isinstance(currency, str) and currency.isascii()
                                     and currency.isalpha() and len(currency) <= 8):
        raise BadRequest("invalid_field", "'payload.price.currency' is not a currency",
                         "payload.price")
    return int((eur * 1_000_000).to_integral_value()), currency.upper() if currency else None


# -- to our commands and facts ----------------------------------------------------------


def intake_of(text: BirdText, campaign: Campaign | None, builder: IntakeBuilder, *,
              received_at: int) -> Intake:
    """What a Bird text becomes, built as a classic one is (``streams.intake.build``): the
    provider's date clamped to the arrival time (``TextTimeClamped`` when it was moved), a
    text on a channel no campaign uses rejected (``TextRejected``, ``unknown_channel``)."""
    return builder.text(text, campaign, received_at=received_at, reached=text.channel_id,
                        refusal=UNKNOWN_CHANNEL)


def delivery_fact_of(status: BirdStatus, campaign: Campaign, builder: IntakeBuilder, *,
                     now_ms: int) -> DeliveryReported:
    """The ``DeliveryReported`` of a Bird status: the same fact a classic report gives."""
    return builder.delivery(
        reference=status.reference, campaign_id=campaign.id, recipient=status.recipient,
        provider_message_id=status.provider_message_id, status=status.status,
        status_reason=status.status_reason or status.bird_status, error_code=None,
        price_micros=status.price_micros, currency=status.currency,
        status_at_ms=status.status_at_ms, now_ms=now_ms,
    )


# -- the view ---------------------------------------------------------------------------


@dataclass
class BirdPorts:
    """What the Bird webhook view needs from the app (built by the composition root)."""

    verifier: BirdSignatureVerifier | None  # None: unsigned (insecure dev only)
    stored: StoredEvents  # the events stored lately: each stored once
    campaign_for_channel: Callable[[str], Campaign | None]
    read_body: Callable[[Any], Awaitable[bytes]]  # bounded read of the request body
    signed_url: Callable[[Any], str]  # the URL Bird called (public base behind a proxy)
    to_intake: Callable[[BirdText, Campaign | None], Intake]  # None: no campaign's channel
    to_fact: Callable[[BirdStatus, Campaign], DeliveryReported]
    store_text: Callable[[Intake], Awaitable[None]]  # acknowledged, bounded in time
    store_report: Callable[[DeliveryReported], Awaitable[None]]  # journal + reconcile
    clock: Callable[[], float] = time.time


async def handle_bird_request(ports: BirdPorts, request: Any) -> tuple[int, dict[str, Any]]:
    """Verify, parse and store one request; the HTTP status and JSON body to answer."""
    try:
        raw = await ports.read_body(request)
        if ports.verifier is not None:
            ports.verifier.verify(
                request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                ports.signed_url(request), raw)
        event = parse_bird_event(request.headers.get("Content-Type", ""), raw)
    except WebhookError as exc:
        return exc.status, exc.body()
    if isinstance(event, Ignored):
        return 200, {"status": "ignored", "reason": event.reason}
    campaign = ports.campaign_for_channel(event.channel_id)

    async def store() -> None:
        if isinstance(event, BirdText):
            await ports.store_text(ports.to_intake(event, campaign))
        else:
            await ports.store_report(ports.to_fact(event, campaign))

    try:
        if campaign is None:  # configuration may follow; Bird retries
            if isinstance(event, BirdText):  # journaled (TextRejected) as a classic one is
                await store()
            unknown = BadRequest(UNKNOWN_CHANNEL, "no campaign uses this Bird channel",
                                 "payload.channelId", status=404)
            return unknown.status, unknown.body()
        accepted = ({"status": "accepted", "message_id": event.message_id,
                     "campaign": campaign.id} if isinstance(event, BirdText) else
                    {"status": "accepted", "reference": event.reference})
        return await store_once(ports.stored, f"bird:{event.event_id}", ports.clock(), store,
                                accepted)
    except Exception as exc:  # noqa: BLE001 - any storage failure must be a 503
        log.error("Bird event %s not stored: %s", event.event_id, type(exc).__name__)
        return 503, {"error": "unavailable", "message": "the event could not be stored; retry"}


def register_bird_webhook(app: Any, ports: BirdPorts, path: str = BIRD_WEBHOOK_PATH) -> None:
    """Add ``POST path`` (Bird's inbound SMS and status events) to the Faust app."""
    from faust.web import Request, Response, View

    @app.page(path)
    class BirdWebhook(View):
        async def post(self, request: Request) -> Response:
            status, body = await handle_bird_request(ports, request)
            return self.json(body, status=status)
