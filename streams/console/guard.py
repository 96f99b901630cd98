"""The admin guard of the worker's web server: who may see the admin pages (the admin
token, as ``Authorization: Bearer`` or the login form's cookie, which expires), the throttle
of ``/login``, and the security headers on every answer (``streams.console.ops`` registers
it with the dashboard; a web-only process registers it alone)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

COOKIE = "antirelou_admin"
# Open to anyone: the providers' webhooks (each checks its own signature: MessageBird's
# classic ones and Bird's), /health (its details need the token) and
# the sign-in. Everything else needs the token: our admin pages and Faust's own (/router,
# /table/..., /stats, /assignment, /), which show tables and assignments.
PUBLIC_PREFIXES = ("/webhooks/messagebird/", "/webhooks/bird")
PUBLIC = ("/health", "/login", "/public")
COOKIE_MAX_AGE_S = 12 * 3600
LOGIN_FAILURES = 5  # wrong tokens a client may try on /login per LOGIN_WINDOW_S
LOGIN_WINDOW_S = 60.0
LOGIN_CLIENTS_KEPT = 10_000  # clients whose failures are remembered (the oldest dropped)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # The pages' script is a file of ours; their style is inline (no CDN, no other origin).
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
}
HSTS = "max-age=31536000"


def cookie_value(token: str, expires_at: int) -> str:
    """What the login cookie holds: its expiry (epoch seconds) and a MAC of it under a key
    derived from the token; never the token."""
    key = hmac.new(token.encode(), b"antirelou dashboard cookie", hashlib.sha256).digest()
    mac = hmac.new(key, str(expires_at).encode(), hashlib.sha256).hexdigest()
    return f"{expires_at}.{mac}"


class LoginThrottle:
    """Wrong tokens per client on /login: past ``LOGIN_FAILURES`` within ``LOGIN_WINDOW_S``
    the client is answered 429 (the right token too) until the oldest failure is that old.
    By ``request.remote``: behind a proxy all clients share its address, and so one bucket
    (a flood of wrong tokens then shuts the form for a minute; ``Bearer`` still works)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._failures: dict[str, list[float]] = {}

    def wait_s(self, client: str) -> float:
        """Seconds before ``client`` may try again (0: now)."""
        recent = self._recent(client)
        if len(recent) < LOGIN_FAILURES:
            return 0.0
        return max(0.0, recent[0] + LOGIN_WINDOW_S - self.clock())

    def failed(self, client: str) -> None:
        recent = self._recent(client)
        recent.append(self.clock())
        self._failures.pop(client, None)
        self._failures[client] = recent[-LOGIN_FAILURES:]  # the newest last (dict order)
        while len(self._failures) > LOGIN_CLIENTS_KEPT:
            del self._failures[next(iter(self._failures))]

    def _recent(self, client: str) -> list[float]:
        since = self.clock() - LOGIN_WINDOW_S
        return [t for t in self._failures.get(client, ()) if t > since]


class Guard:
    """Who may see the admin pages."""

    def __init__(self, token: str | None, insecure_dev: bool, public_url: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.token = token or None
        self.open = self.token is None and insecure_dev
        # Behind a TLS proxy the request the worker sees is plain http: the public URL says.
        self.https = (public_url or "").lower().startswith("https://")
        self.clock = clock
        self.throttle = LoginThrottle(clock)

    def allows(self, request: Any) -> bool:
        if self.open:
            return True
        if self.token is None:
            return False
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(
                header[7:].strip().encode(), self.token.encode()):
            return True
        return self.cookie_valid(request.cookies.get(COOKIE))

    def cookie_valid(self, cookie: str | None) -> bool:
        if cookie is None or self.token is None:
            return False
        expires, _, _ = cookie.partition(".")
        if not (expires.isascii() and expires.isdigit()) or int(expires) <= self.clock():
            return False
        return hmac.compare_digest(cookie.encode(),
                                   cookie_value(self.token, int(expires)).encode())

    async def login(self, request: Any) -> web.StreamResponse:
        """``POST /login``: the sign-in form's token; throttled per client."""
        client = request.remote or "?"
        wait = self.throttle.wait_s(client)
        if wait > 0:
            return web.Response(text=login_page("Too many wrong tokens: wait a minute."),
                                content_type="text/html", status=429,
                                headers={"Retry-After": str(max(1, round(wait)))})
        form = await request.post()
        token = str(form.get("token", ""))
        if self.token and hmac.compare_digest(token.encode(), self.token.encode()):
            return self.sign_in(request)
        self.throttle.failed(client)
        return web.Response(text=login_page("Wrong token."), content_type="text/html",
                            status=401)

    def sign_in(self, request: Any) -> web.StreamResponse:
        """The cookie for a right token: it expires in ``COOKIE_MAX_AGE_S``."""
        answer = web.Response(status=303, headers={"Location": "/dashboard"})
        expires_at = int(self.clock()) + COOKIE_MAX_AGE_S
        answer.set_cookie(COOKIE, cookie_value(self.token or "", expires_at), httponly=True,
                          samesite="Strict", path="/", max_age=COOKIE_MAX_AGE_S,
                          secure=self.https or request.secure)
        return answer

    def secure_headers(self) -> Callable:
        """An ``on_response_prepare`` hook: ``SECURITY_HEADERS`` on every answer."""
        guard = self

        async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if not request.path.startswith(PUBLIC_PREFIXES):
                response.headers.setdefault("Cache-Control", "no-store")
            if guard.https or request.secure:
                response.headers.setdefault("Strict-Transport-Security", HSTS)

        return add_headers

    def refusal(self, request: Any) -> web.StreamResponse:
        if self.token is None:
            return web.json_response(
                {"error": "admin pages are off: set ANTIRELOU_ADMIN_TOKEN on the worker"},
                status=403)
        if request.path == "/dashboard" and request.method == "GET":
            return web.Response(text=login_page(), content_type="text/html", status=401)
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <ANTIRELOU_ADMIN_TOKEN>"},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="antirelou"'})

    def middleware(self) -> Callable:
        guard = self

        @web.middleware
        async def admin_guard(request: web.Request, handler: Callable) -> web.StreamResponse:
            path = request.path
            if path.startswith(PUBLIC_PREFIXES) or path in ("/login", "/public"):
                return await handler(request)
            if path != "/health" and not guard.allows(request):
                return guard.refusal(request)
            if path == "/health" and not guard.allows(request):
                # Whether it runs, for a load balancer; the details for the admin only.
                answer = await handler(request)
                if answer.status != 200:
                    return answer
                # Degraded (a stage failing, a shard away) is said, not its details.
                body = answer.body or b""
                degraded = b'"status":"degraded' in body or b'"status": "degraded' in body
                return web.json_response({"status": "degraded" if degraded else "ok"})
            return await handler(request)

        return admin_guard


def asset(name: str) -> bytes:
    return resources.files("streams.console").joinpath("web", name).read_bytes()


def login_page(message: str = "") -> str:
    return asset("login.html").decode().replace("{message}", message)


def register_guard(app: Any, admin_token: str | None, insecure_dev: bool,
                   public_url: str | None = None) -> Guard:
    """The admin guard alone (a web-only process, ``--role web``: no dashboard, no
    /metrics, no journal follower; Faust's own pages and /health's details still guarded),
    and the security headers."""
    guard = Guard(admin_token, insecure_dev, public_url)
    app.web.web_app.middlewares.append(guard.middleware())
    app.web.web_app.on_response_prepare.append(guard.secure_headers())
    return guard
