"""Sending replies through MessageBird with the real ``messagebird`` client.

``MessageBirdGateway.send()`` posts one SMS to one recipient and returns a ``SendResult``
(provider message id, total price in micro-units, currency, part count). It uses the
official ``messagebird`` 2.2.0 SDK, with two changes made from the outside:

* ``BoundedHttpClient`` replaces the SDK's ``HttpClient``, whose ``request`` calls the
  module-level ``requests.post`` with no timeout (a stuck provider would hang a worker
  thread forever) and a new connection every time. Ours is the same request over a
  thread-safe urllib3 pool of kept-alive connections (sends run in a pool of threads)
  with ``timeout=(connect, read)``. Note that such a timeout bounds the connect and each
  socket read, not the whole call's wall-clock time.
* The message is created with ``client.request('messages', 'POST', params)`` instead of
  ``client.message_create``: the SDK's ``Message`` model drops ``price`` and
  ``messagePartCount``, which the raw JSON keeps.

It is one adapter of the gateway port (``infra.gateway``: ``SmsGateway``, ``SendResult``,
the error tree, ``DryRunGateway``). ``gateway_from_env()`` picks it or the dry run from
``MESSAGEBIRD_ACCESS_KEY``, ``MESSAGEBIRD_ENDPOINT`` and ``MESSAGEBIRD_TIMEOUT_S``;
``infra.messagebird_local`` is a local server to point ``MESSAGEBIRD_ENDPOINT`` at for
trying things offline.

Errors: those of the port (``infra.gateway``); a MessageBird ``errors`` JSON is a
``GatewayRejected``. What is retried and what is uncertain (never resent) is the rule both
gateways share, ``infra.send_rule``: MessageBird's classic API has no idempotency key, so a
request that may have been accepted is never sent again.
"""

from __future__ import annotations

import codecs
import logging
import os
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode, urljoin

import messagebird
import messagebird.client
import requests
import requests.structures
import urllib3
from messagebird.http_client import HttpClient, ResponseFormat
from messagebird.serde import json_serialize

from infra.gateway import (
    DryRunGateway,
    GatewayError,
    GatewayRejected,
    SendResult,
    scheduled_datetime,
    scrub,
    scrub_exact,
    timeout_from_env,
)
from infra.send_rule import HttpSender, SendFailure, gateway_error, status_error

__all__ = [
    "DEFAULT_ENDPOINT",
    "BoundedHttpClient",
    "MessageBirdGateway",
    "gateway_from_env",
]

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://rest.messagebird.com/"
DEFAULT_TIMEOUT_S = 10.0
_MICROS = Decimal(1_000_000)


# -- HTTP client -----------------------------------------------------------------------


class BoundedHttpClient(HttpClient):
    """``messagebird.http_client.HttpClient`` with a timeout and a pool of connections.

    Same request building and status handling as the SDK (200/201/204/401/404/405/422
    return the body; anything else raises ``requests.HTTPError`` with the response, as
    ``raise_for_status()`` does). The transport is urllib3 (what requests itself sends
    with), called directly: one thread-safe pool of kept-alive connections shared by the
    sending threads (``pool_size``, more are opened if more threads call at once), no
    redirects, no retries. requests' own layer (preparing, hooks, cookies, adapters,
    environment lookups) cost more CPU than the call itself: profiled in the reply stage,
    tests/benchmarks, rows "stage" and "sends". The transport is the one both gateways
    share (``infra.send_rule.HttpSender``): a transport failure is raised as its
    ``SendFailure``, which ``MessageBirdGateway`` maps with the shared rule (the one retry,
    a reused keep-alive connection closed with no byte back, happens inside it).

    Proxies (``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``) and the CA bundle
    (``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else certifi's) are read from the
    environment once, when the client is made. ``~/.netrc`` is never used (it would
    replace the AccessKey header).
    """

    SUPPORTED_STATUS_CODES = frozenset({200, 201, 204, 401, 404, 405, 422})

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        user_agent: str,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
        pool_size: int = 32,
    ) -> None:
        super().__init__(endpoint, access_key, user_agent)
        if isinstance(timeout, tuple):
            connect, read = timeout
        else:
            connect = read = timeout
        if connect <= 0 or read <= 0:
            raise ValueError("timeout must be positive")
        self.sender = HttpSender(endpoint, (connect, read), pool_size)
        self.timeout: tuple[float, float] = self.sender.timeout
        self._base_headers = {
            "Accept": "application/json",
            "Authorization": "AccessKey " + self.access_key,
            "User-Agent": self.user_agent,
            "Content-Type": "application/json; charset=UTF-8",
        }

    def close(self) -> None:
        """Close the pooled connections."""
        self.sender.close()

    def request(self, path, method="GET", params=None, format=ResponseFormat.text):  # noqa: A002
        """Builds a request and gets a response (the SDK's, bounded in time)."""
        if params is None:
            params = {}
        url = urljoin(self.endpoint, path)
        if method == "GET":
            if params:
                url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
            body = None
        elif method in ("DELETE", "PATCH", "POST", "PUT"):
            body = json_serialize(params)
        else:
            raise ValueError(str(method) + " is not a supported HTTP method")
        response = self.sender.send(method, url, body, self._base_headers)

        if response.status not in self.SUPPORTED_STATUS_CODES:
            _as_requests_response(response, url).raise_for_status()
            raise requests.HTTPError(f"unexpected HTTP status {response.status}")

        if format == ResponseFormat.binary:
            return response.data
        if format == ResponseFormat.text:
            return response.data.decode(_charset(response), errors="replace")
        return None


