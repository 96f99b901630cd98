"""Load shed early: how many webhook requests one process takes at once.

A flood (or an attack) used to be let in whole: at 2,000 concurrent requests the producer's
queue grew until most requests got a 503 only after the whole ack timeout (10 s), and some
of those were stored anyway (refused, then screened: MessageBird retries them). Now:

- at most ``Settings.webhook_concurrency`` webhook requests (both providers' texts and
  delivery reports) are under way in one process; the next is answered at once ``503``
  ``{"error": "busy"}`` with ``Retry-After``, before its token is checked or its body
  read, so nothing of it is stored; its connection is closed when its body has not all
  arrived (nothing of it is read);
- the requests admitted wait for the broker's ack in a queue that bound keeps short, so
  they are answered well within the ack timeout: a text is not refused after it was stored
  (the soak test, tests/e2e/test_load_shed.py, counts none);
- ``/health`` is never held by the limit (a probe during a flood is answered).

The count is per process and in memory (one event loop: no lock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

# The paths the limit holds: every provider webhook (their prefixes).
WEBHOOK_PREFIXES = ("/webhooks/",)
RETRY_AFTER_S = 1


class Admission:
    """The webhook requests under way in this process, and those turned away."""

    def __init__(self, limit: int, retry_after_s: int = RETRY_AFTER_S) -> None:
        if limit < 1:
            raise ValueError("the webhook concurrency limit must be at least 1")
        self.limit, self.retry_after_s = limit, retry_after_s
        self.in_flight = 0
        self.refused = 0  # turned away since start (/health shows it)

    def busy(self, request: Any) -> web.Response:
        self.refused += 1
        answer = web.json_response(
            {"error": "busy", "message": "too many webhook requests at once; retry"},
            status=503, headers={"Retry-After": str(self.retry_after_s)})
        if not request.content.is_eof():  # the body is still coming: never read it
            answer.force_close()
        return answer

    def middleware(self) -> Callable:
        admission = self

        @web.middleware
        async def admit(request: web.Request, handler: Callable) -> web.StreamResponse:
            if not request.path.startswith(WEBHOOK_PREFIXES):
                return await handler(request)
            if admission.in_flight >= admission.limit:
                return admission.busy(request)
            admission.in_flight += 1
            try:
                return await handler(request)
            finally:
                admission.in_flight -= 1

        return admit

    def health(self) -> dict[str, int]:
        return {"limit": self.limit, "in_flight": self.in_flight, "refused": self.refused}


def register_admission(app: Any, limit: int) -> Admission:
    """Put the limit in front of the app's web server (before any other middleware: call it
    before ``streams.console.ops.register_guard``)."""
    admission = Admission(limit)
    app.web.web_app.middlewares.insert(0, admission.middleware())
    return admission
