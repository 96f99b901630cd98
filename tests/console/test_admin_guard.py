"""The admin pages' guard over real HTTP (issue 31, item 4): ``/login`` throttled, cookies
that expire and are ``Secure`` behind a TLS proxy, security headers on every answer.

Before: unlimited tries on ``/login``; a cookie that never expired (a constant derived
from the token); no security headers; ``secure`` false behind a TLS proxy (the worker sees
plain http). The guard is served here by a bare aiohttp app, as Faust's web server serves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from http.cookies import SimpleCookie

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.console.guard import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    LOGIN_FAILURES,
    LOGIN_WINDOW_S,
    Guard,
)

TOKEN = "admin-token-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def served(guard: Guard) -> web.Application:
    app = web.Application(middlewares=[guard.middleware()])
    app.on_response_prepare.append(guard.secure_headers())

    async def login(request: web.Request) -> web.StreamResponse:
        return await guard.login(request)

    async def page(request: web.Request) -> web.StreamResponse:
        return web.json_response({"secret": "figures"})

    async def webhook(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "accepted"})

    app.router.add_post("/login", login)
    app.router.add_get("/campaigns", page)
    app.router.add_post("/webhooks/messagebird/sms", webhook)
    return app


def run(guard: Guard, scenario) -> None:
    async def main() -> None:
        async with TestClient(TestServer(served(guard))) as client:
            await scenario(client)

    asyncio.run(main())


def test_login_is_throttled_per_client_then_open_again():
    clock = Clock()
    guard = Guard(TOKEN, insecure_dev=False, clock=clock)

    async def scenario(client: TestClient) -> None:
        # given LOGIN_FAILURES wrong tokens within a minute
        for _ in range(LOGIN_FAILURES):
            r = await client.post("/login", data={"token": "guess"}, allow_redirects=False)
            assert r.status == 401
        # then the next try is refused, the right token too, and told when to come back
        for token in ("guess", TOKEN):
            r = await client.post("/login", data={"token": token}, allow_redirects=False)
            assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= LOGIN_WINDOW_S
        # and once the minute has passed the right token signs in
        clock.now += LOGIN_WINDOW_S + 1
        r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert r.status == 303

    run(guard, scenario)


def test_the_cookie_expires_and_an_old_style_cookie_is_refused():
    clock = Clock()
    guard = Guard(TOKEN, insecure_dev=False, clock=clock)

    async def scenario(client: TestClient) -> None:
        r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert r.status == 303
        morsel = SimpleCookie(r.headers["Set-Cookie"])[COOKIE]
        assert morsel["max-age"] == str(COOKIE_MAX_AGE_S) and morsel["httponly"]
        assert morsel["samesite"] == "Strict" and not morsel["secure"]  # plain http here
        assert TOKEN not in morsel.value
        cookie = {COOKIE: morsel.value}
        assert (await client.get("/campaigns", cookies=cookie)).status == 200
        clock.now += COOKIE_MAX_AGE_S - 1
        assert (await client.get("/campaigns", cookies=cookie)).status == 200
        clock.now += 2  # expired: the cookie carries its expiry, signed
        assert (await client.get("/campaigns", cookies=cookie)).status == 401
        forged = {COOKIE: f"{int(clock.now) + 3600}.{morsel.value.split('.', 1)[1]}"}
        assert (await client.get("/campaigns", cookies=forged)).status == 401
        never_expiring = hmac.new(TOKEN.encode(), b"antirelou dashboard cookie",
                                  hashlib.sha256).hexdigest()  # what main set
        assert (await client.get("/campaigns", cookies={COOKIE: never_expiring})).status == 401

    run(guard, scenario)


def test_behind_a_tls_proxy_the_cookie_is_secure_and_hsts_is_sent():
    guard = Guard(TOKEN, insecure_dev=False, public_url="https://sms.example.org")

    async def scenario(client: TestClient) -> None:
        # the proxy speaks plain http to the worker: the public URL says it is https
        r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert SimpleCookie(r.headers["Set-Cookie"])[COOKIE]["secure"]
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")

    run(guard, scenario)


def test_every_answer_carries_the_security_headers():
    guard = Guard(TOKEN, insecure_dev=False)

    async def scenario(client: TestClient) -> None:
        for r in (await client.get("/campaigns"), await client.post("/login", data={}),
                  await client.post("/webhooks/messagebird/sms", data=b"x"),
                  await client.get("/campaigns", headers={"Authorization": f"Bearer {TOKEN}"})):
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            if r.url.path != "/webhooks/messagebird/sms":
                assert r.headers["Cache-Control"] == "no-store"
            assert "Strict-Transport-Security" not in r.headers  # plain http, no TLS proxy

    run(guard, scenario)
