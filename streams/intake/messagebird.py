"""MessageBird classic's inbound-text webhook: parse its callback and check its signature.

The Faust view (``streams.stages.views``) is a thin shell around these two pieces and the
intake builder (``streams.intake.build``) both providers share, so all are tested without a
broker. Errors: ``streams.intake.fields`` (none ever holds a phone number).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from messagebird.error import ValidationError

from infra.mb_verify import QuickCheck, payload_matches, sdk_token_claims
from infra.numbers import region_of
from infra.privacy import mask_numbers
from streams.intake.errors import BadRequest, Unauthorized, WebhookError
from streams.intake.fields import MAX_BODY_BYTES, MAX_ID_CHARS, MAX_TEXT_CHARS, iso_ms, json_object, msisdn

MAX_TOKEN_CHARS = 8192
MAX_TOKEN_LIFETIME_S = 600  # exp - nbf of a webhook signature (MessageBird's: about a minute)


@dataclass(frozen=True, slots=True)
class InboundSms:
    message_id: str
    originator: str  # E.164 digits; never log it
    recipient: str  # E.164 digits of our virtual number
    body: str
    created_at_ms: int | None


def form_fields(text: str) -> dict[str, str]:
    """``dict(parse_qsl(text, keep_blank_values=True))`` (a test holds them equal) without
    its per-field overhead (half of parsing a callback): a name or value is unquoted only
    when it holds a ``%``."""
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name, value = name.replace("+", " "), value.replace("+", " ")
        fields[unquote(name) if "%" in name else name] = (
            unquote(value) if "%" in value else value)
    return fields


def parse_inbound(content_type: str, raw: bytes) -> InboundSms:
    """Parse a form-encoded or JSON callback; raises BadRequest with the offending field."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
    ctype = (content_type or "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("bad_encoding", "body is not UTF-8", status=400) from None
    if ctype == "application/json":
        data = json_object(raw, "body is not valid JSON")
    elif ctype in ("application/x-www-form-urlencoded", ""):
        data = form_fields(text)
    else:
        raise BadRequest(
            "unsupported_media_type",
            "send application/x-www-form-urlencoded or application/json",
            status=415,
        )
    message_id = _field(data, "id")
    if len(message_id) > MAX_ID_CHARS:
        raise BadRequest("invalid_field", f"'id' is longer than {MAX_ID_CHARS}", "id")
    if not message_id.isprintable():
        # The id is logged and journaled: no line breaks, bidi overrides or other controls.
        raise BadRequest("invalid_field", "'id' holds control characters", "id")
    originator = msisdn(_field(data, "originator"), "originator")
    recipient_raw = data.get("recipient", data.get("receiver"))
    if recipient_raw is None:
        raise BadRequest("missing_field", "'recipient' is required", "recipient")
    recipient = msisdn(_as_text(recipient_raw, "recipient"), "recipient")
    body = data.get("body")
    body = "" if body is None else _as_text(body, "body")  # JSON null: an empty text
    if len(body) > MAX_TEXT_CHARS:
        raise BadRequest("invalid_field", f"'body' is longer than {MAX_TEXT_CHARS}", "body")
    # Here, before the body is stored, journaled or logged; in the format of the region of
    # the number it was sent to (the campaign's).
    body = mask_numbers(body, region_of(recipient))
    created = data.get("createdDatetime")
    created_ms = None if created in (None, "") else iso_ms(_as_text(created, "createdDatetime"))
    return InboundSms(message_id, originator, recipient, body, created_ms)


def _field(data: dict[str, Any], name: str) -> str:
    if name not in data:
        raise BadRequest("missing_field", f"{name!r} is required", name)
    value = _as_text(data[name], name)
    if not value.strip():
        raise BadRequest("missing_field", f"{name!r} is empty", name)
    return value


def _as_text(value: Any, name: str) -> str:
    # MessageBird's JSON may carry numbers as numbers (originator, recipient).
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest("invalid_field", f"{name!r} must be a string", name)
    text = str(value)
    if "\x00" in text:
        raise BadRequest("invalid_field", f"{name!r} holds a NUL character", name)
    return text


class SignatureVerifier:
    """Checks ``MessageBird-Signature-JWT`` with the SDK and refuses replayed ``jti``s.

    The SDK checks iss/nbf/exp, the URL hash and the payload hash. A token in MessageBird's
    plain form is checked first by ``infra.mb_verify.QuickCheck`` (the same checks, in C,
    accepting only what the SDK accepts); any other, and any it does not pass, goes to the
    SDK's checks, which accept or refuse it as before. The token is checked before the
    body is read (``check_token``), the body after (``check_body``). The SDK does not remember
    ``jti``s and raises KeyError on a token without ``url_hash``: both are handled here.
    Seen ``jti``s are kept until their token expires, never dropped before: tokens may
    live ``max_lifetime_s`` at most, and past ``max_remembered`` unexpired ones new
    requests are answered 503 (retried by MessageBird) rather than any jti forgotten.
    """

    def __init__(self, signing_key: str, max_remembered: int = 100_000,
                 max_lifetime_s: int = MAX_TOKEN_LIFETIME_S) -> None:
        self._key = signing_key
        self._quick = QuickCheck(signing_key)
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_remembered
        self._max_lifetime = max_lifetime_s

    def verify(self, token: str | None, url: str, body: bytes) -> dict[str, Any]:
        """The whole check: ``check_token``, then ``check_body``."""
        claims = self.check_token(token, url)
        self.check_body(claims, body)
        return claims

    def check_token(self, token: str | None, url: str) -> dict[str, Any]:
        """Everything but the body, before it is read: the token's signature, issuer and
        times, the URL it was signed for, its lifetime, its ``jti`` never seen (then
        remembered). A forged or replayed request is refused here with no more of its body
        buffered than had arrived with its headers."""
        if not token:
            raise Unauthorized("missing_signature", "MessageBird-Signature-JWT header is required")
        if not token.isascii() or len(token) > MAX_TOKEN_CHARS:
            # aiohttp hands undecodable header bytes over as lone surrogates, which the SDK
            # cannot even encode (UnicodeEncodeError, a 500 before this check).
            raise Unauthorized("invalid_signature", "signature is not a JWT")
        now = time.time()
        claims = self._quick.claims(token, url, None, now)
        if claims is None:  # not in the plain form, or not passing: the SDK decides
            claims = self._sdk_claims(token, url)
        jti = claims.get("jti")
        if not jti or not isinstance(jti, str):
            raise Unauthorized("invalid_signature", "signature lacks claim 'jti'")
        exp, nbf = claims.get("exp"), claims.get("nbf", now)
        if (not isinstance(exp, int | float) or not isinstance(nbf, int | float)
                or exp - min(nbf, now) > self._max_lifetime):
            # A jti is remembered until its token expires: a token of any lifetime (10
            # years passed) would have to be remembered for as long.
            raise Unauthorized("invalid_signature",
                               f"signature must expire within {self._max_lifetime} s")
        self._remember(jti, float(exp), now)
        return claims

    def check_body(self, claims: dict[str, Any], body: bytes) -> None:
        """The body against its token's ``payload_hash`` (the SDK's rules)."""
        why = payload_matches(claims, body)
        if why is not None:
            raise Unauthorized("invalid_signature", f"signature refused: invalid jwt: {why}")

    def _sdk_claims(self, token: str, url: str) -> dict[str, Any]:
        try:
            return sdk_token_claims(self._key, token, url)
        except ValidationError as exc:
            raise Unauthorized("invalid_signature", f"signature refused: {exc}") from None
        except KeyError as exc:
            raise Unauthorized("invalid_signature", f"signature lacks claim {exc}") from None
        except (TypeError, ValueError):
            # A correctly signed token whose url_hash/payload_hash is not a string: the
            # SDK's compare_digest raises TypeError.
            raise Unauthorized("invalid_signature", "signature claims have the wrong types") from None

    def _remember(self, jti: str, exp: float, now: float) -> None:
        # Ordered by arrival, not expiry: drop the oldest while they have expired (a later
        # one that expired already is dropped when it reaches the front).
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        if jti in self._seen:
            raise Unauthorized("replayed_signature", "signature was already used")
        if len(self._seen) >= self._max:
            # Never forget a token before it expires (it could be replayed): refuse new ones
            # for now; MessageBird retries a 503.
            raise WebhookError("busy", "too many signatures to remember; retry", status=503)
        self._seen[jti] = exp

    def forget(self, jti: str) -> None:
        """Accept this token once more: its request was refused for a reason of ours (503)."""
        self._seen.pop(jti, None)