def _charset(response: urllib3.BaseHTTPResponse) -> str:
    content_type = response.headers.get("Content-Type", "")
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _as_requests_response(response: urllib3.BaseHTTPResponse, url: str) -> requests.Response:
    """The answer as a ``requests.Response`` (for ``HTTPError.response``: status, JSON)."""
    out = requests.Response()
    out.status_code = response.status
    out.reason = response.reason or ""
    out.headers = requests.structures.CaseInsensitiveDict(response.headers)
    out._content = response.data
    out.encoding = _charset(response)
    out.url = url
    return out


# -- the gateway -------------------------------------------------------------------------


def _price_micros(items: list[Any]) -> tuple[int | None, str | None]:
    total: Decimal | None = None
    currency: str | None = None
    for item in items:
        price = item.get("price") if isinstance(item, dict) else None
        if not isinstance(price, dict) or price.get("amount") is None:
            continue
        try:
            amount = Decimal(str(price["amount"]))
        except (InvalidOperation, ValueError):
            continue
        if not amount.is_finite():
            continue
        total = amount if total is None else total + amount
        if currency is None and isinstance(price.get("currency"), str):
            currency = price["currency"]
    if total is None:
        return None, currency
    return int((total * _MICROS).to_integral_value(rounding=ROUND_HALF_UP)), currency


def _result_from(raw: dict[str, Any]) -> SendResult:
    recipients = raw.get("recipients")
    items = recipients.get("items") if isinstance(recipients, dict) else None
    items = items if isinstance(items, list) else []
    price_micros, currency = _price_micros(items)
    parts = None
    if items and isinstance(items[0], dict):
        count = items[0].get("messagePartCount")
        if isinstance(count, int) and not isinstance(count, bool):
            parts = count
    message_id = raw.get("id")
    return SendResult(
        provider_message_id=str(message_id) if message_id is not None else None,
        price_micros=price_micros,
        currency=currency,
        parts=parts,
        dry_run=False,
    )


def _first_error_of(response: requests.Response | None) -> dict[str, Any]:
    if response is None:
        return {}
    try:
        errors = response.json().get("errors")
        first = errors[0]
        return first if isinstance(first, dict) else {}
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return {}


