"""A quick first check of ``MessageBird-Signature-JWT`` that accepts only what the SDK accepts.

The SDK's check (``messagebird.RequestValidator`` over PyJWT 2.15) cost about 200 us per
webhook, half of it PyJWT testing each base64url character in a Python generator and
preparing the HMAC key anew. ``QuickCheck.claims`` does the same checks with C primitives
(a regex, ``base64``, ``orjson``, ``hmac``) on the plain form MessageBird sends, and returns
the claims only for a token that the SDK would accept with equal claims. It never refuses:
on any doubt or failure it returns None, and the caller asks the SDK, which gives the
verdict and its message. So it can only accept a subset of what the SDK accepts:

* three non-empty, unpadded base64url segments in canonical form (PyJWT's own test: the
  re-encoding of the decoded bytes gives the segment back);
* a header and a payload that are JSON objects of plain values only (str, int, bool,
  null): where orjson and PyJWT's ``json.loads`` could differ (floats, integers beyond 64
  bits, nesting, lone surrogates, a BOM), the SDK decides;
* a header of ``alg`` (HS256/384/512, those the SDK allows and whose key PyJWT prepares
  without an error or a warning) and ``typ`` only: no ``kid``, ``crit`` or ``b64``;
* the HMAC of ``header.payload`` equal to the signature;
* the SDK's claim checks, with its leeway of 1 s: ``iss`` "MessageBird", integer ``nbf``
  and ``exp`` (``nbf <= now + 1`` and ``exp > now - 1``), no ``aud``, ``sub`` and ``jti`` strings
  when present; ``url_hash`` the SHA-256 of the URL; ``payload_hash`` that of a
  non-empty body, absent or empty for an empty one.

``iat`` is not checked, as by the SDK (``verify_iat`` off). The replay and lifetime checks
stay in ``streams.intake.messagebird.SignatureVerifier``, after either path.

The token is checked before the body is read (a forged request is refused with no more of
it buffered than has arrived): ``QuickCheck.claims(token, url, None, now)`` and, when it
cannot tell, ``sdk_token_claims`` (the SDK's own token and URL checks); then the body,
``payload_matches`` (the SDK's three rules on ``payload_hash``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any

import jwt
import orjson
from jwt.api_jws import get_algorithm_by_name
from jwt.exceptions import InvalidKeyError
from messagebird.error import ValidationError
from messagebird.request_validator import RequestValidator

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_KEYS = frozenset({"alg", "typ"})
_PLAIN = frozenset({str, int, bool, type(None)})
LEEWAY_S = 1  # the SDK's
ISSUER = "MessageBird"


class QuickCheck:
    def __init__(self, signing_key: str) -> None:
        # alg -> (key bytes, hash name), for the algorithms the SDK allows and takes this
        # key for without raising or warning (with another, every token goes to the SDK).
        self._keys: dict[str, tuple[bytes, str]] = {}
        for alg in RequestValidator.ALLOWED_ALGOS:
            try:
                algorithm = get_algorithm_by_name(alg)
                key = algorithm.prepare_key(signing_key)
            except (NotImplementedError, InvalidKeyError):
                continue
            if algorithm.check_key_length(key) is None:
                self._keys[alg] = (key, algorithm.hash_alg().name)

    def claims(self, token: str, url: str, body: bytes | None, now: float
               ) -> dict[str, Any] | None:
        """The token's claims if it passes every check above, else None (ask the SDK).
        ``body`` None: every check but ``payload_hash`` (the token alone, checked before
        the body is read; ``payload_matches`` then checks the body)."""
        parts = token.split(".")
        if len(parts) != 3 or not url:
            return None
        head, load, sig = parts
        header = _json_object(head)
        alg = header.get("alg") if header is not None else None
        if type(alg) is not str or not header.keys() <= _HEADER_KEYS or alg not in self._keys:
            return None
        key, hash_name = self._keys[alg]
        signature = _segment_bytes(sig)
        if signature is None or not hmac.compare_digest(
                signature, hmac.digest(key, f"{head}.{load}".encode(), hash_name)):
            return None
        claims = _json_object(load)
        if claims is None or not _claims_pass(claims, now):
            return None
        try:
            url_hash = hashlib.sha256(url.encode("utf-8")).hexdigest()
        except UnicodeEncodeError:
            return None
        if not _same_hex(claims.get("url_hash"), url_hash):
            return None
        if body is None:
            return claims
        if body:
            if not _same_hex(claims.get("payload_hash"), hashlib.sha256(body).hexdigest()):
                return None
        elif claims.get("payload_hash"):
            return None
        return claims


def sdk_token_claims(signing_key: str, token: str, url: str) -> dict[str, Any]:
    """The SDK's checks of ``RequestValidator.validate_signature`` that do not need the body,
    in its order and with its calls and messages (PyJWT's decode with its algorithms,
    options, issuer and leeway; then the URL hash): the claims, or its ValidationError.
    With ``payload_matches`` on the body afterwards, the SDK's whole check; split so that a
    forged token is refused before its body is read (streams.intake.messagebird)."""
    if not token:
        raise ValidationError("Signature is empty")
    if not url:
        raise ValidationError("URL is empty")
    try:
        claims = jwt.decode(jwt=token, key=signing_key, algorithms=RequestValidator.ALLOWED_ALGOS,
                            options={"require": ["iss", "nbf", "exp"], "verify_iat": False},
                            issuer=ISSUER, leeway=LEEWAY_S)
    except jwt.InvalidTokenError as err:
        raise ValidationError(str(err)) from err
    expected_url_hash = hashlib.sha256(url.encode("utf-8")).hexdigest()
    if not hmac.compare_digest(expected_url_hash, claims["url_hash"]):
        raise ValidationError("invalid jwt: claim url_hash is invalid")
    return claims


def payload_matches(claims: dict[str, Any], body: bytes) -> str | None:
    """The SDK's check of a body against its token's ``payload_hash`` (its three rules):
    None when it passes, else why not."""
    payload_hash = claims.get("payload_hash")
    if not body:
        return "claim payload_hash is set but actual payload is missing" if payload_hash else None
    if not payload_hash:
        return "claim payload_hash is not set but payload is present"
    if not _same_hex(payload_hash, hashlib.sha256(body).hexdigest()):
        return "claim payload_hash is invalid"
    return None


def _claims_pass(claims: dict[str, Any], now: float) -> bool:
    nbf, exp = claims.get("nbf"), claims.get("exp")
    return (claims.get("iss") == ISSUER and type(nbf) is int and type(exp) is int
            and nbf <= now + LEEWAY_S and exp > now - LEEWAY_S and "aud" not in claims
            and type(claims.get("sub", "")) is str and type(claims.get("jti", "")) is str)


def _same_hex(claimed: Any, expected: str) -> bool:
    return type(claimed) is str and claimed.isascii() and hmac.compare_digest(claimed, expected)


def _segment_bytes(segment: str) -> bytes | None:
    """A base64url segment's bytes if it is unpadded and canonical, else None."""
    if len(segment) % 4 == 1 or not _SEGMENT.fullmatch(segment):
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode():
        return None
    return raw


def _json_object(segment: str) -> dict[str, Any] | None:
    """A segment holding a JSON object of plain values (decoded alike by orjson and
    ``json.loads``), else None."""
    raw = _segment_bytes(segment)
    if raw is None or not raw.startswith(b"{"):
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or any(type(v) not in _PLAIN for v in data.values()):
        return None
    return data
