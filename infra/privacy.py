"""Phone numbers never travel or rest in clear.

- ``Privacy.pseudonym(number)``: a keyed pseudonym (HMAC-SHA256 of the E.164 digits) that
  the journal, the tables and the logs use instead of the number. The same number always
  gives the same pseudonym under one secret, so "already answered" still works.
- ``Privacy.seal(number)`` / ``open(token)``: AES-GCM, so the number needed for the reply
  can ride the short-lived work topics and be dropped after the send.

Both keys are derived from one deployment secret (``ANTIRELOU_SECRET``).

- ``mask_numbers(text)``: a text's body may hold a phone number ("rappelle moi au 06 12 34
  56 78"); the webhook masks every run of 6 or more digits (any digits, ASCII or not, with
  up to 3 spaces, dots, dashes or brackets between them, a leading ``+``: ``+33 (0)6 12 34
  56 78``, ``0033612345678``, ``06.12.34.56.78``) as ``[numero]`` before the body is
  stored, journaled or logged. Deterministic, so the audit replays the test-text rule on
  the same masked body the worker saw. Numbers written out in words are not caught.

Errors::

    PrivacyError          a sealed token that does not open (wrong key, tampered)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class PrivacyError(ValueError):
    pass


_MSISDN = re.compile(r"^\+?(\d{6,15})$")


def normalize_msisdn(raw: str) -> str | None:
    """E.164 digits without '+', or None when ``raw`` is not a plausible phone number."""
    m = _MSISDN.match(raw.replace(" ", "").strip())
    return m.group(1) if m else None


_NUMBER_IN_TEXT = re.compile(r"\+?\d(?:[\s.\-()]{0,3}\d){5,}")
NUMBER_MASK = "[numero]"


def mask_numbers(text: str) -> str:
    """``text`` with every digit run that could be a phone number replaced by [numero]."""
    return _NUMBER_IN_TEXT.sub(NUMBER_MASK, text)


NONCE_BYTES = 12
_NONCES_PER_READ = 256


class _Nonces:
    """Random AES-GCM nonces, read from the OS 256 at a time: one getrandom() call per
    webhook was a visible share of the webhook's profile (syscalls are dear in a sandbox).
    Each nonce is still 96 fresh random bits, used once. A forked child drops what it
    inherited, so parent and child never share a nonce; a lock keeps threads apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._next = 0
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._lock = threading.Lock()
        self._buffer, self._next = b"", 0

    def take(self) -> bytes:
        with self._lock:
            i = self._next
            if i + NONCE_BYTES > len(self._buffer):
                self._buffer, i = os.urandom(NONCE_BYTES * _NONCES_PER_READ), 0
            self._next = i + NONCE_BYTES
            return self._buffer[i:i + NONCE_BYTES]


_NONCES = _Nonces()  # one per process (see register_at_fork above)


class Privacy:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the deployment secret must be at least 16 bytes")
        self._mac_key = hashlib.sha256(b"antirelou/pseudonym\0" + secret).digest()
        self._aead = AESGCM(hashlib.sha256(b"antirelou/seal\0" + secret).digest())

    def pseudonym(self, msisdn: str) -> str:
        digest = hmac.digest(self._mac_key, msisdn.encode(), "sha256")  # one-shot, in C
        return "s_" + base64.b32encode(digest[:15]).decode().lower()

    def seal(self, msisdn: str) -> str:
        nonce = _NONCES.take()
        sealed = self._aead.encrypt(nonce, msisdn.encode(), b"reply_to")
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            return self._aead.decrypt(raw[:12], raw[12:], b"reply_to").decode()
        except (InvalidTag, ValueError) as exc:
            raise PrivacyError("sealed number does not open with this deployment's key") from exc
