"""Webhook parsing and signature checks, without a broker."""

import hashlib
import time
import uuid
from urllib.parse import urlencode

import jwt
import orjson
import pytest

from streams.intake.errors import BadRequest, Unauthorized
from streams.intake.messagebird import SignatureVerifier, parse_inbound

FORM = "application/x-www-form-urlencoded"
FIELDS = {"id": "abc123", "originator": "33612345678", "recipient": "33644630001",
          "body": "t'es mignonne", "createdDatetime": "2017-10-16T20:15:00+00:00"}


def test_a_form_encoded_callback_is_parsed():
    sms = parse_inbound(FORM, urlencode(FIELDS).encode())
    assert (sms.message_id, sms.originator, sms.recipient, sms.body) == (
        "abc123", "33612345678", "33644630001", "t'es mignonne")
    assert sms.created_at_ms == 1508184900000


def test_a_json_callback_with_numeric_numbers_and_receiver_is_parsed():
    data = {**FIELDS, "originator": 33612345678, "receiver": "+33644630001"}
    del data["recipient"]
    sms = parse_inbound("application/json; charset=utf-8", orjson.dumps(data))
    assert (sms.originator, sms.recipient) == ("33612345678", "33644630001")


@pytest.mark.parametrize("change, field", [
    ({"id": None}, "id"),
    ({"originator": None}, "originator"),
    ({"originator": "EvilCorp"}, "originator"),
    ({"recipient": "12"}, "recipient"),
    ({"createdDatetime": "yesterday"}, "createdDatetime"),
])
def test_a_bad_field_is_named_in_the_error(change, field):
    data = {k: v for k, v in {**FIELDS, **change}.items() if v is not None}
    with pytest.raises(BadRequest) as err:
        parse_inbound(FORM, urlencode(data).encode())
    assert err.value.field == field and 400 <= err.value.status < 500
    assert "33612345678" not in str(err.value.body())


@pytest.mark.parametrize("ctype, raw, status", [
    ("text/plain", b"hello", 415),
    ("application/json", b"{nope", 400),
    ("application/json", b"[1, 2]", 400),
    (FORM, b"\xff\xfe", 400),
    (FORM, b"x" * 70_000, 413),
])
def test_malformed_bodies_are_4xx(ctype, raw, status):
    with pytest.raises(BadRequest) as err:
        parse_inbound(ctype, raw)
    assert err.value.status == status


KEY = "signing-key-for-tests-0123456789abcdef"
URL = "http://127.0.0.1:6066/webhooks/messagebird/sms"


