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
``GatewayRejected``. A reused keep-alive connection closed with no byte back is retried
once inside the client (see ``BoundedHttpClient``).
"""

from __future__ import annotations

import codecs
import http.client
import logging
import os
import threading
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
    GatewayConnectionLost,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
    pool_manager,
    scheduled_datetime,
    scrub,
    scrub_exact,
    timeout_from_env,
)

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


class ConnectionLostAfterWrite(requests.RequestException):
    """The whole request was written, then the connection dropped without a full answer."""


_sent = threading.local()  # what the calling thread's last request did on its connection


class _TrackedConnection:
    """Mixed into urllib3's connections: records, for the calling thread, whether the
    request went out on a reused keep-alive connection and whether it was written whole.
    A dropped connection (reset, closed) is indistinguishable from a provider that accepted
    the request and then dropped it, unless the request never left: only that is safe to
    retry."""

    _uses = 0

    def request(self, *args: Any, **kwargs: Any) -> None:
        _sent.reused = self.sock is not None and self._uses > 0  # type: ignore[attr-defined]
        _sent.written = False
        super().request(*args, **kwargs)  # type: ignore[misc]
        _sent.written = True
        self._uses += 1

    def close(self) -> None:
        self._uses = 0
        super().close()  # type: ignore[misc]


class _HTTPConnection(_TrackedConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_TrackedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _no_byte_back(error: BaseException) -> bool:
    """The peer closed the connection cleanly before sending any byte of an answer."""
    cause = error.args[1] if len(error.args) > 1 else None
    return isinstance(cause, http.client.RemoteDisconnected)



class BoundedHttpClient(HttpClient):
    """``messagebird.http_client.HttpClient`` with a timeout and a pool of connections.

    Same request building and status handling as the SDK (200/201/204/401/404/405/422
    return the body; anything else raises ``requests.HTTPError`` with the response, as
    ``raise_for_status()`` does). The transport is urllib3 (what requests itself sends
    with), called directly: one thread-safe pool of kept-alive connections shared by the
    sending threads (``pool_size``, more are opened if more threads call at once), no
    redirects, no retries. requests' own layer (preparing, hooks, cookies, adapters,
    environment lookups) cost more CPU than the call itself: profiled in the reply stage,
    tests/benchmarks, rows "stage" and "sends". Transport failures are raised as the
    requests exceptions that requests would raise for them, which ``MessageBirdGateway``
    maps to its errors: ``ConnectTimeout`` (nothing sent), ``ConnectionError`` (refused, or
    dropped before the request was written whole), ``ConnectionLostAfterWrite`` (dropped
    after: the SMS may have been sent), ``ReadTimeout`` (the request left; the SMS may have
    been sent), and ``RequestException`` for anything else. The one retry is a reused
    keep-alive connection closed with no byte back (the provider closed it as it sat
    idle, the classic keep-alive race): sent again once, on another connection.

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
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.timeout: tuple[float, float] = (float(connect), float(read))
        self._timeout = urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1])
        self._pool = pool_manager(endpoint, pool_size)
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._base_headers = {
            "Accept": "application/json",
            "Authorization": "AccessKey " + self.access_key,
            "User-Agent": self.user_agent,
            "Content-Type": "application/json; charset=UTF-8",
        }

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()

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
        response = self._urlopen(method, url, body)

        if response.status not in self.SUPPORTED_STATUS_CODES:
            _as_requests_response(response, url).raise_for_status()
            raise requests.HTTPError(f"unexpected HTTP status {response.status}")

        if format == ResponseFormat.binary:
            return response.data
        if format == ResponseFormat.text:
            return response.data.decode(_charset(response), errors="replace")
        return None

    def _urlopen(self, method: str, url: str, body: Any) -> urllib3.BaseHTTPResponse:
        for try_ in (1, 2):
            _sent.reused = _sent.written = False
            try:
                return self._pool.request(method, url, body=body, headers=self._base_headers,
                                          timeout=self._timeout, retries=False,
                                          redirect=False)
            except urllib3.exceptions.MaxRetryError as exc:  # not raised with retries=False,
                error = exc.reason or exc                      # but kept safe if it were
            except urllib3.exceptions.HTTPError as exc:
                error = exc
            if not (isinstance(error, urllib3.exceptions.ProtocolError) and _sent.written):
                break
            # The request was written whole, then the connection dropped. Only a reused
            # keep-alive connection that the provider closed with no byte back (it closed
            # the idle connection as our request went out) is tried again, once, on
            # another connection; anything else may have been accepted.
            if not (try_ == 1 and _sent.reused and _no_byte_back(error)):
                raise ConnectionLostAfterWrite(error) from error
        # The exceptions requests' HTTPAdapter raises for these (what the gateway maps).
        if isinstance(error, urllib3.exceptions.NewConnectionError):
            raise requests.ConnectionError(error) from error  # refused, unresolvable
        if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
            raise requests.ConnectTimeout(error) from error
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise requests.ReadTimeout(error) from error
        if isinstance(error, urllib3.exceptions.SSLError):
            raise requests.exceptions.SSLError(error) from error
        if isinstance(error, urllib3.exceptions.ProxyError):
            raise requests.exceptions.ProxyError(error) from error
        if isinstance(error, urllib3.exceptions.ProtocolError):
            raise requests.ConnectionError(error) from error  # reset, dropped
        raise requests.RequestException(error) from error


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
        except requests.ConnectTimeout as exc:  # the request never left: nothing was sent
            raise GatewayUnavailable(
                f"MessageBird did not accept a connection within {self.timeout:g} s "
                f"(reference {ref!r})"
            ) from exc
        except requests.Timeout as exc:
            raise GatewayTimeout(
                f"MessageBird did not answer within {self.timeout:g} s "
                f"(reference {ref!r}); the SMS may have been sent"
            ) from exc
        except ConnectionLostAfterWrite as exc:
            raise GatewayConnectionLost(
                f"MessageBird dropped the connection after the request was sent "
                f"(reference {ref!r}); the SMS may have been sent"
            ) from exc
        except requests.ConnectionError as exc:
            raise GatewayUnavailable(
                f"MessageBird unreachable at {self.endpoint} (reference {ref!r})"
            ) from exc
        except requests.HTTPError as exc:
            raise self._http_error(exc, ref, recipient, body) from None
        except messagebird.client.ErrorException as exc:
            raise self._rejected(exc, ref, recipient, body) from None
        except requests.RequestException as exc:
            raise GatewayError(
                f"MessageBird request failed ({type(exc).__name__}, reference {ref!r});"
                " the SMS may have been sent"
            ) from None
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
        if status is None or status >= 500 or status == 429:
            return GatewayUnavailable(
                f"MessageBird answered HTTP {status} (reference {reference!r}): retryable",
                status=status,
            )
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
