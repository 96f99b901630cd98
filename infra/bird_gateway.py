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
* No idempotency key for this endpoint appears in Bird's documentation (searched:
  "Bird API idempotency key", "docs.bird.com Idempotency-Key header"). So, as with the
  classic API, a request that may have reached Bird is never sent again blindly: a read
  timeout is ``GatewayTimeout`` (the reply becomes *uncertain*); what is retried is what
  says nothing was accepted (connection refused, connect timeout, 5xx, 429) and, as the
  classic gateway does, a dropped connection (README, "Status and known limits").
* The reply leaves from the channel's own sender: the campaign's ``originator`` is unused.
* Bird's 202 answer carries no price: ``price_micros`` is ``None`` and the campaign keeps
  its estimate until a status event (``sms.outbound``, ``streams.intake.bird``) prices it.
* ``scheduled_at`` is sent as ``scheduledFor`` (RFC 3339, UTC). That field is not in the
  pages the search returned; it is named after the Channels API's message schema as we
  know it. Unset for replies sent at once, which is the default policy.

Transport: one urllib3 pool of kept-alive connections, thread-safe (sends run in a pool of
threads), ``timeout=(connect, read)``, no redirects, no retries of its own. Proxies
(``HTTPS_PROXY`` / ``NO_PROXY``) and the CA bundle (``REQUESTS_CA_BUNDLE``, else certifi's)
are read from the environment once.

Errors (the ``infra.messagebird_gateway`` tree; no message we build holds the recipient or
the body)::

    GatewayError          an answer we cannot read (the SMS may have been sent)
    +-- GatewayTimeout    no answer within the read bound after the request left
    +-- GatewayUnavailable refused, reset, connect timeout, 5xx, 429: retryable
    +-- GatewayRejected   other 4xx (401 bad key, 404 unknown channel, 422 bad body)
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
import urllib3

from infra.gateway import (
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
    pool_manager,
    scrub,
    scrub_exact,
)

__all__ = ["DEFAULT_BIRD_ENDPOINT", "BirdGateway", "BirdTransport", "bird_message_body"]

log = logging.getLogger(__name__)

DEFAULT_BIRD_ENDPOINT = "https://api.bird.com"
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "antirelou-bird/1.0"


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
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        if not (0 < connect < float("inf") and 0 < read < float("inf")):
            raise ValueError("timeout must be positive and finite")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = (float(connect), float(read))
        self._timeout = urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1])
        self._pool = pool_manager(self.endpoint, pool_size)
        self._headers = {"Accept": "application/json", "Content-Type": "application/json",
                         "Authorization": "AccessKey " + access_key, "User-Agent": USER_AGENT}

    def __repr__(self) -> str:  # never shows the key
        return f"BirdTransport(endpoint={self.endpoint!r}, timeout={self.timeout})"

    def close(self) -> None:
        self._pool.clear()

    def post(self, path: str, payload: dict[str, Any]) -> urllib3.BaseHTTPResponse:
        """POST JSON; transport failures as urllib3 exceptions (``BirdGateway`` maps them)."""
        return self._pool.request("POST", self.endpoint + path, body=orjson.dumps(payload),
                                  headers=self._headers, timeout=self._timeout,
                                  retries=False, redirect=False)


class BirdGateway:
    """One Bird SMS channel behind the ``SmsGateway`` port. Thread-safe."""

    def __init__(self, transport: BirdTransport, workspace_id: str, channel_id: str) -> None:
        if not workspace_id or not channel_id:
            raise ValueError("a Bird workspace id and channel id are required")
        self.transport = transport
        self.workspace_id = workspace_id
        self.channel_id = channel_id
        self._path = (f"/workspaces/{quote(workspace_id, safe='')}"
                      f"/channels/{quote(channel_id, safe='')}/messages")

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
        bound = self.transport.timeout
        try:
            response = self.transport.post(
                self._path, bird_message_body(recipient, body, reference, scheduled_at))
        except urllib3.exceptions.NewConnectionError as exc:  # refused, unresolvable
            raise GatewayUnavailable(
                f"Bird unreachable at {self.transport.endpoint} (reference {ref!r})") from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:  # the request never left
            raise GatewayUnavailable(
                f"Bird did not accept a connection within {bound[0]:g} s (reference {ref!r})"
            ) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise GatewayTimeout(
                f"Bird did not answer within {bound[1]:g} s (reference {ref!r}); the SMS may "
                "have been sent (Bird documents no idempotency key: not sent again)"
            ) from exc
        except urllib3.exceptions.ProtocolError as exc:
            # Reset or dropped, mostly a kept-alive connection the server had closed: retried,
            # as the classic gateway does (README "Status and known limits").
            raise GatewayUnavailable(
                f"Bird dropped the connection (reference {ref!r})") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise GatewayError(
                f"Bird request failed ({type(exc).__name__}, reference {ref!r}); the SMS may "
                "have been sent") from None
        status = response.status
        if status >= 500 or status == 429:
            raise GatewayUnavailable(
                f"Bird answered HTTP {status} (reference {ref!r}): retryable", status=status)
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
        log.debug("SMS accepted by Bird: reference=%r provider_id=%s", ref,
                  result.provider_message_id)
        return result

    @staticmethod
    def _rejected(response: urllib3.BaseHTTPResponse, ref: str, recipient: str,
                  body: str) -> GatewayRejected:
        code = description = None
        try:
            data = orjson.loads(response.data)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            raw_code, raw_message = data.get("code"), data.get("message")
            code = raw_code if isinstance(raw_code, str | int) else None
            description = scrub(str(raw_message), recipient, body) if raw_message else None
        detail = f": {code}, {description}" if code or description else ""
        return GatewayRejected(
            f"Bird rejected the SMS with HTTP {response.status}{detail} (reference {ref!r})",
            code=code if isinstance(code, int) else None, description=description,
            status=response.status)


def _parts(raw: Mapping[str, Any]) -> int | None:
    parts = raw.get("parts")
    return len(parts) if isinstance(parts, list) and parts else None
