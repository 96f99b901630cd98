"""What both providers' webhook views share (MessageBird classic's in ``stages.views``,
Bird's in ``stages.bird``): the bounded read of a body, the URL a signature covers, and the
storing of what the intake built (``streams.intake.build``), each write acknowledged within
``ack_timeout_s``:

- a text's ``Intake``: its facts (``TextRejected``, ``TextTimeClamped``) to the journal
  first, then its ``ScreenText`` to sms-received as the decisions need it (remembered for
  `up`'s broker, which may lose its last second: stages.broker), its body apart on the
  bodies topic for its retention (``streams.rules.retention.split_body``);
- a reply's ``DeliveryReported`` to the journal, then, when its price settles, the
  campaign's ``SettleReply`` ("priced").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from faust.web import Request

from schemas import codec
from schemas.commands import ScreenText
from schemas.events import DeliveryReported
from streams.intake.build import Intake
from streams.intake.errors import BadRequest, Unauthorized
from streams.intake.fields import MAX_BODY_BYTES
from streams.rules.pipeline import priced
from streams.rules.retention import split_body
from streams.rules.sendstate import price_settles
from streams.stages.runtime import Runtime

log = logging.getLogger("antirelou")


async def read_bounded(request: Request, timeout_s: float | None = None) -> bytes:
    # aiohttp's own limit (1 MiB) answers in plain text: refuse bigger bodies here, in
    # JSON, and never buffer more than one byte past the limit. A body that takes longer
    # than timeout_s is a slow client (infra/faust/httpguard.py): 408.
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
    content = request.content
    # A small body sent at once (MessageBird's) is in the buffer already: taken without a
    # timer (a TimerHandle per request, 2% of a webhook's CPU).
    chunks = [content.read_nowait(MAX_BODY_BYTES + 1)]
    size = len(chunks[0])
    if size <= MAX_BODY_BYTES and not content.at_eof():
        try:
            async with asyncio.timeout(timeout_s):
                while size <= MAX_BODY_BYTES:
                    chunk = await content.read(MAX_BODY_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise BadRequest("slow_body", f"body not received within {timeout_s:g} s",
                             status=408) from None
    if size > MAX_BODY_BYTES:
        raise BadRequest("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
    return b"".join(chunks)


def refusal(response: Any, request: Request) -> Any:
    """A refusal answered before its request's body was all received (a forged token, a
    slow body): its connection is closed after it, so what is still on its way is never
    read, nor buffered."""
    if not request.content.is_eof():
        response.force_close()
    return response


def signed_url(public_url: str | None, request: Request) -> str:
    # The URL MessageBird called, path and query as sent (raw_path): what it hashed.
    try:
        base = (public_url.rstrip("/") if public_url
                else f"{request.scheme}://{request.host}")
        return base + request.raw_path
    except ValueError:  # a Host header no URL can be built from
        raise Unauthorized("invalid_signature", "the request URL cannot be checked") from None


async def _bounded(rt: Runtime, stored: Awaitable[Any]) -> None:
    # asyncio.timeout, not wait_for: no extra task per request.
    async with asyncio.timeout(rt.settings.ack_timeout_s):
        await stored


async def store_intake(rt: Runtime, intake: Intake) -> None:
    """Store what one inbound text became: its facts in the journal (a ``TextRejected``
    keyed by the pseudonym of what the text reached, the others by sender), then its
    command on sms-received, keyed by sender."""
    for fact in intake.facts:
        key = (getattr(fact, "sender", None) or fact.recipient).encode()
        await _bounded(rt, rt.acknowledged(rt.produce(rt.topics.journal, key,
                                                      codec.encode(fact))))
    if intake.command is not None:
        await store_text(rt, intake.command)


async def store_text(rt: Runtime, command: ScreenText) -> None:
    """A text to screen, acknowledged within the ack timeout: on sms-received as the
    decisions need it, and its body apart on the bodies topic for its retention. The
    text's ack is the answer; a body not stored is said and the text kept (it carries what
    the decisions read), so a text is never refused once stored for want of its body."""
    text, kept = split_body(command, keep=rt.settings.body_retention_ms > 0)
    key, value = text.sender.encode(), codec.encode(text)
    if rt.ack_window is not None:
        # In the order of the log (the producer's), not of the acks: written again, a
        # sender's texts come in the order they were screened.
        rt.ack_window.remember(key, value)
    # asyncio.timeout, not wait_for: no extra task per request.
    async with asyncio.timeout(rt.settings.ack_timeout_s):
        stored = await rt.produce(rt.topics.inbound, key, value)
        body = (await rt.produce(rt.topics.bodies, kept.message_id.encode(),
                                 codec.encode(kept)) if kept is not None else None)
        await stored
        if body is not None:
            try:
                await body
            except Exception as exc:  # noqa: BLE001 - the text is stored: keep it
                log.warning("the body of text %s was not kept: %s", text.message_id,
                            type(exc).__name__)


async def store_report(rt: Runtime, fact: DeliveryReported) -> None:
    """Store a reply's delivery fact in the journal; a price said to be in EUR then goes to
    the campaign to replace the estimated cost."""
    await _bounded(rt, rt.acknowledged(rt.produce(rt.topics.journal, fact.sender.encode(),
                                                  codec.encode(fact))))
    if price_settles(fact.price_micros, fact.currency):
        await _bounded(rt, rt.settle(priced(fact, fact.price_micros, fact.occurred_at)))
