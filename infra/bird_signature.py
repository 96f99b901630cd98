"""Sign a request as Bird signs its webhook events (``MessageBird-Signature``): for the
local Bird server, the tests, and the check in ``streams.intake.bird``.

docs.bird.com, "Verifying a webhook subscription": the signature is the base64 of
``HMAC-SHA256(signing key, timestamp + "\\n" + URL + "\\n" + sha256(body))``, the body's
SHA-256 as raw bytes, the timestamp (unix seconds) sent in ``MessageBird-Request-Timestamp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "MessageBird-Signature"
TIMESTAMP_HEADER = "MessageBird-Request-Timestamp"


def signed_payload(timestamp: str, url: str, body: bytes) -> bytes:
    """What Bird signs: timestamp, URL and the body's raw SHA-256, joined by newlines."""
    return b"\n".join((timestamp.encode(), url.encode(), hashlib.sha256(body).digest()))


def sign_bird(signing_key: str, timestamp: str, url: str, body: bytes) -> str:
    """The ``MessageBird-Signature`` header value for a request."""
    mac = hmac.digest(signing_key.encode(), signed_payload(timestamp, url, body), "sha256")
    return base64.b64encode(mac).decode()