class MessageBirdGateway:
    """Sends SMS through MessageBird's REST API with the official SDK, time-bounded.

    Thread-safe: ``send`` may be called concurrently (e.g. from ``asyncio.to_thread``).
    """

    def __init__(
        self,
        access_key: str,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not access_key:
            raise ValueError("access_key is required (use DryRunGateway to send nothing)")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        # urljoin(endpoint, 'messages') drops the last path segment without a final slash.
        self.endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self.timeout = float(timeout)
        self._http = BoundedHttpClient(
            self.endpoint,
            access_key,
            messagebird.client.USER_AGENT,
            timeout=(self.timeout, self.timeout),
        )
        self._client = messagebird.Client(access_key, http_client=self._http)

    def __repr__(self) -> str:  # never shows the key
        return f"MessageBirdGateway(endpoint={self.endpoint!r}, timeout={self.timeout:g})"

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        *,
        originator: str,
        recipient: str,
        body: str,
        reference: str,
        report_url: str | None = None,
        scheduled_at: int | None = None,
    ) -> SendResult:
        """Send one SMS; ``scheduled_at`` (epoch ms) asks MessageBird to hold it until then
        (``scheduledDatetime``), e.g. a reply delayed by the campaign policy."""
        params: dict[str, Any] = {
            "originator": originator,
            "body": body,
            "recipients": recipient,
            "reference": reference,
            "datacoding": "auto",
        }
        if report_url:
            params["reportUrl"] = report_url
        if scheduled_at is not None:
            params["scheduledDatetime"] = scheduled_datetime(scheduled_at)
        ref = scrub_exact(reference, recipient)  # what our messages may show
        try:
            raw = self._client.request("messages", "POST", params)
        except SendFailure as exc:  # the rule shared with Bird's gateway (infra.send_rule)
            raise gateway_error(exc, "MessageBird", ref, self._http.timeout) from exc
        except requests.HTTPError as exc:
            raise self._http_error(exc, ref, recipient, body) from None
        except messagebird.client.ErrorException as exc:
            raise self._rejected(exc, ref, recipient, body) from None
        except ValueError:  # json.JSONDecodeError from Client.request
            raise GatewayError(
                f"MessageBird answered with a body that is not JSON (reference {ref!r});"
                " the SMS may have been sent"
            ) from None
        if not isinstance(raw, dict):
            raise GatewayError(
                f"MessageBird answered with an unexpected body (reference {ref!r});"
                " the SMS may have been sent"
            )
        result = _result_from(raw)
        log.debug(
            "SMS sent: reference=%r provider_id=%s parts=%s",
            ref,
            result.provider_message_id,
            result.parts,
        )
        return result

    @staticmethod
    def _http_error(
        exc: requests.HTTPError, reference: str, recipient: str, body: str
    ) -> GatewayError:
        response = exc.response
        status = response.status_code if response is not None else None
        if status is None:
            return GatewayError(f"MessageBird answered an unreadable HTTP error (reference "
                                f"{reference!r}); the SMS may have been sent")
        shared = status_error(status, "MessageBird", reference, response.headers)
        if shared is not None:  # 429, 5xx: the rule shared with Bird's gateway
            return shared
        first = _first_error_of(response)
        description = scrub(
            str(first["description"]) if first.get("description") is not None else None,
            recipient,
            body,
        )
        code = first.get("code") if isinstance(first.get("code"), int) else None
        parameter = first.get("parameter") if isinstance(first.get("parameter"), str) else None
        detail = f": code {code}, {description}" if description else ""
        return GatewayRejected(
            f"MessageBird rejected the SMS with HTTP {status}{detail} (reference {reference!r})",
            code=code,
            description=description,
            parameter=parameter,
            status=status,
        )

    @staticmethod
    def _rejected(
        exc: messagebird.client.ErrorException, reference: str, recipient: str, body: str
    ) -> GatewayRejected:
        first = exc.errors[0] if exc.errors else None
        code = getattr(first, "code", None)
        raw_description = getattr(first, "description", None)
        description = scrub(
            str(raw_description) if raw_description is not None else None, recipient, body
        )
        parameter = getattr(first, "parameter", None)
        more = f" (+{len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
        return GatewayRejected(
            f"MessageBird rejected the SMS: code {code}, {description}"
            f" [parameter {parameter}]{more} (reference {reference!r})",
            code=code,
            description=description,
            parameter=parameter if isinstance(parameter, str) else None,
        )


def gateway_from_env(
    environ: Mapping[str, str] = os.environ,
) -> MessageBirdGateway | DryRunGateway:
    """``MessageBirdGateway`` if ``MESSAGEBIRD_ACCESS_KEY`` is set, else ``DryRunGateway``.

    ``MESSAGEBIRD_ENDPOINT`` (default ``https://rest.messagebird.com/``) and
    ``MESSAGEBIRD_TIMEOUT_S`` (default 10) tune the real one.
    """
    access_key = (environ.get("MESSAGEBIRD_ACCESS_KEY") or "").strip()
    if not access_key:
        log.info("MESSAGEBIRD_ACCESS_KEY is not set: dry run, no SMS will be sent")
        return DryRunGateway()
    endpoint = (environ.get("MESSAGEBIRD_ENDPOINT") or "").strip() or DEFAULT_ENDPOINT
    timeout = timeout_from_env(environ, "MESSAGEBIRD_TIMEOUT_S", DEFAULT_TIMEOUT_S)
    return MessageBirdGateway(access_key, endpoint=endpoint, timeout=timeout)
