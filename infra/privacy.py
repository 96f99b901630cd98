"""Phone numbers never travel or rest in clear.

- ``Privacy.pseudonym(number)``: a keyed pseudonym (HMAC-SHA256 of the E.164 digits) that
  the journal, the tables and the logs use instead of the number. The same number always
  gives the same pseudonym under one secret, so "already answered" still works.
- ``Privacy.seal(number, campaign_id=, sender=)`` / ``open(token, campaign_id=, sender=)``:
  AES-GCM, so the number needed for the reply can ride the short-lived work topics and be
  dropped after the send. The token is bound to its record (the campaign and the sender's
  pseudonym are its associated data): copied into another record it does not open.
  Tokens sealed before the binding (no ``v2.`` prefix) still open, with the old constant
  associated data, so replies under way at an upgrade are not lost.
- ``Privacy.reseal_for_reply(token, campaign_id=, sender=, message_id=)`` /
  ``open_reply(...)``: the decide stage turns an approved request's token into a reply
  token (``v3.``), bound to the approved request's message id too and to its own purpose;
  the send stage opens only those. A token copied from ``sms-received`` or
  ``reply-requests`` into a ``SendReply`` does not open there, so a record written to
  ``sms-outbound`` by anyone without the deployment's secret buys no SMS that no campaign
  approved; one copied from another ``SendReply`` opens for that message id only, which the
  send stage answers at most once.

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

    def seal(self, msisdn: str, *, campaign_id: str, sender: str) -> str:
        nonce = _NONCES.take()
        sealed = self._aead.encrypt(nonce, msisdn.encode(), _bound(campaign_id, sender))
        return _BOUND + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, *, campaign_id: str, sender: str) -> str:
        if token.startswith(_BOUND):
            token, associated = token[len(_BOUND):], _bound(campaign_id, sender)
        else:  # sealed before tokens were bound to their record
            associated = b"reply_to"
        return self._decrypt(token, associated)

    def reseal_for_reply(self, token: str, *, campaign_id: str, sender: str,
                         message_id: str) -> str:
        """The reply token of an approved request whose request token is ``token``
        (PrivacyError if that does not open in this record)."""
        number = self.open(token, campaign_id=campaign_id, sender=sender)
        nonce = _NONCES.take()
        sealed = self._aead.encrypt(nonce, number.encode(),
                                    _reply_bound(campaign_id, sender, message_id))
        return _REPLY + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open_reply(self, token: str, *, campaign_id: str, sender: str, message_id: str) -> str:
        """The number of a reply token (``reseal_for_reply``), only in the SendReply of the
        request it was approved for; a request token does not open here."""
        if not token.startswith(_REPLY):
            raise PrivacyError("not a reply token: only an approved request's opens here")
        return self._decrypt(token[len(_REPLY):], _reply_bound(campaign_id, sender, message_id))

    def _decrypt(self, token: str, associated: bytes) -> str:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            return self._aead.decrypt(raw[:12], raw[12:], associated).decode()
        except (InvalidTag, ValueError) as exc:
            raise PrivacyError("sealed number does not open with this deployment's key "
                               "in this record") from exc


_BOUND = "v2."
_REPLY = "v3."


def _bound(campaign_id: str, sender: str) -> bytes:
    return b"reply_to\0" + campaign_id.encode() + b"\0" + sender.encode()


def _reply_bound(campaign_id: str, sender: str, message_id: str) -> bytes:
    # Its own purpose ("approved"): no request token's associated data is ever this.
    return (b"approved\0" + campaign_id.encode() + b"\0" + sender.encode() + b"\0"
            + message_id.encode())
