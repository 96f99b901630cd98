"""Fuzzing Bird's webhook handling in process: whatever arrives, the answer is a 2xx or a
4xx with a JSON body that holds no phone number; never a 5xx, never another exception."""

from __future__ import annotations

import asyncio
import copy
import json
from types import SimpleNamespace

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.bird_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_bird
from streams.intake.bird import BirdStatus, BirdText, Ignored, handle_bird_request, parse_bird_event
from streams.intake.errors import BadRequest
from tests.intake.test_bird import KEY, NOW, SENDER, URL, inbound, outbound, ports

FUZZ = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

any_char = st.characters(codec=None, categories=None)
odd = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(), st.text(any_char, max_size=30),
    st.sampled_from(["", "\x00", "\ud800", "+" + SENDER, "+٣٣٦١٢٣٤٥٦٧٨", SENDER + "\n",
                     "2026-12-01T20:15:00Z", "0001-01-01T00:00:00+23:59", "NaN", "1e999",
                     "text", "sms.inbound", "sms.outbound", "delivered", "incoming"]),
)
json_value = st.recursive(odd, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                          max_leaves=6)
PATHS = [("event",), ("service",), ("payload",), ("payload", "id"), ("payload", "channelId"),
         ("payload", "status"), ("payload", "reference"), ("payload", "direction"),
         ("payload", "createdAt"), ("payload", "lastStatusAt"), ("payload", "sender"),
         ("payload", "sender", "contact"), ("payload", "sender", "contact", "identifierValue"),
         ("payload", "body"), ("payload", "body", "type"), ("payload", "body", "text"),
         ("payload", "body", "text", "text"), ("payload", "receiver"),
         ("payload", "receiver", "contacts"), ("payload", "price"),
         ("payload", "price", "amount"), ("payload", "price", "currency"), ("payload", "reason")]


@st.composite
def bodies(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    data = json.loads(draw(st.sampled_from([inbound(), outbound(), outbound("sent")])))
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=4)):
        node = data
        for key in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            if draw(st.booleans()):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = copy.deepcopy(draw(json_value))
    try:
        return orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits
        return json.dumps(data).encode(errors="surrogatepass")


@FUZZ
@given(raw=bodies(), ctype=st.sampled_from(["application/json", "", "application/json; x=1",
                                            "text/plain", "\udcff"]))
def test_the_parser_returns_an_event_or_a_clear_4xx(raw, ctype):
    try:
        event = parse_bird_event(ctype, raw)
    except BadRequest as exc:
        assert 400 <= exc.status < 500
        shown = json.dumps(exc.body())
        assert SENDER not in shown and SENDER[2:] not in shown
        return
    assert isinstance(event, BirdText | BirdStatus | Ignored)
    if isinstance(event, BirdText):
        assert event.originator.isascii() and event.originator.isdigit()


@FUZZ
@given(raw=bodies(), sign=st.sampled_from(["good", "forged", "stale", "none", "garbage"]),
       garbage=st.text(any_char, max_size=40))
def test_the_handler_never_answers_5xx(raw, sign, garbage):
    stored: list = []
    stamp = str(NOW - 3600 if sign == "stale" else NOW)
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp}
    if sign in ("good", "stale"):
        headers[SIGNATURE_HEADER] = sign_bird(KEY, stamp, URL, raw)
    elif sign == "forged":
        headers[SIGNATURE_HEADER] = sign_bird("not-the-key", stamp, URL, raw)
    elif sign == "garbage":
        headers[SIGNATURE_HEADER] = garbage
        headers[TIMESTAMP_HEADER] = garbage
    status, body = asyncio.run(handle_bird_request(ports(stored),
                                                   SimpleNamespace(headers=headers, body=raw)))
    assert 200 <= status < 500, (status, body)
    shown = json.dumps(body)
    assert SENDER not in shown and SENDER[2:] not in shown
    if sign != "good":
        assert status == 401 and stored == []
