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

- ``mask_numbers(text, region)``: a text's body may hold a phone number ("rappelle moi
  au 06 12 34 56 78"); the webhook replaces each with ``[numero]`` before the body is
  stored, journaled or logged, whatever separates its digits (``/``, ``_``, ``,``, spaces
  of any width, zero-width and other invisible characters, digits of any script). How:
  a search copy of the text is made in which invisible characters are dropped, every
  digit is an ASCII digit and every other character that is not a letter (nor ``+()``)
  a space; in it ``phonenumbers.PhoneNumberMatcher`` (leniency ``POSSIBLE``, the
  campaign's region) finds the numbers written in that region's or the international
  format, and a run of 8 or more digits with at most 5 separators between two of them is
  masked too (a foreign number in its national format, a number glued to a word); each
  found span is masked in the original text. Deterministic, so the audit replays the
  test-text rule on the same masked body the worker saw. Not caught: numbers written out
  in words or with letters for digits ("zero six", "O6"). Masked too: any other run of 8
  digits (a date "12/03/2024", hours "12:30 - 14:45").

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
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from phonenumbers import Leniency, PhoneNumberMatcher


class PrivacyError(ValueError):
    pass


_MSISDN = re.compile(r"^\+?(\d{6,15})$")


def normalize_msisdn(raw: str) -> str | None:
    """E.164 digits without '+', or None when ``raw`` is not a plausible phone number."""
    m = _MSISDN.match(raw.replace(" ", "").strip())
    return m.group(1) if m else None


NUMBER_MASK = "[numero]"
NET_MIN_DIGITS = 8  # a digit run this long is masked whatever phonenumbers says of it
NET_MAX_SEPARATORS = 5  # characters between two digits of one run, in the search copy
MIN_NUMBER_DIGITS = 5  # a text with fewer digits holds no number worth masking

_INVISIBLE = "\x00"  # what an invisible character becomes in the search copy
# Characters that show nothing but are letters or symbols (Hangul fillers, braille blank).
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = frozenset(("Cf", "Mn", "Me"))  # format chars (zero-width...), marks
_SEARCH_TABLE_MAX = 4096  # characters whose search-copy class is remembered


class _SearchTable(dict):
    """``str.translate`` table of the search copy, each character classed on first sight
    (one character for one: positions in the copy are positions in the text): a digit of
    any script (and ``①``, ``²``: what NFKC makes a digit) its ASCII digit, a letter
    itself, ``+()`` themselves, an invisible character ``\\x00``, anything else a space.
    Remembers at most ``_SEARCH_TABLE_MAX`` characters (a text may hold any)."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if ch.isdecimal():
            out = str(unicodedata.decimal(ch))
        elif ch in _BLANK or unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            out = _INVISIBLE
        elif ch.isalpha() or ch in "+()":
            out = ch
        else:
            folded = unicodedata.normalize("NFKC", ch)
            out = (" " if not (folded.isascii() and folded.isdigit())
                   else folded if len(folded) == 1 else "0")
        if len(self) < _SEARCH_TABLE_MAX:
            self[code] = out
        return out


_SEARCH = _SearchTable({ord(c): c for c in "0123456789 "})
_ASCII_DIGIT = re.compile(r"[0-9]")
_INVISIBLES = re.compile(_INVISIBLE + "+")
# A letter touching a digit or a '+' ("au0612...", "tel+33..."): phonenumbers refuses a
# number next to a letter; the search copy puts a space there.
_GLUED_LETTER = re.compile(r"(?<=[0-9+])[^\W\d_]|[^\W\d_](?=[0-9+])")
_NET = re.compile(rf"\+?[0-9](?:[^0-9\w]{{0,{NET_MAX_SEPARATORS}}}[0-9]){{{NET_MIN_DIGITS - 1},}}")


def _search_copy(text: str) -> tuple[str, list[int] | None]:
    """The search copy of ``text`` and, when invisible characters were dropped, the
    position in ``text`` of each of its characters (else None: the same positions)."""
    copy = text.translate(_SEARCH)
    if _INVISIBLE not in copy:
        return copy, None
    kept: list[int] = []
    parts: list[str] = []
    start = 0
    for gap in _INVISIBLES.finditer(copy):
        parts.append(copy[start:gap.start()])
        kept.extend(range(start, gap.start()))
        start = gap.end()
    parts.append(copy[start:])
    kept.extend(range(start, len(copy)))
    return "".join(parts), kept


def mask_numbers(text: str, region: str | None = None) -> str:
    """``text`` with every phone number in it replaced by ``[numero]`` (module docstring);
    ``region``: the campaign's (``"FR"``), for numbers written in its national format.
    ``text`` itself when it holds too few digits to hold a number."""
    if text.isascii() and _ASCII_DIGIT.search(text) is None:  # most texts: no digit
        return text
    copy, positions = _search_copy(text)
    if sum(map(copy.count, "0123456789")) < MIN_NUMBER_DIGITS:
        return text
    copy = _GLUED_LETTER.sub(" ", copy)
    spans = [(m.start, m.end) for m in PhoneNumberMatcher(copy, region or "ZZ",
                                                          leniency=Leniency.POSSIBLE)]
    spans += [m.span() for m in _NET.finditer(copy)]
    if not spans:
        return text
    if positions is not None:  # back to the text's positions, invisible ones inside
        spans = [(positions[a], positions[b - 1] + 1) for a, b in spans]
    out: list[str] = []
    done = 0
    for a, b in sorted(spans):
        if b <= done:
            continue
        if a >= done:
            out.append(text[done:a])
            out.append(NUMBER_MASK)
        done = b
    out.append(text[done:])
    return "".join(out)


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