def sign(url=URL, body=b"payload", key=KEY, **claims):
    now = int(time.time())
    payload = {"iss": "MessageBird", "nbf": now, "exp": now + 60, "jti": uuid.uuid4().hex,
               "url_hash": hashlib.sha256(url.encode()).hexdigest(),
               "payload_hash": hashlib.sha256(body).hexdigest(), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


def test_a_good_signature_passes_once_and_its_replay_is_refused():
    verifier = SignatureVerifier(KEY)
    token = sign()
    assert verifier.verify(token, URL, b"payload")["iss"] == "MessageBird"
    with pytest.raises(Unauthorized, match="already used"):
        verifier.verify(token, URL, b"payload")


def test_a_forgotten_token_passes_again_for_the_retry_of_an_unstored_text():
    verifier = SignatureVerifier(KEY)
    token = sign()
    claims = verifier.verify(token, URL, b"payload")
    verifier.forget(claims["jti"])
    assert verifier.verify(token, URL, b"payload")["jti"] == claims["jti"]
    with pytest.raises(Unauthorized, match="already used"):
        verifier.verify(token, URL, b"payload")


@pytest.mark.parametrize("token, url, body", [
    (None, URL, b"payload"),
    (sign(key="forged-key-forged-key-forged-key-0123"), URL, b"payload"),
    (sign(exp=int(time.time()) - 10), URL, b"payload"),
    (sign(nbf=int(time.time()) + 3600, exp=int(time.time()) + 3660), URL, b"payload"),
    (jwt.encode({"iss": "MessageBird", "nbf": int(time.time()), "exp": int(time.time()) + 60,
                 "jti": "none-alg", "url_hash": hashlib.sha256(URL.encode()).hexdigest(),
                 "payload_hash": hashlib.sha256(b"payload").hexdigest()}, None, "none"),
     URL, b"payload"),
    (sign(), URL + "?x=1", b"payload"),
    (sign(), URL, b"tampered"),
    (sign(url_hash=None), URL, b"payload"),
    (sign(jti=None), URL, b"payload"),
    ("not-a-jwt", URL, b"payload"),
])
def test_bad_signatures_are_refused(token, url, body):
    with pytest.raises(Unauthorized):
        SignatureVerifier(KEY).verify(token, url, body)


def test_number_facts_are_classify_answers_kept_by_pseudonym_only():
    # given the facts of a few senders asked for twice, then they are classify()'s, and the
    # cache holds pseudonyms, never a number, and no more entries than its bound
    from infra.numbers import classify
    from streams.intake.build import NumberFacts

    facts = NumberFacts(max_size=2)
    numbers = {"s_a": "33612345678", "s_b": "33144556677", "s_c": "3612"}
    for _ in range(2):
        for sender, number in numbers.items():
            assert facts.get(sender, number) == classify(number)
    assert set(facts._by_sender) <= set(numbers) and len(facts._by_sender) == 2


@pytest.mark.parametrize("body", [
    "rappelle moi au 06 12 34 56 78", "rappelle moi au 06.12.34.56.78",
    "rappelle moi au 06-12-34-56-78", "rappelle moi au +33 6 12 34 56 78",
    "rappelle moi au 0033612345678", "rappelle moi au +33 (0)6 12 34 56 78",
    "rappelle moi au 0612345678", "rappelle moi au ０６１２３４５６７８",
])
def test_phone_number_in_a_body_is_masked_at_the_webhook_in_any_format(body):
    # Issue 13 item 4: the body was journaled as sent, number included, for ever.
    from actors.textfilter import is_test_text

    sms = parse_inbound(FORM, urlencode({**FIELDS, "body": body}).encode())
    assert sms.body == "rappelle moi au [numero]"
    assert not any(c.isdigit() for c in sms.body)
    # Deterministic: the audit replays the test-text rule on what was journaled.
    assert parse_inbound(FORM, urlencode({**FIELDS, "body": body}).encode()) == sms
    assert not is_test_text(sms.body)
    kept = parse_inbound(FORM, urlencode({**FIELDS, "body": "Test 123, 12:30"}).encode())
    assert kept.body == "Test 123, 12:30"  # short digit runs are no number: left alone


def test_provider_dates_are_clamped_to_the_arrival_time_plus_or_minus_the_skew():
    # Issue 13 item 11: createdDatetime was trusted as the text's time.
    from streams.intake.build import MAX_EVENT_SKEW_MS, event_time

    now = 1_800_000_000_000
    assert event_time(None, now) == now
    assert event_time(now - 1_000, now) == now - 1_000  # a normal delay: kept
    assert event_time(now + 10 * 86_400_000, now) == now + MAX_EVENT_SKEW_MS
    assert event_time(0, now) == now - MAX_EVENT_SKEW_MS


def test_jti_store_a_token_of_ten_years_is_refused():
    # Issue 13 item 12: tokens of any lifetime were accepted (10 years passed).
    verifier = SignatureVerifier(KEY)
    now = int(time.time())
    with pytest.raises(Unauthorized, match="expire within"):
        verifier.verify(sign(exp=now + 10 * 365 * 86_400), URL, b"payload")
    assert verifier.verify(sign(exp=now + 300), URL, b"payload")  # minutes are fine


def test_jti_store_never_forgets_an_unexpired_token_to_make_room():
    # Issue 13 item 12: past max_remembered the oldest jti was evicted before it expired,
    # and its token could then be replayed. Now new tokens wait (503) instead.
    from streams.intake.errors import WebhookError

    verifier = SignatureVerifier(KEY, max_remembered=3)
    first = sign()
    verifier.verify(first, URL, b"payload")
    for _ in range(2):
        verifier.verify(sign(), URL, b"payload")
    with pytest.raises(WebhookError) as busy:
        verifier.verify(sign(), URL, b"payload")
    assert busy.value.status == 503
    with pytest.raises(Unauthorized, match="already used"):
        verifier.verify(first, URL, b"payload")


def test_jti_store_a_json_null_body_is_an_empty_text():
    # Issue 13 item 12: {"body": null} was a 422 and the text was lost.
    data = {**FIELDS, "body": None}
    sms = parse_inbound("application/json", orjson.dumps(data))
    assert sms.body == ""


def test_jti_store_a_sealed_number_opens_only_in_its_own_record():
    # Issue 13 item 12: sealed tokens had constant associated data, so a token copied into
    # another sender's or campaign's record opened there.
    from infra.privacy import Privacy, PrivacyError

    privacy = Privacy(b"a-secret-of-at-least-16-bytes")
    token = privacy.seal("33612345678", campaign_id="paris", sender="s_a")
    assert privacy.open(token, campaign_id="paris", sender="s_a") == "33612345678"
    for campaign_id, sender in (("lyon", "s_a"), ("paris", "s_b")):
        with pytest.raises(PrivacyError):
            privacy.open(token, campaign_id=campaign_id, sender=sender)
