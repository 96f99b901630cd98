"""Sending replies through Bird's Channels API (MessageBird's successor), over HTTP.

``BirdGateway.send()`` posts one SMS to one recipient on one Bird channel and returns the
same ``SendResult`` as ``infra.messagebird_gateway.MessageBirdGateway``, raising the same
errors, so ``infra.sending.deliver`` turns both into the same outcomes (sent, failed,
uncertain). What Bird documents (docs.bird.com, "Channels API", "Send an SMS message",
"Sending messages"; checked 2026-12-01):

* ``POST {endpoint}/workspaces/{workspaceId}/channels/{channelId}/messages`` with
  ``Authorization: AccessKey <key>`` and a JSON body: ``receiver.contacts[]`` with
  ``identifierKey`` ``phonenumber`` and ``identifierValue`` the E.164 number, ``body``
  ``{"type": "text", "text": {"text": ...}}`` and an optional ``reference`` (ours is the
  inbound message id, as with the classic API). The answer is ``202 Accepted`` with the
  message (``id``, ``status`` ``accepted``).
* Idempotency (bird.com/docs "Idempotency", the API reference's wire contract; checked
  2026-12-07): an ``Idempotency-Key`` header on a POST, any non-empty string up to 255
  characters; the same key with the same request replays the original status and body
  with ``Idempotency-Replay: true``; the same key with another request is ``409``
  ``IdempotencyKeyReuse`` (E01005); while the first is in flight ``409``
  ``RequestInProgress`` (E01004, the lock lasts about 30 s); a 5xx is not cached; keys are
  kept about 3 hours. That page is written for Bird's newer ``/v1`` platform API; the
  Channels API pages do not mention the header. Every send carries one anyway, derived
  from the reply's identity (``idempotency_key``: the same for every attempt of one reply,
  in any process, after any restart), and nothing counts on it alone: what may have been
  accepted is never sent again (``infra.send_rule``, the rule of both gateways). A 409
  ``RequestInProgress`` proves Bird honours the key, so the same request is asked again
  (a few times over about 30 s) for the original answer; ``IdempotencyKeyReuse`` means an
  earlier attempt of this reply was taken: uncertain, not sent again.
* The reply leaves from the channel's own sender: the campaign's ``originator`` is unused.
* Bird's 202 answer carries no price: ``price_micros`` is ``None`` and the campaign keeps
  its estimate until a status event (``sms.outbound``, ``streams.intake.bird``) prices it.
* ``scheduled_at`` is sent as ``scheduledFor`` (RFC 3339, UTC). That field is not in the
  pages the search returned; it is named after the Channels API's message schema as we
  know it. Unset for replies sent at once, which is the default policy.

Transport: the one both gateways share (``infra.send_rule.HttpSender``): a pool of
kept-alive connections, thread-safe (sends run in a pool of threads), ``timeout=(connect,
read)``, no redirects, no retries of its own but the keep-alive race. Proxies
(``HTTPS_PROXY`` / ``NO_PROXY``) and the CA bundle (``REQUESTS_CA_BUNDLE``, else certifi's)
are read from the environment once.

Errors: the port's (``infra.gateway``), decided by the shared rule (``infra.send_rule``);
a 4xx with Bird's error JSON is ``GatewayRejected`` (401 bad key, 404 unknown channel, 422
bad body); no message we build holds the recipient or the body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson
import urllib3

from infra.gateway import (
    GatewayError,
    GatewayRejected,
    GatewayUncertain,
    SendResult,
    scrub,
    scrub_exact,
)
from infra.send_rule import HttpSender, SendFailure, gateway_error, status_error
from schemas.reasons import IDEMPOTENCY_KEY_REUSED, REQUEST_IN_PROGRESS

__all__ = ["DEFAULT_BIRD_ENDPOINT", "IDEMPOTENCY_HEADER", "REPLAY_HEADER", "BirdGateway",
           "BirdTransport", "bird_message_body", "idempotency_key"]

log = logging.getLogger(__name__)

DEFAULT_BIRD_ENDPOINT = "https://api.bird.com"
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "antirelou-bird/1.0"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotency-Replay"
# Bird's codes for a key reused with another request, and for one still in flight (the
# Channels API's error JSON names them in "code"; the /v1 API's has "code" E0100x and "name").
KEY_REUSED = frozenset({"IdempotencyKeyReuse", "E01005"})
IN_PROGRESS = frozenset({"RequestInProgress", "E01004", "idempotency_key_in_use"})
# Waits before asking again for a request Bird says is in flight (its lock: about 30 s).
IN_PROGRESS_WAITS_S = (1.0, 2.0, 4.0, 8.0, 16.0)


def idempotency_key(reference: str) -> str:
    """The ``Idempotency-Key`` of every attempt of one reply. A reply's identity is the
    inbound message id it answers (its ``reference``; one reply per message id, the key of
    the send stage's ``replies_by_message``), so the key is the same in every worker and
    after every restart; hashed, it is 80 characters of ASCII whatever the id holds."""
    return "antirelou-reply-" + hashlib.sha256(reference.encode("utf-8")).hexdigest()


def bird_message_body(recipient: str, body: str, reference: str,
                      scheduled_at: int | None = None) -> dict[str, Any]:
    """The JSON of one SMS as the Channels API takes it (``recipient``: E.164 digits)."""
    out: dict[str, Any] = {
        "receiver": {"contacts": [{"identifierKey": "phonenumber",
                                   "identifierValue": "+" + recipient.lstrip("+")}]},
        "body": {"type": "text", "text": {"text": body}},
        "reference": reference,
    }
    if scheduled_at is not None:
        out["scheduledFor"] = (dt.datetime.fromtimestamp(scheduled_at / 1000, tz=dt.UTC)
                               .isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return out


class BirdTransport:
    """The pooled, time-bounded HTTP client shared by every channel of one Bird account."""

    def __init__(self, access_key: str, endpoint: str = DEFAULT_BIRD_ENDPOINT,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
                 pool_size: int = 32) -> None:
        if not access_key:
            raise ValueError("a Bird access key is required (BIRD_ACCESS_KEY)")
        self.endpoint = endpoint.rstrip("/")
        self.sender = HttpSender(self.endpoint, timeout, pool_size)
        self.timeout = self.sender.timeout
        self._headers = {"Accept": "application/json", "Content-Type": "application/json",
                         "Authorization": "AccessKey " + access_key, "User-Agent": USER_AGENT}

    def __repr__(self) -> str:  # never shows the key
        return f"BirdTransport(endpoint={self.endpoint!r}, timeout={self.timeout})"

    def close(self) -> None:
        self.sender.close()

    def post(self, path: str, payload: dict[str, Any],
             headers: Mapping[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        """POST JSON; a transport failure is ``infra.send_rule.SendFailure``."""
        return self.sender.send("POST", self.endpoint + path, orjson.dumps(payload),
                                {**self._headers, **(headers or {})})


class BirdGateway:
    """One Bird SMS channel behind the ``SmsGateway`` port. Thread-safe."""

    def __init__(self, transport: BirdTransport, workspace_id: str, channel_id: str, *,
                 in_progress_waits_s: Sequence[float] = IN_PROGRESS_WAITS_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not workspace_id or not channel_id:
            raise ValueError("a Bird workspace id and channel id are required")
        self.transport = transport
        self.workspace_id = workspace_id
        self.channel_id = channel_id
        self._path = (f"/workspaces/{quote(workspace_id, safe='')}"
                      f"/channels/{quote(channel_id, safe='')}/messages")
        self._waits = tuple(in_progress_waits_s)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"BirdGateway(workspace={self.workspace_id!r}, channel={self.channel_id!r})"

    def close(self) -> None:
        self.transport.close()

    def send(
        self,
        *,
        originator: str,  # noqa: ARG002 - a Bird channel sends from its own number
        recipient: str,
        body: str,
        reference: str,
        report_url: str | None = None,  # noqa: ARG002 - statuses come by subscription
        scheduled_at: int | None = None,
    ) -> SendResult:
        ref = scrub_exact(reference, recipient)
        payload = bird_message_body(recipient, body, reference, scheduled_at)
        headers = {IDEMPOTENCY_HEADER: idempotency_key(reference)}
        for wait in (*self._waits, None):
            try:
                response = self.transport.post(self._path, payload, headers)
            except SendFailure as exc:  # the rule shared with the classic gateway
                raise gateway_error(exc, "Bird", ref, self.transport.timeout) from exc
            if response.status != 409 or _error_code(response) not in IN_PROGRESS:
                break
            # The first request with this key is in flight at Bird: asked again (the same
            # key: Bird answers with that request's outcome, never a second SMS).
            if wait is None:
                raise GatewayUncertain(
                    f"Bird still had a request with this reply's idempotency key in flight "
                    f"after {sum(self._waits):g} s (reference {ref!r}); the SMS may have been "
                    "sent: not sent again", reason=REQUEST_IN_PROGRESS, status=409)
            log.info("reply %r: a request with its idempotency key is in flight at Bird; "
                     "asking again in %g s", ref, wait)
            self._sleep(wait)
        status = response.status
        shared = status_error(status, "Bird", ref, response.headers)
        if shared is not None:  # 429, 5xx: the rule shared with the classic gateway
            raise shared
        if status == 409 and _error_code(response) in KEY_REUSED:
            raise GatewayUncertain(
                f"Bird took another request with this reply's idempotency key (reference "
                f"{ref!r}): an earlier attempt was accepted; not sent again",
                reason=IDEMPOTENCY_KEY_REUSED, status=409)
        if status >= 400:
            raise self._rejected(response, ref, recipient, body)
        if status not in (200, 201, 202):
            raise GatewayError(f"Bird answered HTTP {status} (reference {ref!r}); the SMS "
                               "may have been sent")
        try:
            raw = orjson.loads(response.data)
        except orjson.JSONDecodeError:
            raise GatewayError(f"Bird answered with a body that is not JSON (reference "
                               f"{ref!r}); the SMS may have been sent") from None
        if not isinstance(raw, dict):
            raise GatewayError(f"Bird answered with an unexpected body (reference {ref!r}); "
                               "the SMS may have been sent")
        message_id = raw.get("id")
        result = SendResult(
            provider_message_id=str(message_id) if isinstance(message_id, str | int) else None,
            price_micros=None, currency=None, parts=_parts(raw), dry_run=False)
        replayed = (response.headers.get(REPLAY_HEADER) or "").lower() == "true"
        log.log(logging.INFO if replayed else logging.DEBUG,
                "SMS accepted by Bird%s: reference=%r provider_id=%s",
                " (an earlier attempt's answer, replayed for its idempotency key)"
                if replayed else "", ref, result.provider_message_id)
        return result

    @staticmethod
    def _rejected(response: urllib3.BaseHTTPResponse, ref: str, recipient: str,
                  body: str) -> GatewayRejected:
        code = description = None
        data = _error_json(response)
        if data is not None:
            raw_code, raw_message = data.get("code"), data.get("message")
            code = raw_code if isinstance(raw_code, str | int) else None
            description = scrub(str(raw_message), recipient, body) if raw_message else None
        detail = f": {code}, {description}" if code or description else ""
        return GatewayRejected(
            f"Bird rejected the SMS with HTTP {response.status}{detail} (reference {ref!r})",
            code=code if isinstance(code, int) else None, description=description,
            status=response.status)


def _error_json(response: urllib3.BaseHTTPResponse) -> dict[str, Any] | None:
    """Bird's error JSON: ``{"code", "message"}`` (Channels API) or the same fields under
    ``"error"`` (the /v1 API's envelope); None when the body is not one."""
    try:
        data = orjson.loads(response.data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    return data if isinstance(data, dict) else None


def _error_code(response: urllib3.BaseHTTPResponse) -> str | None:
    """The code (or, in the /v1 envelope, the name) of Bird's error answer."""
    data = _error_json(response) or {}
    for field in ("code", "name"):
        value = data.get(field)
        if isinstance(value, str) and (value in KEY_REUSED or value in IN_PROGRESS):
            return value
    code = data.get("code")
    return code if isinstance(code, str) else None


def _parts(raw: Mapping[str, Any]) -> int | None:
    parts = raw.get("parts")
    return len(parts) if isinstance(parts, list) and parts else None
