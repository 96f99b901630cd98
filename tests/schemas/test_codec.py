"""The one codec: every message round-trips; bad bytes give a clear CodecError."""

import dataclasses

import orjson
import pytest

from schemas import codec
from schemas.commands import COMMAND_TYPES
from schemas.events import EVENT_TYPES, TextReceived


def sample(cls):
    values = {}
    for f in dataclasses.fields(cls):
        values[f.name] = {"str": "x", "int": 7, "bool": True}.get(f.type, None)
    return cls(**values)


@pytest.mark.parametrize("cls", EVENT_TYPES + COMMAND_TYPES, ids=lambda c: c.TYPE)
def test_every_message_round_trips(cls):
    message = sample(cls)
    data = codec.encode(message)
    assert codec.decode(data) == message
    assert codec.to_dict(message)["type"] == cls.TYPE


def test_type_names_are_unique_and_not_class_paths():
    names = [c.TYPE for c in EVENT_TYPES + COMMAND_TYPES]
    assert len(set(names)) == len(names)
    assert all("." not in n for n in names)


@pytest.mark.parametrize("data, message", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"type": "Nope", "v": 1}', "unknown message type"),
    (b'{"type": "TextReceived", "v": 99}', "unsupported schema version"),
    (b'{"type": "TextReceived", "v": 1, "message_id": "m"}', "missing field"),
])
def test_bad_bytes_give_a_clear_error(data, message):
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(data)


def test_a_version_1_text_is_upcast_with_unknown_number_facts():
    old = (b'{"type":"TextReceived","v":1,"message_id":"m","campaign_id":"c","sender":"s",'
           b'"body":"","occurred_at":1}')
    assert codec.decode(old) == TextReceived(message_id="m", campaign_id="c", sender="s", body="",
                                             occurred_at=1, number_kind="unknown", country=None, prefix="")


@pytest.mark.parametrize("error, retryable, reason", [
    ("GatewayRejected: 422 bad recipient", False, "provider_rejected"),
    ("GatewayUnavailable: 503", True, "provider_unavailable"),
    ("reply_to_lost: the sealed number is gone", False, "reply_to_lost"),
])
def test_an_older_failed_reply_is_given_its_reason_from_its_error(error, retryable, reason):
    # given ReplyFailed of versions 1 and 2 (before the reason), then the reason the send
    # stage would have given them
    for version, attempts in ((1, {}), (2, {"attempts": 3})):
        old = orjson.dumps({"type": "ReplyFailed", "v": version, "message_id": "m",
                            "campaign_id": "c", "sender": "s", "error": error,
                            "retryable": retryable, "occurred_at": 1, **attempts})
        failed = codec.decode(old)
        assert failed.reason == reason and failed.attempts == attempts.get("attempts", 1)


def test_a_missing_upcaster_is_a_clear_error(monkeypatch):
    monkeypatch.delitem(codec._UPCASTERS, ("TextReceived", 1))
    with pytest.raises(codec.CodecError, match="no upcaster from version 1"):
        codec.decode(b'{"type":"TextReceived","v":1}')


def _outcome(fn, payload):
    try:
        value = fn(payload)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("error", type(exc), str(exc))
    return ("value", type(value), value)


@pytest.mark.parametrize("cls", EVENT_TYPES + COMMAND_TYPES, ids=lambda c: c.TYPE)
def test_the_fast_decoder_gives_what_from_dict_gives(cls):
    payload = codec.to_dict(sample(cls))
    first = dataclasses.fields(cls)[0].name
    variants = [
        payload,
        {**payload, "extra": 1},  # extra keys are ignored by both
        dict(reversed(list(payload.items()))),  # key order does not matter
        {k: v for k, v in payload.items() if k != first},  # a missing field
        {**payload, "v": 1},  # an old version: upcast (or no upcaster)
        {**payload, "v": float(payload["v"])},  # not an int
        {**payload, "v": True},
        {**payload, "v": payload["v"] + 1},
        {k: v for k, v in payload.items() if k != "v"},
        {**payload, "type": "Nope"},
        [payload],
        "text",
    ]
    for variant in variants:
        assert _outcome(codec.fast_from_dict, variant) == _outcome(codec.from_dict, variant)
