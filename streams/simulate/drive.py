"""Driving a running webhook: MessageBird's signed form posts, and a text progress bar."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import urlencode, urlsplit

from infra.mb_signature import sign_webhook
from streams.simulate.generation import SECOND_MS, SimText


class Progress:
    """A text progress bar on a stream: ``\\r[#####.....] 52% 13000/25000 texts``.

    Redraws at most every ``min_interval_s``; does nothing when disabled or when the stream is
    not a TTY, unless ``force`` is set. ``stream`` defaults to ``sys.stderr`` at creation.
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True, *,
                 force: bool = False, unit: str = "texts", width: int = 30,
                 min_interval_s: float = 0.1) -> None:
        self.total, self.done, self.unit, self.width = max(0, total), 0, unit, width
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.active = enabled and (force or bool(isatty and isatty()))
        self._interval = min_interval_s
        self._last_draw = float("-inf")
        self._drawn_at: int | None = None
        self._closed = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.active or self._closed:
            return
        now = time.monotonic()
        if now - self._last_draw >= self._interval or self.done >= self.total:
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {int(100 * frac):3d}% {self.done}/{self.total} {self.unit}")
        self.stream.flush()
        self._drawn_at = self.done

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.active:
            if self._drawn_at != self.done:
                self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- webhook driver


def created_datetime(at_ms: int) -> str:
    """MessageBird's ``createdDatetime``: ISO 8601 in UTC, whole seconds, ``+00:00``."""
    stamp = dt.datetime.fromtimestamp(at_ms // SECOND_MS, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def webhook_form(text: SimText, recipient: str) -> bytes:
    """The form-encoded body MessageBird posts for an inbound text."""
    return urlencode({"id": text.message_id, "originator": text.sender, "recipient": recipient,
                      "body": text.body, "createdDatetime": created_datetime(text.at_ms)}).encode()


def webhook_problem(url: str, timeout_s: float = 3) -> str | None:
    """Why ``url`` cannot take webhooks (not an http(s) URL, nothing listening), else None:
    said before the first text rather than after thousands of failed posts."""
    import socket

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--webhook {url!r} is not an http(s) URL"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except ValueError:
        return f"--webhook {url!r}: the port is not a number from 1 to 65535"
    except OSError as exc:
        return (f"nothing answers at {parts.hostname}:{port} ({exc.strerror or type(exc).__name__}): "
                "is the worker running (bash infra/up.sh)?")


def drive_webhook(texts: Iterable[SimText], url: str, recipient: str, signing_key: str | None, *,
                  rate_per_s: float | None = None, timeout_s: float = 10,
                  progress: Progress | None = None) -> dict[str, int]:
    """POST each text, in the given order, to ``url`` (your own antirelou webhook) as MessageBird
    would, signed when ``signing_key`` is given; at most ``rate_per_s`` requests a second.

    Returns how many requests got each HTTP status (``{"200": n, ...}``; ``"error"`` counts
    requests that got no answer). ``progress`` is advanced once per text, not closed.
    """
    import requests

    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("url must be an http(s) URL")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    counts: dict[str, int] = {}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    started = time.monotonic()
    with requests.Session() as session:
        for i, text in enumerate(texts):
            if rate_per_s is not None:
                wait = started + i / rate_per_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            body = webhook_form(text, recipient)
            if signing_key is not None:
                headers["MessageBird-Signature-JWT"] = sign_webhook(url, body, signing_key)
            try:
                response = session.post(url, data=body, headers=headers, timeout=timeout_s)
                key = str(response.status_code)
                response.close()
            except requests.RequestException:
                key = "error"
            counts[key] = counts.get(key, 0) + 1
            if progress is not None:
                progress.advance(1)
    return counts
