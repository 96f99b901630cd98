"""One rule for every gateway: what may be sent again, and what never is.

A request to an SMS provider either was **not accepted** (it never left this machine, or the
provider said it did not take it) or **may have been accepted**. Only the first is tried
again; the second is *uncertain*: never resent, not refunded, settled by a delivery report
if one comes. Both gateways (``infra.messagebird_gateway``, ``infra.bird_gateway``) send
through ``HttpSender`` and map every failure with ``gateway_error`` / ``status_error``,
so the rule has one copy (STYLE 18: the Bird gateway's own copy retried a reset after
the request was written, 7-20 accepted sends per reply; the classic one retried every
5xx, and a 504 after acceptance gave 2 SMS).

====================================================  =====================================
what happened                                         error (``infra.gateway``)
====================================================  =====================================
refused, unresolvable, connect timeout, TLS or       ``GatewayUnavailable``: retried
proxy refusal: any failure before the request was
written whole
429 (rate limited), 503 (unavailable): the provider   ``GatewayUnavailable``: retried,
says it did not take the request                      not before ``Retry-After`` (bounded)
the connection dropped after the request was          ``GatewayConnectionLost``: uncertain
written whole (reset, closed, incomplete answer)
no answer within the read bound                       ``GatewayTimeout``: uncertain
any other 5xx (500, 502, 504...): a proxy's 504       ``GatewayUncertain`` (``server_error``):
after the provider accepted, an error after the       uncertain
message was queued
any other failure after the request was written      ``GatewayError``: uncertain
====================================================  =====================================

Why 503 and 429 alone among the refusals: neither provider documents which 5xx means "not
accepted" (MessageBird: "5xx: a server error, safe to retry"; Bird: "5xx: retry with
backoff"), and a 504 after acceptance gave two SMS. HTTP (RFC 9110 15.6.4) defines 503 as
the server being unable to handle the request, and load balancers answer it when no backend
takes the request; 429 is the rate limiter's refusal. Everything else after the request
was written may have been accepted.

The one retry after the request was written: a reused keep-alive connection that the
provider closed with no byte back (it closed the idle connection as our request went out,
the classic keep-alive race) is sent again once, on another connection, inside
``HttpSender.send``.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from typing import Any

import urllib3

from infra.gateway import (
    GatewayConnectionLost,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
    GatewayUncertain,
    pool_manager,
)
from schemas.reasons import SERVER_ERROR

__all__ = [
    "NOT_ACCEPTED_STATUSES",
    "RETRY_AFTER_CAP_S",
    "HttpSender",
    "SendFailure",
    "gateway_error",
    "retry_after_s",
    "status_error",
]

# The HTTP statuses that say the provider did not take the request (see the table above).
NOT_ACCEPTED_STATUSES = frozenset({429, 503})
# A Retry-After above this is waited this long at most (a reply holds its batch meanwhile).
RETRY_AFTER_CAP_S = 30.0


class SendFailure(Exception):
    """A transport failure of ``HttpSender.send``, by what it says about the request:
    ``kind`` is ``"not_sent"`` (refused, unresolvable, any failure before the request was
    written whole), ``"connect_timeout"``, ``"lost_after_write"``, ``"read_timeout"`` or
    ``"other"``. The gateways map it with ``gateway_error``; its text is urllib3's, never
    shown (it may hold the URL), only its kind."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        super().__init__(kind)
        self.kind = kind
        self.cause = cause


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


