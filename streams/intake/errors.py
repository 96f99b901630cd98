"""The webhooks' errors, for both providers: each carries an HTTP status and a JSON-able body;
none ever holds a phone number::

    WebhookError          400 / 408 / 503: a request we cannot take (now)
    ├── BadRequest        400 / 404 / 413 / 414 / 415 / 422: malformed, incomplete or unknown
    └── Unauthorized      401: missing, forged, expired or replayed signature
"""

from __future__ import annotations

from typing import Any


class WebhookError(Exception):
    status = 400

    def __init__(self, code: str, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        out = {"error": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class BadRequest(WebhookError):
    status = 422


class Unauthorized(WebhookError):
    status = 401
