"""Sign a request as MessageBird does (``MessageBird-Signature-JWT``): for the simulator's
webhook driver, the local MessageBird server's delivery reports, and the tests."""

from __future__ import annotations

import hashlib
import time
import uuid

import jwt


def sign_webhook(url: str, body: bytes, signing_key: str, *, now_s: int | None = None,
                 ttl_s: int = 60) -> str:
    """A ``MessageBird-Signature-JWT`` for a request (HS256, unique ``jti``)."""
    now = int(time.time()) if now_s is None else now_s
    claims: dict[str, object] = {"iss": "MessageBird", "nbf": now, "exp": now + ttl_s,
                                 "jti": uuid.uuid4().hex,
                                 "url_hash": hashlib.sha256(url.encode()).hexdigest()}
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return jwt.encode(claims, signing_key, algorithm="HS256")
