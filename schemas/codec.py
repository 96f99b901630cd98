"""The one codec: events and commands to and from orjson bytes; and the plain data the
workers keep as bytes (campaign snapshots, sender table values), so nothing else
serialises.

Wire form: a JSON object with ``type`` (a stable name, never a class path), ``v`` (the
schema version) and the dataclass fields. Decoding an older version runs the registered
upcasters ``(type, version) -> payload of version + 1`` until the current version.

Errors::

    CodecError            bytes that cannot become a known message
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

import orjson

from schemas.commands import COMMAND_TYPES
from schemas.events import EVENT_TYPES
from schemas.frozen import builder
from schemas.reasons import PROVIDER_REJECTED, PROVIDER_UNAVAILABLE, REPLY_TO_LOST


class CodecError(ValueError):
    """Bytes that are not a known, well-formed message."""


_BY_NAME: dict[str, type] = {cls.TYPE: cls for cls in (*EVENT_TYPES, *COMMAND_TYPES)}
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _BY_NAME.values()
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn(payload_vN) -> payload_vN+1`` for one message type."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def to_dict(message: Any) -> dict[str, Any]:
    cls = type(message)
    out: dict[str, Any] = {"type": cls.TYPE, "v": cls.SCHEMA_VERSION}
    for name in _FIELDS[cls]:
        out[name] = getattr(message, name)
    return out


def encode(message: Any) -> bytes:
    return orjson.dumps(to_dict(message))


def from_dict(payload: dict[str, Any]) -> Any:
    try:
        type_name = payload["type"]
        version = payload["v"]
    except (KeyError, TypeError) as exc:
        raise CodecError("message has no 'type' and 'v'") from exc
    cls = _BY_NAME.get(type_name)
    if cls is None:
        raise CodecError(f"unknown message type {type_name!r}")
    if not isinstance(version, int) or version < 1 or version > cls.SCHEMA_VERSION:
        raise CodecError(f"{type_name}: unsupported schema version {version!r}")
    while version < cls.SCHEMA_VERSION:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise CodecError(f"{type_name}: no upcaster from version {version}")
        payload = step(payload)
        version += 1
    try:
        return cls(**{name: payload[name] for name in _FIELDS[cls]})
    except KeyError as exc:
        raise CodecError(f"{type_name}: missing field {exc.args[0]!r}") from None


# The payload's fields in the class's order, as a tuple.
def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return itemgetter(*names)
    name = names[0]
    return lambda payload: (payload[name],)  # itemgetter of one name gives no tuple


# For each type name: (current version, the builder of an instance from a current payload).
_CURRENT: dict[str, tuple[int, Callable[[dict[str, Any]], Any]]] = {
    name: (cls.SCHEMA_VERSION, builder(cls, _getter(_FIELDS[cls])))  # type: ignore[attr-defined]
    for name, cls in _BY_NAME.items()
}


def fast_from_dict(payload: dict[str, Any]) -> Any:
    """:func:`from_dict`, the same value or the same error, at a little over half its cost for a
    payload of the current version (the fields taken in one ``itemgetter`` call, the
    message made by ``schemas.frozen.builder``: no ``__init__`` call); anything else (an
    old version, a missing field, not a message) goes through :func:`from_dict` itself. For
    the readers of whole journals (the audit's)."""
    try:
        version, build = _CURRENT[payload["type"]]
        v = payload["v"]
        if v.__class__ is int and v == version:
            return build(payload)
    except (KeyError, TypeError):
        pass
    return from_dict(payload)


def decode(data: bytes) -> Any:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CodecError("message is not a JSON object")
    return from_dict(payload)


def decode_many(items: Iterable[bytes]) -> list[Any]:
    return [decode(item) for item in items]


def dump_data(data: Any) -> bytes:
    """Plain data (dicts, lists, strings, numbers) as JSON bytes: snapshots, table values."""
    return orjson.dumps(data)


def load_data(data: bytes) -> Any:
    """What :func:`dump_data` wrote; ValueError (orjson's) for bytes that are not JSON."""
    return orjson.loads(data)


# --- upcasters: one function per (type, old version) ------------------------------------
# Version 1 of these events predates live policy: every decision then used the campaign
# file's policy, which is version 1.


@upcaster("SenderScreened", 1)
def _screened_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "policy_version": 1}


@upcaster("ReplyApproved", 1)
def _approved_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "policy_version": 1}


@upcaster("ReplyDenied", 1)
def _denied_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "policy_version": 1}


@upcaster("TextReceived", 1)
def _received_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Before v2 the edge did not classify numbers: "unknown" skips the number rules.
    return {**payload, "number_kind": "unknown", "country": None, "prefix": ""}


@upcaster("ReplyCostReconciled", 1)
def _reconciled_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "reported_micros": None}  # no cap before v2


@upcaster("ReplyFailed", 1)
def _failed_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Before v2 a reply was tried once.
    return {**payload, "attempts": 1}


@upcaster("ReplyFailed", 2)
def _failed_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    # Before v3 the reason was read from the error: the decide stage's "reply_to_lost: ...",
    # else the gateway's kind of error (retryable: unavailable, else rejected).
    if payload["error"].startswith(REPLY_TO_LOST):
        reason = REPLY_TO_LOST
    else:
        reason = PROVIDER_UNAVAILABLE if payload["retryable"] else PROVIDER_REJECTED
    return {**payload, "reason": reason}


# v3 of the campaign decisions carries the sender's number range (for the per-prefix rate
# limit) and, on approvals, when to send. Before v3 there was no range and no delay.


@upcaster("ReplyApproved", 2)
def _approved_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "prefix": "", "send_at": payload["occurred_at"], "deferred_at": None}


@upcaster("ReplyDenied", 2)
def _denied_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "prefix": ""}


# Commands on the work topics: a request or send queued by an older worker.


@upcaster("RequestReply", 1)
def _request_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "prefix": "", "texts_from_sender": 1}


@upcaster("ReplyDeferred", 1)
def _deferred_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "priority": payload["texts_from_sender"]}  # v1 ranked by texts alone


@upcaster("SendReply", 1)
def _send_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "send_at": None}


# Content evidence (issue 28): the word keys of a text and the sender's other campaigns; a
# request's safety delay; a surge's spend bound. Absent before: no words, no other campaign,
# judged at once, no bound recorded (a field the payload has is kept).


@upcaster("SenderScreened", 2)
def _screened_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", "other_campaigns": 0, **payload}


@upcaster("ReplyApproved", 3)
def _approved_v3_v4(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", "texts_from_sender": 1, **payload}


@upcaster("ReplyDenied", 3)
def _denied_v3_v4(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", "texts_from_sender": 1, **payload}


@upcaster("ReplyDeferred", 2)
def _deferred_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", "hold_until": 0, **payload}


@upcaster("ReplyPromoted", 1)
def _promoted_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", **payload}


@upcaster("SurgeStarted", 1)
def _surge_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"spend_cap_micros": 0, **payload}


@upcaster("RequestReply", 2)
def _request_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", "other_campaigns": 0, **payload}


@upcaster("ReviewRequest", 1)
def _review_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"words": "", **payload}


# Bodies kept apart for their retention (issue 31): a text carries what the decisions read
# of its body. Absent before: read from the body, which the text then held.


@upcaster("TextReceived", 2)
def _received_v2_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"test_text": None, "words": None, **payload}


@upcaster("ScreenText", 1)
def _screen_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"test_text": None, "words": None, **payload}