class HttpSender:
    """The transport of both gateways: one thread-safe urllib3 pool of kept-alive,
    tracked connections to ``endpoint`` (``pool_size`` kept; more opened if more threads
    call at once), ``timeout=(connect, read)``, no redirects, no retries but the one above.
    Proxies and the CA bundle come from the environment (``infra.gateway.pool_manager``).
    Note that a read timeout bounds each socket read, not the whole call."""

    def __init__(self, endpoint: str, timeout: float | tuple[float, float],
                 pool_size: int = 32) -> None:
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        if not (0 < connect < float("inf") and 0 < read < float("inf")):
            raise ValueError("timeout must be positive and finite")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.timeout: tuple[float, float] = (float(connect), float(read))
        self._timeout = urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1])
        self._pool = pool_manager(endpoint, pool_size)
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()

    def connection_pool(self, url: str) -> urllib3.HTTPConnectionPool:
        return self._pool.connection_from_url(url)

    def send(self, method: str, url: str, body: bytes | str | None,
             headers: Mapping[str, str]) -> urllib3.BaseHTTPResponse:
        """The answer, whatever its status; ``SendFailure`` when there is none."""
        for try_ in (1, 2):
            _sent.reused = _sent.written = False
            try:
                return self._pool.request(method, url, body=body, headers=dict(headers),
                                          timeout=self._timeout, retries=False,
                                          redirect=False)
            except urllib3.exceptions.MaxRetryError as exc:  # not raised with retries=False,
                error: BaseException = exc.reason or exc         # but kept safe if it were
            except urllib3.exceptions.HTTPError as exc:
                error = exc
            if not (isinstance(error, urllib3.exceptions.ProtocolError) and _sent.written):
                break
            # The request was written whole, then the connection dropped. Only a reused
            # keep-alive connection that the provider closed with no byte back is tried
            # again, once, on another connection; anything else may have been accepted.
            if not (try_ == 1 and _sent.reused and _no_byte_back(error)):
                raise SendFailure("lost_after_write", error) from error
        if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
            raise SendFailure("connect_timeout", error) from error
        if not _sent.written:
            # Refused, unresolvable, a TLS handshake or proxy refused, dropped while the
            # request was being written: the provider has no whole request to accept.
            raise SendFailure("not_sent", error) from error
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise SendFailure("read_timeout", error) from error
        raise SendFailure("other", error) from error


def gateway_error(failure: SendFailure, provider: str, ref: str,
                  timeout: tuple[float, float]) -> GatewayError:
    """The port's error for a transport failure (``provider`` names it in the message;
    ``ref``: the reference as our messages may show it, without the number)."""
    kind = failure.kind
    if kind == "not_sent":
        return GatewayUnavailable(f"{provider} unreachable (reference {ref!r}): nothing sent")
    if kind == "connect_timeout":
        return GatewayUnavailable(f"{provider} did not accept a connection within "
                                  f"{timeout[0]:g} s (reference {ref!r}): nothing sent")
    if kind == "lost_after_write":
        return GatewayConnectionLost(f"{provider} dropped the connection after the request "
                                     f"was sent (reference {ref!r}); the SMS may have been "
                                     "sent: not sent again")
    if kind == "read_timeout":
        return GatewayTimeout(f"{provider} did not answer within {timeout[1]:g} s "
                              f"(reference {ref!r}); the SMS may have been sent: not sent "
                              "again")
    return GatewayError(f"{provider} request failed ({type(failure.cause).__name__}, "
                        f"reference {ref!r}); the SMS may have been sent: not sent again")


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delay-seconds only; an HTTP date is ignored), capped at
    ``RETRY_AFTER_CAP_S``; None when absent or unreadable."""
    if not value or not value.strip().isdigit() or len(value.strip()) > 9:
        return None
    return min(float(value.strip()), RETRY_AFTER_CAP_S)


def status_error(status: int, provider: str, ref: str,
                 headers: Mapping[str, str] | None = None) -> GatewayError | None:
    """The port's error for an HTTP status that is the provider's or a proxy's failure
    (429, 5xx); None for any other status (the gateway reads its own 4xx errors)."""
    if status in NOT_ACCEPTED_STATUSES:
        return GatewayUnavailable(
            f"{provider} answered HTTP {status} (reference {ref!r}): not accepted, retried",
            status=status,
            retry_after_s=retry_after_s((headers or {}).get("Retry-After")))
    if status >= 500:
        return GatewayUncertain(
            f"{provider} answered HTTP {status} after the request was sent (reference "
            f"{ref!r}); the SMS may have been sent: not sent again",
            reason=SERVER_ERROR, status=status)
    return None
