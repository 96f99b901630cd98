"""The in-memory tables read back in bulk (infra/faust/patches.py ``bulk_read``) from a real
broker's changelog topic: the table ends as Faust's own apply of the same records leaves it
(a value, a newer one, a tombstone, two partitions, the partition kept per key), the offsets
move to the highwaters, a start offset is honoured, a record whose key does not decode is
skipped and passed (the last of its partition included: Faust's loop waited for it for
ever), tables Faust must read itself are left to it, a rebalance stops the read, and the
decoder's short ways answer as Faust's decoding on arbitrary bytes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import faust
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.faust.patches import (
    bulk_health,
    bulk_read,
    changelog_decoder,
    install_bulk_recovery,
)
from infra.kafka_admin import ensure_topics_async
from streams.app import TextPartitionedTable

BAD_KEY = b"\xffnot json"


def records() -> list[tuple[int, bytes, bytes | None]]:
    """(partition, raw key, raw value) in the order written."""
    k = orjson.dumps
    return [
        (0, k("a"), b"1"), (1, k("c"), b"3"), (0, k("b"), b"2"), (0, k("a"), b"4"),
        (1, k("d"), b"5"), (0, k("b"), None), (1, BAD_KEY, b"6"), (1, k("e"), b"7"),
        (0, k("f"), b"8"), (1, BAD_KEY, b"9"),  # partition 1 ends on a bad key
    ]


def new_table(kafka: str, name: str) -> tuple[faust.App, faust.Table]:
    app = faust.App(f"bulk-{name}", broker=f"kafka://{kafka}", store="memory://")
    table = app.tables.add(TextPartitionedTable(  # as the worker's per-sender table
        app, name=name, default=None, partitions=2, key_type=str, value_serializer="raw"))
    return app, table


async def write(kafka: str, topic: str) -> dict[TP, int]:
    """The records to ``topic``; the highwater (last offset) of each partition."""
    await ensure_topics_async(kafka, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    last: dict[TP, int] = {}
    try:
        for partition, key, value in records():
            meta = await producer.send_and_wait(topic, value, key=key, partition=partition)
            last[TP(topic, partition)] = meta.offset
    finally:
        await producer.stop()
    return last


def faust_apply(app: faust.App, table: faust.Table, topic: str, start: dict[int, int]) -> None:
    """The same records applied as Faust's recovery would (Events of the decoded key and
    value, keys that do not decode dropped), from offset ``start[partition] + 1``."""
    offset = Counter()
    events = []
    for partition, key, value in records():
        at, offset[partition] = offset[partition], offset[partition] + 1
        if key == BAD_KEY or at <= start[partition]:
            continue
        message = Message(topic, partition, at, 0.0, 0, [], key, value, None)
        events.append(Event(app, orjson.loads(key), value, {}, message))
    table.apply_changelog_batch(events)


class FaustOffsets:
    """Faust's ``Recovery._build_offsets`` as it ends with nothing persisted and the earliest
    offset 0: -1 for every partition (a subclass per test, for the install to wrap)."""

    async def _build_offsets(self, consumer, tps, destination, title):  # noqa: ANN001
        for tp in tps:
            destination[tp] = -1


def prepare(app: faust.App, table: faust.Table, highwaters: dict[TP, int],
            start: dict[int, int]) -> tuple[Counter, set[TP]]:
    recovery = app.tables.recovery
    tps = set(highwaters)
    recovery.active_tps, recovery.tp_to_table = tps, {tp: table for tp in tps}
    recovery.active_highwaters = Counter(highwaters)
    recovery.active_offsets = Counter({tp: start[tp.partition] for tp in tps})  # as Faust's
    return recovery.active_offsets, tps


@pytest.mark.parametrize("start", [{0: -1, 1: -1}, {0: 2, 1: -1}], ids=["all", "from-offset"])
def test_bulk_read_leaves_the_table_as_faust_would(kafka, start) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    app, table = new_table(kafka, name)
    topic = table.changelog_topic.get_topic_name()
    highwaters = asyncio.run(write(kafka, topic))
    offsets, tps = prepare(app, table, highwaters, start)

    applied = asyncio.run(bulk_read(app.tables.recovery, tps, offsets))

    twin_app, twin = new_table(kafka, name)
    faust_apply(twin_app, twin, topic, start)
    assert dict(table.data.items()) == dict(twin.data.items())
    assert table.data._key_partition == twin.data._key_partition  # type: ignore[attr-defined]
    if start[0] == -1:
        assert dict(table.data.items()) == {"a": b"4", "c": b"3", "d": b"5", "e": b"7",
                                            "f": b"8"}
    else:  # partition 0 from offset 3: b's tombstone (nothing to delete), then f
        assert dict(table.data.items()) == {"c": b"3", "d": b"5", "e": b"7", "f": b"8"}
    assert applied == sum(1 for p, k, _ in records() if k != BAD_KEY) - (start[0] + 1)
    assert offsets == Counter(highwaters)  # both read to the end, the bad last key passed
    assert app.tables.recovery.need_recovery() is False
    assert bulk_health(app.tables.recovery) == {"read_in_bulk": applied,
                                                "undecodable_skipped": 2}


def test_what_faust_must_read_is_left_to_it(kafka) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    app, table = new_table(kafka, name)
    topic = table.changelog_topic.get_topic_name()
    highwaters = asyncio.run(write(kafka, topic))

    async def callback(event: Event) -> None:  # a table that sees each changelog event
        pass

    table._on_changelog_event = callback
    offsets, tps = prepare(app, table, highwaters, {0: -1, 1: -1})
    assert asyncio.run(bulk_read(app.tables.recovery, tps, offsets)) == 0
    assert offsets == Counter({tp: -1 for tp in tps}) and not dict(table.data.items())

    table._on_changelog_event = None
    app.tables.recovery.signal_recovery_start.set()  # a rebalance: Faust starts again
    assert asyncio.run(bulk_read(app.tables.recovery, tps, offsets)) == 0
    assert offsets == Counter({tp: -1 for tp in tps})


def test_installed_around_fausts_offsets(kafka) -> None:
    from faust.tables.recovery import Recovery

    class Fake(FaustOffsets):
        pass

    assert install_bulk_recovery(True, Fake) and install_bulk_recovery(True, Fake)
    assert Fake._build_offsets.antirelou_bulk  # type: ignore[attr-defined]
    assert install_bulk_recovery(False, Fake) is False
    name = f"t{uuid.uuid4().hex[:8]}"
    app, table = new_table(kafka, name)
    highwaters = asyncio.run(write(kafka, table.changelog_topic.get_topic_name()))
    offsets, tps = prepare(app, table, highwaters, {0: -1, 1: -1})
    recovery = app.tables.recovery
    asyncio.run(Fake._build_offsets(recovery, None, tps, offsets, "standby"))
    assert offsets == Counter({tp: -1 for tp in tps})  # standbys: Faust's
    asyncio.run(Fake._build_offsets(recovery, None, tps, offsets, "active"))
    assert offsets == Counter(highwaters) and table.data["f"] == b"8"
    assert asyncio.iscoroutinefunction(Recovery._build_offsets)


def fausts_decode(app: faust.App, schema, record) -> tuple:
    """What Faust's compiled decode of the changelog topic gives: (key, value), or the
    error class it raises for the record."""
    try:
        key = schema.loads_key(app, record)
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc))
    try:
        if record.value is None and schema.allow_empty:
            return (key, None)
        return (key, schema.loads_value(app, record))
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc))


def ours(decode, record) -> tuple:
    try:
        return decode(record)
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc))


json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
).map(lambda v: json.dumps(v, ensure_ascii=False).encode())  # big integers too
raw_bytes = st.none() | st.binary(max_size=40) | json_texts | st.text().map(str.encode)


@settings(max_examples=400, deadline=None)
@given(key=raw_bytes, value=raw_bytes)
def test_the_decoders_short_ways_give_fausts_answers(key, value) -> None:
    from streams.app import build_tables

    app = faust.App("bulk-decode", store="memory://")
    worker = build_tables(app, 2)  # the worker's own tables: sender states (raw), replies, deferred
    tables = [worker.senders_by_pseudonym, worker.replies_by_message, worker.deferred_reply_to,
              app.Table("m", default=None, partitions=2, key_type=int, value_type=bytes)]
    record = ConsumerRecord("t", 0, 7, 0, 0, key, value, None, 0, 0, [])
    for table in tables:
        schema = table.changelog_topic.schema
        assert ours(changelog_decoder(app, schema), record) == fausts_decode(app, schema, record)


def test_a_broker_away_leaves_it_all_to_fausts_loop(caplog) -> None:
    class Fake(FaustOffsets):
        pass

    assert install_bulk_recovery(True, Fake)
    app, table = new_table("127.0.0.1:9", f"t{uuid.uuid4().hex[:8]}")  # nothing listens
    topic = table.changelog_topic.get_topic_name()
    offsets, tps = prepare(app, table, {TP(topic, 0): 4, TP(topic, 1): 2}, {0: -1, 1: -1})
    # Must not raise: an exception here would crash Faust's recovery service.
    asyncio.run(Fake._build_offsets(app.tables.recovery, None, tps, offsets, "active"))
    assert offsets == Counter({tp: -1 for tp in tps}) and not dict(table.data.items())
    assert app.tables.recovery.need_recovery() is True  # Faust's loop reads it all
    assert "table recovery in bulk failed" in caplog.text
