"""Fuzzing the webhook's parsing and signature check in process (thousands of cases).

Whatever arrives, ``parse_inbound`` either returns a well-formed ``InboundSms`` or raises
``BadRequest`` with a 4xx status and a JSON body without the sender's number, and
``SignatureVerifier.verify`` either returns claims or raises ``Unauthorized``: no other
exception ever escapes to the web view (where it would be a 500).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import time
import uuid
from urllib.parse import parse_qsl, quote

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.intake.errors import BadRequest, Unauthorized
from streams.intake.fields import MAX_BODY_BYTES, MAX_ID_CHARS, MAX_TEXT_CHARS
from streams.intake.messagebird import InboundSms, SignatureVerifier, form_fields, parse_inbound

FUZZ = settings(max_examples=3000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SENDER = "33612345678"
FORM = "application/x-www-form-urlencoded"

# Any code point, lone surrogates included, plus the odd ones that break naive code.
any_char = st.characters(codec=None, categories=None)
odd_text = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "\udfff", "\u202e33612345678", "\u200f",
                     "\ufeff", "💩" * 3, "３３６１２３４５６７８", "٣٣٦١٢٣٤٥٦٧٨", "33612345678\n",
                     "+33 6 12 34 56 78", "33612345678\x00", "0" * 16, "+" * 8, "1e10",
                     "NaN", "2017-10-16T20:15:00+00:00", "2017-10-16T20:15:00Z",
                     "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
                     "2017-02-30T00:00:00Z", "2017-10-16T24:00:00", "2017-10-16 20:15:00 02:00",
                     "20171016T201500", "2017-W42-1", "\u0662\u0660\u0661\u0667-10-16"]),
)
# Number look-alikes: digits of any script (fullwidth, Arabic-Indic...), with odd signs,
# spaces, controls around them.
number_like = st.builds(
    lambda pre, digits, post: pre + digits + post,
    st.sampled_from(["", "+", " ", "\u202e", "\n", "00"]),
    st.text(st.characters(categories=["Nd"]), min_size=5, max_size=16),
    st.sampled_from(["", "\n", " ", "\x00", "\u200f", "#"]),
)
# Ids with controls and invisible characters.
id_like = st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "L", "N"]), min_size=1,
                  max_size=20)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
              st.floats(allow_nan=False), odd_text, number_like, id_like,
              st.text(string.digits, min_size=1, max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)
FIELDS = ("id", "originator", "recipient", "receiver", "body", "createdDatetime", "reference")
GOOD = {"id": "abc123", "originator": SENDER, "recipient": "33644630001",
        "body": "t'es mignonne", "createdDatetime": "2017-10-16T20:15:00+00:00"}


@st.composite
def payloads(draw) -> dict:
    """Mostly a good callback with a few fields broken, removed or added."""
    data = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        action = draw(st.sampled_from(["drop", "replace", "replace"]))
        if action == "drop":
            data.pop(name, None)
        else:
            data[name] = draw(json_value)
    for key, value in draw(st.dictionaries(st.text(max_size=8), json_value, max_size=2)).items():
        data[key] = value
    return data


def form_encode(data: dict) -> bytes:
    # A hand-rolled encoder: lone surrogates go out as their raw (invalid) UTF-8 bytes.
    parts = []
    for key, value in data.items():
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        k = quote(str(key).encode("utf-8", "surrogatepass"), safe="")
        v = quote(str(value).encode("utf-8", "surrogatepass"), safe="")
        parts.append(f"{k}={v}")
    return "&".join(parts).encode()


CONTENT_TYPES = st.one_of(
    st.sampled_from([FORM, "application/json", "application/json; charset=utf-8",
                     "APPLICATION/JSON", f"{FORM}; charset=latin-1", "", "text/plain",
                     "multipart/form-data; boundary=x", "application/xml", ";", "application/",
                     "application/json\x00", "\u00e9/\u00e9"]),
    st.text(any_char, max_size=30),
)


@st.composite
def requests_(draw) -> tuple[str, bytes]:
    ctype = draw(CONTENT_TYPES)
    data = draw(payloads())
    kind = draw(st.sampled_from(["form", "json", "json_ascii", "bytes", "truncated", "big"]))
    if kind == "form":
        raw = form_encode(data)
    elif kind == "json":
        raw = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
    elif kind == "json_ascii":  # surrogates as \ud800 escapes
        raw = json.dumps(data).encode()
    elif kind == "truncated":
        raw = json.dumps(data).encode()
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif kind == "big":
        raw = form_encode({**data, "body": "x" * draw(st.integers(MAX_TEXT_CHARS - 2,
                                                                   MAX_BODY_BYTES + 10))})
    else:
        raw = draw(st.binary(max_size=200))
    return ctype, raw


def check_outcome(ctype: str, raw: bytes) -> InboundSms | BadRequest:
    try:
        sms = parse_inbound(ctype, raw)
    except BadRequest as exc:
        assert 400 <= exc.status < 500, exc.status
        body = orjson.loads(orjson.dumps(exc.body()))
        assert isinstance(body["error"], str) and isinstance(body["message"], str)
        assert SENDER not in orjson.dumps(body).decode()
        return exc
    # Accepted: every field is what the rest of the system relies on.
    assert 0 < len(sms.message_id) <= MAX_ID_CHARS and sms.message_id.strip()
    assert sms.message_id.isprintable()
    for number in (sms.originator, sms.recipient):
        assert number.isascii() and number.isdigit() and 6 <= len(number) <= 15
    assert len(sms.body) <= MAX_TEXT_CHARS and "\x00" not in sms.body
    assert sms.created_at_ms is None or isinstance(sms.created_at_ms, int)
    # The codec (orjson) must be able to write every field: no lone surrogates.
    orjson.dumps([sms.message_id, sms.body, sms.originator, sms.recipient])
    return sms


@FUZZ
@given(requests_())
def test_any_request_body_is_parsed_or_refused_with_a_json_4xx(request):
    check_outcome(*request)


@FUZZ
@given(st.binary(max_size=300), CONTENT_TYPES)
def test_arbitrary_bytes_never_escape_as_another_exception(raw, ctype):
    check_outcome(ctype, raw)


@settings(max_examples=1000, deadline=None)
@given(odd_text | st.text(max_size=40))
def test_any_created_datetime_is_a_time_or_a_422(value):
    result = check_outcome(FORM, form_encode({**GOOD, "createdDatetime": value}))
    if isinstance(result, BadRequest):
        assert result.field in ("createdDatetime", None) or result.status == 400


@settings(max_examples=1000, deadline=None)
@given(number_like, st.sampled_from(["originator", "recipient"]), st.booleans())
def test_a_number_is_ascii_digits_or_a_422_naming_the_field(value, field, as_json):
    data = {**GOOD, field: value}
    raw = orjson.dumps(data) if as_json else form_encode(data)
    result = check_outcome("application/json" if as_json else FORM, raw)
    if isinstance(result, BadRequest):
        assert result.field == field, result.body()


@settings(max_examples=1000, deadline=None)
@given(id_like)
def test_a_message_id_is_printable_or_a_422(value):
    result = check_outcome(FORM, form_encode({**GOOD, "id": value}))
    if isinstance(result, BadRequest):
        assert result.field == "id", result.body()


def test_the_good_callback_still_parses():
    # Guard: the fuzzing above starts from this callback, which must be accepted.
    assert isinstance(check_outcome(FORM, form_encode(GOOD)), InboundSms)
    assert isinstance(check_outcome("application/json", orjson.dumps(GOOD)), InboundSms)


def test_number_look_alikes_are_refused():
    for fake in ("３３６１２３４５６７８", "٣٣٦١٢٣٤٥٦٧٨", "33612345678\n", "\u202e33612345678"):
        result = check_outcome(FORM, form_encode({**GOOD, "originator": fake}))
        assert isinstance(result, BadRequest) and result.field == "originator", fake


def test_control_characters_in_the_id_are_refused():
    result = check_outcome(FORM, form_encode({**GOOD, "id": "abc\r\nINFO forged log line"}))
    assert isinstance(result, BadRequest) and result.field == "id"


# --- signatures -------------------------------------------------------------------------

KEY = "signing-key-for-fuzz-0123456789abcdef"
URL = "http://127.0.0.1:6066/webhooks/messagebird/sms"
BODY = b"id=1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: object, claims: object, key: str = KEY) -> str:
    """A JWT built by hand, so that claims of any type (PyJWT refuses some) can be signed."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def good_claims() -> dict:
    now = int(time.time())
    return {"iss": "MessageBird", "nbf": now, "exp": now + 60, "jti": uuid.uuid4().hex,
            "url_hash": hashlib.sha256(URL.encode()).hexdigest(),
            "payload_hash": hashlib.sha256(BODY).hexdigest()}


