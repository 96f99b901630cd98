"""``read_bounded``: the webhook body, whole, refused past the limit or when it is slow; a
body already buffered is taken at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from unittest import mock

import pytest
from aiohttp.streams import StreamReader

from streams.intake.errors import BadRequest
from streams.intake.fields import MAX_BODY_BYTES
from streams.stages.webhooks import read_bounded


def request(parts: list[bytes], *, eof: bool = True, length: int | None = None,
            later: list[bytes] | None = None) -> SimpleNamespace:
    loop = asyncio.get_running_loop()
    content = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
    for part in parts:
        content.feed_data(part)
    if eof and not later:
        content.feed_eof()
    if later:  # the rest arrives after the first read waited
        def feed() -> None:
            for part in later:
                content.feed_data(part)
            content.feed_eof()
        loop.call_soon(feed)
    size = length if length is not None else sum(map(len, parts + (later or [])))
    return SimpleNamespace(content=content, content_length=size)


def run(make, timeout_s: float | None = 5.0):
    async def go():
        return await read_bounded(make(), timeout_s)
    return asyncio.run(go())


def test_a_buffered_body_is_read_whole():
    assert run(lambda: request([b"id=1&", b"body=x"])) == b"id=1&body=x"
    assert run(lambda: request([])) == b""


def test_a_body_in_several_packets_is_read_whole():
    assert run(lambda: request([b"id=1"], later=[b"&body=", b"x"])) == b"id=1&body=x"
    assert run(lambda: request([], later=[b"id=1"])) == b"id=1"


@pytest.mark.parametrize("parts, later", [([b"x" * (MAX_BODY_BYTES + 1)], None),
                                          ([b"x" * MAX_BODY_BYTES], [b"y"]),
                                          ([b"x" * 10], [b"y" * MAX_BODY_BYTES])])
def test_a_body_past_the_limit_is_413(parts, later):
    with pytest.raises(BadRequest) as exc:
        run(lambda: request(parts, later=later, length=0))  # no Content-Length to go by
    assert exc.value.status == 413


def test_a_declared_length_past_the_limit_is_413_before_reading():
    with pytest.raises(BadRequest) as exc:
        run(lambda: request([b"x"], length=MAX_BODY_BYTES + 1))
    assert exc.value.status == 413


def test_a_body_that_never_ends_is_408():
    with pytest.raises(BadRequest) as exc:
        run(lambda: request([b"id=1"], eof=False), timeout_s=0.05)
    assert exc.value.status == 408 and exc.value.code == "slow_body"
