"""The pages that answer for the deployment: ``/public`` (the transparency page, open to
anyone, cacheable, no script) and ``/dashboard/why`` (one sender's story, behind the admin
token; the number is posted in a form, never in a URL that logs keep, and pseudonymised
at once). Registered by ``streams.console.ops.register_ops``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from faust.web import Request, Response, View

from infra.checkpoints import verifier_key
from infra.journal import iter_journal, latest_by_key
from infra.privacy import Privacy, normalize_msisdn
from streams.console.public import PublicFigures, latest_notes, render
from streams.console.story import sender_story

PUBLIC_PATH = "/public"
NOTES_CACHE_S = 60.0


def deployment_key(settings: Any) -> str:
    key = settings.checkpoint_key
    if key is None:
        return "(this deployment signs no checkpoint)"
    return verifier_key(settings.origin, key.public_key().public_bytes_raw())


def register_public(app: Any, settings: Any, figures: PublicFigures, names: dict[str, str],
                    clock: Callable[[], float] = time.time) -> None:
    cache: dict[str, Any] = {"at": -NOTES_CACHE_S, "notes": []}
    key = deployment_key(settings)

    async def notes() -> list[str]:
        if clock() - cache["at"] >= NOTES_CACHE_S:
            try:
                cache["notes"] = latest_notes(await latest_by_key(settings.kafka,
                                                                  names["checkpoints"]))
            except Exception:  # noqa: BLE001 - broker away: the last notes read
                pass
            cache["at"] = clock()
        return cache["notes"]

    @app.page(PUBLIC_PATH)
    class Public(View):
        async def get(self, request: Request) -> Response:
            page = render(figures, await notes(), key, int(clock() * 1000))
            return web.Response(text=page, content_type="text/html",
                                headers={"Cache-Control": "public, max-age=60"})


WHY_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>antirelou: why
</title><style>body{{font:15px system-ui,sans-serif;margin:2rem}}pre{{background:#f4f4f4;
padding:.6rem}}</style></head><body><h1>Why was this sender (not) answered?</h1>
<form method="post" action="/dashboard/why"><label>Phone number
<input name="number" autocomplete="off" placeholder="+33612345678"></label>
<label>campaign <input name="campaign" placeholder="all"></label>
<button>Tell his story</button></form>{story}</body></html>"""


def register_why(app: Any, settings: Any, names: dict[str, str]) -> None:
    privacy = Privacy(settings.secret)

    @app.page("/dashboard/why")
    class Why(View):
        async def get(self, request: Request) -> Response:
            return web.Response(text=WHY_FORM.format(story=""), content_type="text/html")

        async def post(self, request: Request) -> Response:
            form = await request.post()
            number = normalize_msisdn(str(form.get("number", "")))
            if number is None:
                story = "<p>Not a phone number (digits, e.g. +33612345678).</p>"
                return web.Response(text=WHY_FORM.format(story=story), content_type="text/html",
                                    status=422)
            sender = privacy.pseudonym(number)
            campaign = str(form.get("campaign", "")).strip() or None
            events = [e async for _, _, e in iter_journal(settings.kafka, names["journal"])]
            lines = sender_story(events, sender, campaign)
            story = (f"<h2>{sender}</h2><pre>{html.escape(chr(10).join(lines))}</pre>" if lines
                     else f"<p>No event of this number ({sender}) in the journal.</p>")
            return web.Response(text=WHY_FORM.format(story=story), content_type="text/html")
