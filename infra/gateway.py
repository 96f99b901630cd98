"""The gateway port: what antirelou needs from an SMS provider, whatever the provider.

``SmsGateway.send(...)`` posts one SMS to one recipient and returns a ``SendResult``
(provider message id, total price in micro-units, currency, part count). Its adapters:
``infra.messagebird_gateway.MessageBirdGateway`` (MessageBird classic, the ``messagebird``
SDK), ``infra.bird_gateway.BirdGateway`` (Bird's Channels API), and ``DryRunGateway`` here,
which sends nothing and records what it would have sent (without the recipient).
``infra.providers.CampaignGateways`` picks one per campaign. What they share also lives
here: the verified-TLS connection pool, scrubbing numbers out of error text, the timeout
setting read from the environment.

Errors, the same for every adapter (no message, attribute or chained exception text we
build ever holds the recipient number or the SMS body). Which failure is which is decided
once for both providers, in ``infra.send_rule``::

    GatewayError                 base; raised as such for an answer we cannot read
    |                            (non-JSON, not an object, other failure after the
    |                            request was written): the SMS may or may not have been sent
    +-- GatewayTimeout           no answer within the read bound after the request left:
    |                            the SMS may have been sent; never resent
    +-- GatewayConnectionLost    the connection dropped after the whole request was
    |                            written and before a full answer: the SMS may have been
    |                            sent (a provider that accepts and then resets); never
    |                            resent, except once for a reused keep-alive connection
    |                            closed with no byte back (inside the transport)
    +-- GatewayUncertain         the provider answered, and its answer says the SMS may
    |                            have been sent: a 5xx other than 503 (a proxy's 504 after
    |                            the provider accepted), a 409 about an idempotency key
    |                            (Bird); ``.reason``, ``.status``; never resent
    +-- GatewayUnavailable       not accepted, retryable: 429, 503, connection refused,
    |                            connect timeout, any failure before the request was
    |                            written whole; ``.status``, ``.retry_after_s``
    +-- GatewayRejected          other 4xx or the provider's error JSON (401 bad key,
                                 422 bad recipient...): not retryable; ``.code``,
                                 ``.description``, ``.parameter`` of the first error and
                                 ``.status`` (HTTP status when known)
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import certifi
import requests
import requests.utils
import urllib3

__all__ = [
    "DryRunGateway",
    "GatewayConnectionLost",
    "GatewayError",
    "GatewayRejected",
    "GatewayTimeout",
    "GatewayUncertain",
    "GatewayUnavailable",
    "SendResult",
    "SmsGateway",
    "pool_manager",
    "scheduled_datetime",
    "scrub",
    "scrub_exact",
    "timeout_from_env",
]


# -- the port, its results and errors --------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    price_micros: int | None  # total over recipients.items[*].price.amount, 1 EUR = 1_000_000
    currency: str | None
    parts: int | None  # messagePartCount of the first recipient item
    dry_run: bool


class GatewayError(Exception):
    """Sending failed. Raised as such when the provider's answer cannot be read."""


class GatewayTimeout(GatewayError):
    """The call exceeded its time bound (the SMS may nonetheless have been sent)."""


class GatewayConnectionLost(GatewayError):
    """The connection dropped after the request was written (the SMS may have been sent)."""


class GatewayUncertain(GatewayError):
    """The provider's answer says the SMS may have been sent (a 5xx but 503; a 409 about
    an idempotency key): never resent. ``reason`` is the outcome's, one of
    ``schemas.reasons.UNCERTAIN_REASONS`` (``server_error``, ``request_in_progress``,
    ``idempotency_key_reused``)."""

    def __init__(self, message: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class GatewayUnavailable(GatewayError):
    """Not accepted (429, 503, refused, nothing written): retryable, not before
    ``retry_after_s`` when the provider said so."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class GatewayRejected(GatewayError):
    """The provider refused the request (4xx / ``errors`` JSON): not retryable."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        description: str | None = None,
        parameter: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.description = description
        self.parameter = parameter
        self.status = status


class SmsGateway(Protocol):
    """What the rest of antirelou needs from a gateway."""

    def send(
        self,
        *,
        originator: str,
        recipient: str,
        body: str,
        reference: str,
        report_url: str | None = None,
        scheduled_at: int | None = None,
    ) -> SendResult: ...


# -- the dry run ------------------------------------------------------------------------


def scheduled_datetime(at_ms: int) -> str:
    """Epoch ms as MessageBird's ``scheduledDatetime``: ISO 8601 (RFC 3339), UTC, seconds."""
    return dt.datetime.fromtimestamp(at_ms // 1000, tz=dt.UTC).isoformat()


class DryRunGateway:
    """Sends nothing; ``sent`` lists what would have been sent (without the recipient)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "DryRunGateway()"

    def close(self) -> None:
        return

    def send(
        self,
        *,
        originator: str,
        recipient: str,  # noqa: ARG002 - deliberately not recorded
        body: str,
        reference: str,
        report_url: str | None = None,  # noqa: ARG002
        scheduled_at: int | None = None,
    ) -> SendResult:
        record = {"originator": originator, "reference": reference, "body": body}
        if scheduled_at is not None:
            record["scheduledDatetime"] = scheduled_datetime(scheduled_at)
        with self._lock:
            self.sent.append(record)
        return SendResult(None, None, None, None, dry_run=True)


# -- what the adapters share -----------------------------------------------------------


def pool_manager(endpoint: str, pool_size: int) -> urllib3.PoolManager:
    """A verified-TLS urllib3 pool for ``endpoint``, through the environment's proxy if it
    names one (as requests would): the one transport of both providers' gateways."""
    ca_bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                 or certifi.where())
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    tls["ca_cert_dir" if os.path.isdir(ca_bundle) else "ca_certs"] = ca_bundle
    proxy = requests.utils.select_proxy(endpoint, requests.utils.get_environ_proxies(endpoint))
    if proxy:
        auth = urllib3.util.parse_url(proxy).auth
        return urllib3.ProxyManager(
            proxy, num_pools=4, maxsize=pool_size,
            proxy_headers=urllib3.make_headers(proxy_basic_auth=auth) if auth else None, **tls)
    return urllib3.PoolManager(num_pools=4, maxsize=pool_size, **tls)


_LONG_DIGITS = re.compile(r"\+?\d[\d .\-]{4,}\d")


def scrub(text: str | None, *secrets_: str) -> str | None:
    """Remove the recipient, the body and any phone-number-like digit run from ``text``."""
    if text is None:
        return None
    for secret in secrets_:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return _LONG_DIGITS.sub("<number>", text)


def scrub_exact(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret and len(secret) >= 4 else text


def timeout_from_env(environ: Mapping[str, str], name: str, default: float) -> float:
    """Seconds from ``environ[name]`` (``default`` when unset or empty); ValueError saying
    what is wrong when it is not a positive, finite number."""
    raw = (environ.get(name) or "").strip()
    try:
        timeout = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < timeout < float("inf"):
        raise ValueError(f"{name} must be positive and finite, got {raw!r}")
    return timeout
