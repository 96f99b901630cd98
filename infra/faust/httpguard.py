"""Slow clients: bounds on how long one HTTP connection may hold the web server.

aiohttp (under Faust's web driver) keeps an idle connection for an hour and has no bound on
reading a request: 400 connections with half-sent headers or bodies were all still held
after 20 s. Here:

* ``http_idle_timeout_s`` (15 s) is aiohttp's keep-alive timeout, which also runs from the
  moment a connection opens until its first request's headers are complete: a client that
  trickles its headers, or sits idle, is closed after it.
* ``http_body_timeout_s`` (10 s) bounds reading a body (``stages.views.read_bounded``):
  past it the answer is 408 and the connection is closed, after at most
  ``LINGERING_S`` (1 s; aiohttp's default is 10 s) spent reading what the client still
  sends, so that it sees the answer rather than a reset.

* A client that resets its connection while a handler reads its body (or waits to answer
  it) is one line in the log (``one_line_per_reset``), not aiohttp's "Error handling
  request" with a 34-line traceback (4,880 resets wrote 165,911 lines).

MessageBird sends a small body at once, so neither bound touches it. Behind a reverse
proxy (recommended: TLS, and the proxy absorbs slow clients first) set the proxy's own
timeouts below these (README, "Deployment").

Upstream: aiohttp's defaults (keep-alive 3600 s under Faust's web driver, no read timeout),
no issue filed; checked against aiohttp 3.14 and faust-streaming 0.15.3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("antirelou")

LINGERING_S = 1.0


@web.middleware
async def one_line_per_reset(request: web.Request, handler: Callable) -> web.StreamResponse:
    """A connection reset by its client under a handler: one line, no traceback. The
    answer returned is never sent (aiohttp passes over a write to a closed connection)."""
    try:
        return await handler(request)
    except ConnectionError as exc:
        log.info("client %s went away during %s %s (%s)", request.remote, request.method,
                 request.path, type(exc).__name__)
        answer = web.Response(status=400)
        answer.force_close()
        return answer


def bound_http_connections(app: Any, idle_timeout_s: float) -> None:
    """Set the keep-alive (and header wait) timeout of the app's aiohttp server, and put
    ``one_line_per_reset`` around every handler. Call before the web server starts (its
    AppRunner passes the keyword to every connection)."""
    if idle_timeout_s <= 0:
        raise ValueError("http_idle_timeout_s must be positive")
    runner = getattr(app.web, "_runner", None)  # faust.web.drivers.aiohttp.Web
    if runner is None or not hasattr(runner, "_kwargs"):
        raise RuntimeError("the web driver is not Faust's aiohttp one: cannot bound clients")
    runner._kwargs["keepalive_timeout"] = idle_timeout_s
    runner._kwargs["lingering_time"] = LINGERING_S
    # Outermost: create_app calls this after the views put theirs first (the admin guard,
    # appended later, runs inside them).
    app.web.web_app.middlewares.insert(0, one_line_per_reset)
