"""Bird webhook events: the signature as Bird documents it, stale and replayed requests,
the parsing into the same ScreenText / DeliveryReported as the classic provider."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from types import SimpleNamespace

import pytest

from infra.bird_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_bird
from infra.numbers import classify
from infra.privacy import Privacy
from streams.intake.bird import (
    BirdPorts,
    BirdSignatureVerifier,
    BirdStatus,
    BirdText,
    Ignored,
    SeenEvents,
    delivery_fact_of,
    handle_bird_request,
    intake_of,
    parse_bird_event,
)
from streams.intake.build import IntakeBuilder
from streams.intake.errors import BadRequest, Unauthorized
from tests import factories

KEY = "bird-signing-key"
URL = "https://antirelou.example/webhooks/bird"
NOW = 1_764_600_000
SENDER = "33612345678"
CAMPAIGN = factories.campaign()


def envelope(event: str, **payload) -> bytes:
    return json.dumps({"service": "channels", "event": event, "payload": payload}).encode()


def inbound(**over) -> bytes:
    payload = {"id": "96a0b5fa-a986", "channelId": "ch-paris",
               "sender": {"contact": {"identifierKey": "phonenumber",
                                      "identifierValue": "+" + SENDER}},
               "body": {"type": "text", "text": {"text": "t'es ou ?"}},
               "status": "delivered", "direction": "incoming",
               "createdAt": "2026-12-01T20:15:00.000Z"}
    payload.update(over)
    return envelope("sms.inbound", **payload)


def outbound(status="delivered", **over) -> bytes:
    payload = {"id": "bird-msg-1", "channelId": "ch-paris", "reference": "in-1",
               "receiver": {"contacts": [{"identifierValue": "+" + SENDER}]},
               "status": status, "lastStatusAt": "2026-12-01T20:16:00.000Z",
               "price": {"amount": 0.16, "currency": "eur"}}
    payload.update(over)
    return envelope("sms.outbound", **payload)


# -- signature ---------------------------------------------------------------------------


def test_the_signature_is_the_documented_hmac_over_timestamp_url_and_body_hash():
    body = inbound()
    expected = hmac.new(KEY.encode(), str(NOW).encode() + b"\n" + URL.encode() + b"\n"
                        + hashlib.sha256(body).digest(), hashlib.sha256).digest()
    assert base64.b64decode(sign_bird(KEY, str(NOW), URL, body)) == expected
    verifier = BirdSignatureVerifier(KEY, clock=lambda: NOW + 10)
    assert verifier.verify(sign_bird(KEY, str(NOW), URL, body), str(NOW), URL, body) == NOW


@pytest.mark.parametrize("tamper", ["key", "url", "body", "timestamp"])
def test_a_forged_signature_is_refused(tamper):
    body, stamp, url, key = inbound(), str(NOW), URL, KEY
    signature = sign_bird("other" if tamper == "key" else key, stamp, url, body)
    verifier = BirdSignatureVerifier(KEY, clock=lambda: NOW)
    with pytest.raises(Unauthorized) as err:
        verifier.verify(signature, str(NOW - 1) if tamper == "timestamp" else stamp,
                        url + "?x" if tamper == "url" else url,
                        body + b" " if tamper == "body" else body)
    assert err.value.code == "invalid_signature"


@pytest.mark.parametrize("skew", [-301, 301, 10**6])
def test_a_stale_or_future_timestamp_is_refused_even_well_signed(skew):
    stamp = str(NOW + skew)
    verifier = BirdSignatureVerifier(KEY, clock=lambda: NOW)
    with pytest.raises(Unauthorized) as err:
        verifier.verify(sign_bird(KEY, stamp, URL, b"{}"), stamp, URL, b"{}")
    assert err.value.code == "stale_signature"


@pytest.mark.parametrize("signature,stamp,code", [
    (None, str(NOW), "missing_signature"), ("abc=", None, "missing_timestamp"),
    ("abc=", "12.5", "invalid_timestamp"), ("abc=", "-1", "invalid_timestamp"),
    ("not base64!", str(NOW), "invalid_signature"), ("\udcff", str(NOW), "invalid_signature"),
])
def test_missing_or_malformed_headers_are_refused(signature, stamp, code):
    with pytest.raises(Unauthorized) as err:
        BirdSignatureVerifier(KEY, clock=lambda: NOW).verify(signature, stamp, URL, b"{}")
    assert err.value.code == code and err.value.status == 401


def test_an_event_is_accepted_once_then_refused_until_forgotten():
    seen = SeenEvents(keep_s=300)
    seen.remember("e1", NOW, NOW)
    with pytest.raises(Unauthorized) as err:
        seen.remember("e1", NOW, NOW + 10)
    assert err.value.code == "replayed_event"
    seen.forget("e1")  # refused for a reason of ours (503): Bird's retry must pass
    seen.remember("e1", NOW, NOW + 20)
    seen.remember("e2", NOW, NOW + 1000)  # e1 is past its keep: dropped
    assert len(seen) == 1


# -- parsing -----------------------------------------------------------------------------


def test_an_inbound_sms_is_parsed_with_its_channel_and_the_number_in_e164_digits():
    event = parse_bird_event("application/json", inbound())
    assert event == BirdText("sms.inbound:96a0b5fa-a986:delivered", "ch-paris",
                             "96a0b5fa-a986", SENDER, "t'es ou ?", 1_796_156_100_000)


def test_a_non_text_inbound_is_screened_as_an_empty_text():
    event = parse_bird_event("application/json", inbound(body={"type": "image", "image": {}}))
    assert isinstance(event, BirdText) and event.body == ""


@pytest.mark.parametrize("status,mapped", [("delivered", "delivered"), ("sent", "sent"),
                                           ("accepted", "buffered"),
                                           ("sending_failed", "delivery_failed"),
                                           ("delivery_failed", "delivery_failed")])
def test_a_status_maps_to_the_classic_vocabulary_with_its_price(status, mapped):
    event = parse_bird_event("application/json", outbound(status))
    assert isinstance(event, BirdStatus)
    assert (event.status, event.bird_status, event.reference) == (mapped, status, "in-1")
    assert (event.price_micros, event.currency, event.recipient) == (160_000, "EUR", SENDER)


@pytest.mark.parametrize("raw", [
    envelope("whatsapp.inbound", id="x", channelId="c"),
    outbound(reference=None), outbound("opened"),
    inbound(direction="outgoing"),
])
def test_events_we_do_not_act_on_are_ignored_not_refused(raw):
    assert isinstance(parse_bird_event("application/json", raw), Ignored)


@pytest.mark.parametrize("raw,ctype,status,field", [
    (b"not json", "application/json", 400, None),
    (b"[]", "application/json", 400, None),
    (inbound(), "text/plain", 415, None),
    (b'{"event": "sms.inbound"}', "application/json", 422, "payload"),
    (inbound(sender={}), "application/json", 422, "payload.sender"),
    (inbound(sender={"contact": {"identifierValue": "+٣٣٦١٢٣٤٥٦٧٨"}}), "", 422,
     "payload.sender"),
    (inbound(id="a\nb"), "", 422, "payload.id"),
    (inbound(createdAt="yesterday"), "", 422, "payload.createdAt"),
    (outbound(price={"amount": "NaN"}), "", 422, "payload.price"),
    (outbound(receiver={"contacts": []}), "", 422, "payload.receiver"),
])
def test_malformed_events_are_clear_4xx_without_the_number(raw, ctype, status, field):
    with pytest.raises(BadRequest) as err:
        parse_bird_event(ctype, raw)
    assert err.value.status == status and err.value.field == field
    assert SENDER not in json.dumps(err.value.body())


def test_commands_and_facts_are_those_of_the_classic_provider_and_hold_no_number():
    privacy = Privacy(b"0123456789abcdef0123")
    builder = IntakeBuilder(pseudonym=privacy.pseudonym, seal=privacy.seal)
    text = parse_bird_event("", inbound())
    intake = intake_of(text, CAMPAIGN, builder, received_at=1_796_156_160_000)
    command = intake.command
    assert command.sender == privacy.pseudonym(SENDER)
    assert privacy.open(command.reply_to, campaign_id="paris", sender=command.sender) == SENDER
    info = classify(SENDER)
    assert (command.number_kind, command.country, command.prefix) == (info.kind, info.country,
                                                                      info.prefix)
    assert (command.campaign_id, command.occurred_at) == ("paris", 1_796_156_100_000)
    fact = delivery_fact_of(parse_bird_event("", outbound()), CAMPAIGN, builder, now_ms=1)
    assert (fact.message_id, fact.provider_message_id, fact.price_micros) == (
        "in-1", "bird-msg-1", 160_000)
    for shown in (repr(intake), repr(fact)):
        assert SENDER not in shown and SENDER[2:] not in shown


# -- the request handler (the view minus Faust) ------------------------------------------


def ports(stored: list, *, fail: bool = False, clock=lambda: NOW) -> BirdPorts:
    privacy = Privacy(b"0123456789abcdef0123")
    builder = IntakeBuilder(pseudonym=privacy.pseudonym, seal=privacy.seal)

    async def read_body(request):
        return request.body

    async def store(item):
        if fail:
            raise ConnectionError("broker away")
        stored.append(item)

    return BirdPorts(
        verifier=BirdSignatureVerifier(KEY, clock=clock), seen=SeenEvents(),
        campaign_for_channel={"ch-paris": CAMPAIGN}.get, read_body=read_body,
        signed_url=lambda request: URL,
        to_intake=lambda t, c: intake_of(t, c, builder, received_at=NOW * 1000),
        to_fact=lambda s, c: delivery_fact_of(s, c, builder, now_ms=0),
        store_text=store, store_report=store, clock=clock)


def request(body: bytes, *, key=KEY, stamp=NOW) -> SimpleNamespace:
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp),
               SIGNATURE_HEADER: sign_bird(key, str(stamp), URL, body)}
    return SimpleNamespace(headers=headers, body=body)


def test_handler_stores_once_refuses_a_replay_and_lets_a_retry_through_after_a_503():
    stored: list = []
    p = ports(stored)
    assert asyncio.run(handle_bird_request(p, request(inbound())))[0] == 200
    status, body = asyncio.run(handle_bird_request(p, request(inbound())))
    assert (status, body["error"]) == (401, "replayed_event") and len(stored) == 1
    failing = ports([], fail=True)
    assert asyncio.run(handle_bird_request(failing, request(inbound())))[0] == 503
    failing.store_text = p.store_text
    assert asyncio.run(handle_bird_request(failing, request(inbound())))[0] == 200


def test_handler_refuses_forged_and_stale_requests_storing_nothing():
    stored: list = []
    p = ports(stored)
    assert asyncio.run(handle_bird_request(p, request(inbound(), key="x")))[0] == 401
    assert asyncio.run(handle_bird_request(p, request(inbound(), stamp=NOW - 600)))[0] == 401
    assert stored == []


def test_a_text_on_an_unknown_channel_is_journaled_rejected_and_a_status_stored_nowhere():
    # given a text on a channel no campaign uses, then it is refused (404, Bird retries it)
    # and its refusal journaled, as a classic text to an unknown number is (no command)
    stored: list = []
    p = ports(stored)
    status, body = asyncio.run(handle_bird_request(p, request(inbound(channelId="ch-x"))))
    assert (status, body["error"]) == (404, "unknown_channel")
    (intake,) = stored
    assert intake.command is None
    (rejected,) = intake.facts
    assert (rejected.TYPE, rejected.message_id, rejected.reason) == (
        "TextRejected", "96a0b5fa-a986", "unknown_channel")
    # and its retry gets through again (the channel may be configured meanwhile);
    assert asyncio.run(handle_bird_request(p, request(inbound(channelId="ch-x"))))[0] == 404
    # a status on such a channel is refused and stored nowhere.
    stored.clear()
    assert asyncio.run(handle_bird_request(p, request(outbound(channelId="ch-x"))))[0] == 404
    assert stored == []
