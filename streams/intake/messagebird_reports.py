"""MessageBird delivery reports: parse the status callback (a GET with query fields).

MessageBird calls the ``reportUrl`` the reply was sent with, only for messages sent with a
``reference`` (ours is the inbound message id). We send ``reportUrl`` with
``?campaign=<id>`` so a report names its campaign. Fields used: ``id``, ``reference``,
``recipient``, ``status``, ``statusDatetime``, ``statusReason``, ``statusErrorCode``,
``price[amount]``, ``price[currency]``. Errors are ``BadRequest`` (JSON 4xx), never holding
the recipient number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from infra.privacy import normalize_msisdn
from streams.intake.errors import BadRequest
from streams.intake.fields import MAX_ID_CHARS, iso_ms

STATUSES = frozenset({"scheduled", "sent", "buffered", "delivered", "expired", "delivery_failed"})
MAX_QUERY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    campaign_id: str
    reference: str  # the inbound message id the reply answered
    provider_message_id: str
    recipient: str  # E.164 digits; never log it
    status: str
    status_at_ms: int | None
    status_reason: str | None
    error_code: int | None
    price_micros: int | None
    currency: str | None


def parse_delivery_report(query: Mapping[str, str], query_bytes: int = 0) -> DeliveryReport:
    if query_bytes > MAX_QUERY_BYTES:
        raise BadRequest("too_large", f"query exceeds {MAX_QUERY_BYTES} bytes", status=414)

    def text(name: str, required: bool = True, limit: int = MAX_ID_CHARS) -> str | None:
        value = query.get(name)
        if value is None or not value.strip():
            if required:
                raise BadRequest("missing_field", f"{name!r} is required", name)
            return None
        if len(value) > limit or "\x00" in value:
            raise BadRequest("invalid_field", f"{name!r} is invalid", name)
        return value

    campaign = text("campaign")
    reference = text("reference")
    provider_id = text("id")
    recipient = normalize_msisdn(text("recipient") or "")
    if recipient is None:
        raise BadRequest("invalid_field", "'recipient' is not a phone number", "recipient")
    status = text("status")
    if status not in STATUSES:
        raise BadRequest("invalid_field", f"'status' must be one of {sorted(STATUSES)}", "status")
    at = text("statusDatetime", required=False)
    code_raw = text("statusErrorCode", required=False)
    try:
        code = int(code_raw) if code_raw is not None else None
    except ValueError:
        raise BadRequest("invalid_field", "'statusErrorCode' is not an integer",
                         "statusErrorCode") from None
    amount = text("price[amount]", required=False, limit=32)
    currency = text("price[currency]", required=False, limit=8)
    price = None
    if amount is not None:
        try:
            value = Decimal(amount)
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite() or value < 0 or value > 1000:
            raise BadRequest("invalid_field", "'price[amount]' is not a price",
                             "price[amount]")
        price = int((value * 1_000_000).to_integral_value())
    return DeliveryReport(
        campaign_id=campaign or "", reference=reference or "", provider_message_id=provider_id or "",
        recipient=recipient, status=status, status_at_ms=_status_ms(at),
        status_reason=text("statusReason", required=False), error_code=code,
        price_micros=price, currency=currency.upper() if currency else None,
    )


def _status_ms(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return iso_ms(value)
    except BadRequest:
        raise BadRequest("invalid_field", "'statusDatetime' is not ISO 8601",
                         "statusDatetime") from None
