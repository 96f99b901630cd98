"""The quick signature check (``infra.mb_verify``) accepts only what the SDK accepts.

Every token here is checked twice: by ``SignatureVerifier`` as shipped (quick check first)
and by one whose quick check is switched off (the SDK's checks alone, as before it existed).
Both must give the same verdict: equal claims, or the same 401 with the same message. And
the SDK's own ``validate_signature`` on the whole request is the reference: what the
verifier accepts (the token checked before the body is read, the body after), the SDK
accepts with equal claims; what the SDK refuses, the verifier refuses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from messagebird.request_validator import RequestValidator

from infra.mb_verify import QuickCheck
from streams.intake.errors import WebhookError
from streams.intake.messagebird import SignatureVerifier

KEY = "signing-key-for-quick-" + "0123456789abcdef" * 3  # 70 bytes: long enough for HS512
URL = "http://127.0.0.1:6066/webhooks/messagebird/sms"
BODY = b"id=1&originator=33612345678"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: object, claims: object, key: str = KEY, raw: bool = False) -> str:
    """A JWT built by hand (claims of any type; ``raw``: header and claims as given bytes)."""
    head = b64(header if raw else json.dumps(header).encode())  # type: ignore[arg-type]
    body = b64(claims if raw else json.dumps(claims).encode())  # type: ignore[arg-type]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    alg = header.get("alg") if isinstance(header, dict) else "HS256"
    hash_fn = digest.get(alg, hashlib.sha256) if isinstance(alg, str) else hashlib.sha256
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hash_fn).digest()
    return f"{head}.{body}.{b64(sig)}"


def good_claims(body: bytes = BODY, url: str = URL) -> dict:
    now = int(time.time())
    claims = {"iss": "MessageBird", "nbf": now, "exp": now + 60, "jti": uuid.uuid4().hex,
              "url_hash": hashlib.sha256(url.encode()).hexdigest()}
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return claims


def verdict(verifier: SignatureVerifier, token: str, url: str, body: bytes) -> object:
    try:
        return ("ok", verifier.verify(token, url, body))
    except WebhookError as exc:
        return ("refused", exc.status, exc.code, exc.message)


def sdk_only() -> SignatureVerifier:
    verifier = SignatureVerifier(KEY)
    verifier._quick.claims = lambda *args: None  # type: ignore[method-assign]
    return verifier


def assert_same_verdict(token: str, url: str = URL, body: bytes = BODY) -> object:
    quick = QuickCheck(KEY).claims(token, url, body, time.time())
    if quick is not None:  # then the SDK accepts it too, with equal claims
        assert RequestValidator(KEY).validate_signature(token, url, body) == quick
    shipped = verdict(SignatureVerifier(KEY), token, url, body)
    assert shipped == verdict(sdk_only(), token, url, body)
    try:
        reference = ("ok", RequestValidator(KEY).validate_signature(token, url, body))
    except Exception:  # noqa: BLE001 - the SDK's refusals (and its crashes on odd claims)
        reference = ("refused",)
    if shipped[0] == "ok":
        assert reference == shipped
    if reference[0] == "refused":
        assert shipped[0] == "refused" and shipped[1] == 401
    return shipped


def test_messagebird_tokens_take_the_quick_path_and_pass_as_before():
    for alg in ("HS256", "HS384", "HS512"):
        claims = good_claims()
        token = jwt.encode(claims, KEY, algorithm=alg)
        assert QuickCheck(KEY).claims(token, URL, BODY, time.time()) == claims
        assert assert_same_verdict(token) == ("ok", claims)
    empty = good_claims(body=b"")  # a delivery report: a GET, no body, no payload_hash
    token = jwt.encode(empty, KEY, algorithm="HS256")
    assert QuickCheck(KEY).claims(token, URL, b"", time.time()) == empty
    assert assert_same_verdict(token, body=b"") == ("ok", empty)


def test_a_replay_is_refused_after_the_quick_path_too():
    verifier = SignatureVerifier(KEY)
    token = jwt.encode(good_claims(), KEY, algorithm="HS256")
    verifier.verify(token, URL, BODY)
    assert verdict(verifier, token, URL, BODY)[2] == "replayed_signature"


def test_a_short_key_or_one_pyjwt_refuses_never_takes_the_quick_path():
    # PyJWT warns on a short HMAC key and refuses a PEM one: the SDK keeps deciding.
    assert QuickCheck("short-key")._keys == {}
    assert QuickCheck("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----")._keys == {}


def odd_tokens() -> list[tuple[str, str, bytes]]:
    now = int(time.time())
    good = good_claims()
    head = {"alg": "HS256", "typ": "JWT"}
    token = hand_signed(head, good)
    h, p, s = token.split(".")
    cases = [
        token + "=", f"{h}=.{p}.{s}", f"{h}.{p}.{s}==", f"{h}.{p}.{s}.", f"{h}.{p}",
        f"{h}.{p}.{s[:-1]}", f"{h}.{p}.{s[:-1]}{'A' if s[-1] != 'A' else 'B'}",
        f"{h}.{p}.{s}A", f"{h}.{p}.", f".{p}.{s}", f"{h}..{s}", f"{h}.{p}.{s[:-2]}+/",
        f"{h} .{p}.{s}", f"{h}.{p}.{s}\n",
        hand_signed(head, good, key="another-key-another-key-0123456789"),
        hand_signed({"alg": "HS256", "kid": 5}, good), hand_signed({"alg": "HS256", "kid": "k"}, good),
        hand_signed({"alg": "HS256", "crit": ["b64"], "b64": False}, good),
        hand_signed({"alg": "HS256", "crit": ["exp"]}, good),
        hand_signed({"alg": "hs256"}, good), hand_signed({"alg": "none"}, good),
        hand_signed({"alg": ["HS256"]}, good), hand_signed({"alg": "RS256"}, good),
        hand_signed({"alg": "HS256", "typ": 1.5}, good), hand_signed({"alg": "HS256", "x": 1}, good),
        hand_signed(b'\xef\xbb\xbf{"alg":"HS256"}', json.dumps(good).encode(), raw=True),
        hand_signed(b'{"alg":"HS256","alg":"none"}', json.dumps(good).encode(), raw=True),
        hand_signed(b'{"alg":"none","alg":"HS256"}', json.dumps(good).encode(), raw=True),
        hand_signed(b' {"alg":"HS256"}', json.dumps(good).encode(), raw=True),
        hand_signed(b'{"alg":"HS256"}', b" " + json.dumps(good).encode(), raw=True),
        hand_signed(b'{"alg":"HS256"}', json.dumps(good).encode() + b" ", raw=True),
        hand_signed(b'{"alg":"HS256"}', json.dumps(good).encode().replace(b"{", b"[", 1), raw=True),
        hand_signed(b'{"alg":"HS256"}', json.dumps(good).encode()[:-1] + b', "exp": 1}', raw=True),
        hand_signed(b'{"alg":"HS256"}', json.dumps(good).encode()[:-1] + b', "x": NaN}', raw=True),
        hand_signed(b'{"alg":"HS256"}', json.dumps(good).encode()[:-1] + b', "x": "\\ud800"}',
                    raw=True),
        hand_signed(b'{"alg":"HS256"}', json.dumps(good).encode().replace(b"{", b"\x00{"),
                    raw=True),
        hand_signed(b'{"alg":"HS256"}', "\ufeff".encode("utf-16") + json.dumps(good).encode(
            "utf-16-le"), raw=True),
    ]
    changes = [
        # Away from the leeway's edges, which a second ticking between the two checks would
        # move (the edges: test_the_leeway_is_the_sdks).
        {"exp": now - 5}, {"exp": float(now + 60)},
        {"exp": 10**30}, {"exp": True}, {"exp": str(now + 60)}, {"exp": None},
        {"nbf": now + 30}, {"nbf": now + 3600}, {"nbf": float(now)},
        {"nbf": False}, {"nbf": [now]}, {"iss": "messagebird"}, {"iss": None}, {"iss": ["MessageBird"]},
        {"aud": "x"}, {"aud": ""}, {"aud": []}, {"sub": 5}, {"sub": "s"}, {"jti": 7}, {"jti": ""},
        {"url_hash": good["url_hash"].upper()}, {"url_hash": 5}, {"url_hash": "é"},
        {"payload_hash": ""}, {"payload_hash": None}, {"payload_hash": "é"},
        {"payload_hash": hashlib.sha256(b"other").hexdigest()}, {"iat": "later"},
        {"iat": now + 3600}, {"extra": {"nested": [1.5]}}, {"extra": 1.5},
    ]
    cases += [hand_signed(head, {**good, **change}) for change in changes]
    cases += [hand_signed(head, {k: v for k, v in good.items() if k != name}) for name in good]
    out = [(c, URL, BODY) for c in cases]
    out += [(token, URL + "?x=1", BODY), (token, URL, b"tampered"), (token, URL, b""),
            (token, "", BODY), (token, URL + "\udcff", BODY),
            (hand_signed(head, good_claims(body=b"")), URL, BODY),
            (hand_signed(head, {**good_claims(body=b""), "payload_hash": "x"}), URL, b"")]
    return out


@pytest.mark.parametrize("case", range(len(odd_tokens())))
def test_odd_tokens_get_the_sdks_verdict(case):
    assert_same_verdict(*odd_tokens()[case])  # built here: their times are now's


def test_the_leeway_is_the_sdks():
    # PyJWT refuses exp <= now - 1 and nbf > now + 1 (leeway 1 s).
    claims = {**good_claims(), "nbf": 1_000, "exp": 2_000}
    token = jwt.encode(claims, KEY, algorithm="HS256")
    quick = QuickCheck(KEY)
    assert quick.claims(token, URL, BODY, 999.0) == claims
    assert quick.claims(token, URL, BODY, 998.9) is None
    assert quick.claims(token, URL, BODY, 2_000.9) == claims
    assert quick.claims(token, URL, BODY, 2_001.0) is None


@st.composite
def mutated_tokens(draw) -> str:
    """Good tokens with a few characters changed, added or removed."""
    token = list(jwt.encode(good_claims(), KEY, algorithm="HS256"))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(token) - 1))
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        char = draw(st.sampled_from("AZaz09-_=+/. \x00é"))
        if op == "set":
            token[i] = char
        elif op == "insert":
            token.insert(i, char)
        elif len(token) > 1:
            del token[i]
    return "".join(token)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_tokens())
def test_mutated_tokens_get_the_sdks_verdict(token):
    assert_same_verdict(token)