@st.composite
def tokens(draw) -> str:
    kind = draw(st.sampled_from(["text", "segments", "claims", "claims", "header"]))
    if kind == "text":
        return draw(st.text(any_char, max_size=200))
    if kind == "segments":
        seg = st.text(string.ascii_letters + string.digits + "-_=+/.\udcff", max_size=40)
        return ".".join(draw(st.lists(seg, min_size=1, max_size=5)))
    claims = good_claims()
    for name in draw(st.lists(st.sampled_from(sorted(claims)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del claims[name]
        else:
            claims[name] = draw(json_value)
    if kind == "header":
        header = draw(st.sampled_from([{"alg": "none"}, {"alg": "HS256", "kid": []}, [],
                                       {"alg": 5}, {"alg": "RS256"}, {}]))
        return hand_signed(header, claims)
    return hand_signed({"alg": "HS256", "typ": "JWT"}, claims)


@settings(max_examples=3000, deadline=None)
@given(tokens())
def test_any_token_is_accepted_or_refused_with_a_401(token):
    verifier = SignatureVerifier(KEY)
    try:
        claims = verifier.verify(token, URL, BODY)
    except Unauthorized as exc:
        assert exc.status == 401 and orjson.dumps(exc.body())
        return
    # Accepted only if it is a genuine token for this URL and body.
    assert claims["iss"] == "MessageBird" and isinstance(claims["jti"], str) and claims["jti"]
    assert claims["url_hash"] == hashlib.sha256(URL.encode()).hexdigest()


def test_odd_claim_types_and_header_bytes_are_401_not_500():
    for change in ({"url_hash": 5}, {"url_hash": None}, {"payload_hash": 5},
                   {"payload_hash": ["x"]}, {"jti": ["a"]}, {"jti": 7}, {"exp": "soon"}):
        token = hand_signed({"alg": "HS256"}, {**good_claims(), **change})
        try:
            SignatureVerifier(KEY).verify(token, URL, BODY)
        except Unauthorized:
            continue
        raise AssertionError(f"accepted a token with {change}")
    # aiohttp hands undecodable header bytes over as lone surrogates.
    for garbage in ("\udcff\udcfe", "é.é.é", "a" * 100_000):
        try:
            SignatureVerifier(KEY).verify(garbage, URL, BODY)
        except Unauthorized:
            continue
        raise AssertionError(f"accepted {garbage[:10]!r}")


def test_a_hand_signed_good_token_passes():
    # Guard for the fuzzing above: the hand-built tokens are real ones.
    assert SignatureVerifier(KEY).verify(hand_signed({"alg": "HS256"}, good_claims()), URL, BODY)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.text(st.sampled_from("ab=&+%2%41%C3%A9%zz% é\x00;"), max_size=60),
    st.text(any_char, max_size=60),
    st.dictionaries(st.text(any_char, max_size=8), st.text(any_char, max_size=20), max_size=5)
    .map(lambda d: form_encode(d).decode("utf-8", "surrogatepass")),
))
def test_form_fields_are_parse_qsl_s(text):
    assert form_fields(text) == dict(parse_qsl(text, keep_blank_values=True))
    assert list(form_fields(text)) == list(dict(parse_qsl(text, keep_blank_values=True)))
