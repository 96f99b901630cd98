"""Read the journal: the topic from Kafka (the whole history, or following it live), or an
export of it (JSON lines, as ``antirelou export`` writes them): the one reader of each.

Used at start-up (campaign shards rebuild their state from the decisions), by
``antirelou journal``, ``antirelou audit`` (its readers of a file, and the account of what
a broker lost) and by the tests; and the texts' bodies kept apart from it (``read_bodies``,
``follow_bodies``: streams.rules.retention). aiokafka is imported only to read Kafka.

Errors::

    BadLine      a line of an export that is not an event (says the file and line)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson

from infra.kafka_auth import client_options
from schemas import codec
from schemas.events import TextBodyKept

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition


class BadLine(ValueError):
    """A line of a JSON-lines journal file that is not an event; says the file and line."""


# An export's line before each partition's records (``antirelou export``): read as a blank.
PARTITION_LINE = b'{"partition":'


def plainly(line: bytes) -> bool:
    """Whether a journal line that begins with ``{"type":"NAME"`` is for sure of type NAME:
    it holds ``"type"`` once (no other type key) and no backslash (no escaped one). A
    reader may pass such a line over without decoding it when another reads it."""
    return line.count(b'"type"') == 1 and b"\\" not in line


def read_lines(f: IO[bytes], name: str,
               on_blank: Callable[[int], None] = lambda n: None,
               pass_over: bytes | tuple[bytes, ...] | None = None,
               noted: tuple[bytes, Callable[[dict], Any]] | None = None,
               ) -> Iterator[tuple[int, Any]]:
    """``(line number, event)`` for each line of a JSON-lines file; a blank line (or an
    export's partition line) is passed to ``on_blank`` and skipped; any other line that is
    not an event raises :class:`BadLine`.
    ``pass_over`` (e.g. ``b'{"type":"TextReceived",'``, or several): a line that begins with it and is
    ``plainly`` of that type is given as None, not decoded (nor checked: for a reader whose
    lines of that type another reads). ``noted``: ``(beginning, note)``, a line that begins
    so and is ``plainly`` of that type is given as ``note(payload)`` of its JSON object
    when that is not None (for a reader who needs only some fields, e.g. a
    ``streams.audit.VerdictNote``), else decoded as any line."""
    loads, from_dict = orjson.loads, codec.fast_from_dict
    noted_line, note = noted if noted is not None else (None, None)
    for n, line in enumerate(f, 1):
        if pass_over is not None and line.startswith(pass_over) and plainly(line):
            yield n, None
            continue
        try:
            if noted_line is not None and line.startswith(noted_line) and plainly(line):
                payload = loads(line)
                event = note(payload)
                if event is None:
                    event = from_dict(payload)
            else:
                event = from_dict(loads(line))
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                on_blank(n)
                continue
            raise BadLine(f"{name}:{n}: not JSON: {exc}") from None
        except codec.CodecError as exc:
            if line.startswith(PARTITION_LINE):
                on_blank(n)
                continue
            raise BadLine(f"{name}:{n}: {exc}") from None
        yield n, event


def read_file(path: str) -> Iterator[Any]:
    """Every event of a JSON-lines export, in order (blank lines skipped)."""
    with open(path, "rb") as f:
        for _, event in read_lines(f, path):
            yield event


async def _consumer(bootstrap: str, topic: str, only: int | None = None
                    ) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        request_timeout_ms=15_000, **client_options(),  # this process's Kafka user
    )
    try:
        await consumer.start()
        await consumer.topics()  # fetches the cluster's metadata for all topics
    except Exception:
        await consumer.stop()  # what start() left half open (the broker is away)
        raise
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.stop()
        return consumer, []
    tps = [TopicPartition(topic, p) for p in sorted(parts) if only is None or p == only]
    if not tps:
        await consumer.stop()
        return consumer, []
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def iter_records(
    bootstrap: str, topic: str, follow: bool = False, start: dict[int, int] | None = None,
    only: int | None = None,
) -> AsyncIterator[tuple[int, int, bytes | None, bytes]]:
    """Yield (partition, offset, key, value) from ``start`` offsets (default: the beginning);
    stop at the end unless following. ``only``: that partition's records alone."""
    consumer, tps = await _consumer(bootstrap, topic, only)
    if not tps:
        return
    try:
        for tp in tps:
            if start and start.get(tp.partition):
                consumer.seek(tp, start[tp.partition])
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > (start or {}).get(tp.partition, 0)}
        while follow or remaining:
            batches = await consumer.getmany(*tps, timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    yield tp.partition, r.offset, r.key, r.value
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()


async def iter_by_partition(bootstrap: str, topic: str
                            ) -> AsyncIterator[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of every record, partition after partition, each in
    offset order (an export that can be verified: ``infra.verify``)."""
    for partition in sorted(await end_offsets(bootstrap, topic)):
        async for record in iter_records(bootstrap, topic, only=partition):
            yield record


async def iter_journal(
    bootstrap: str, topic: str, follow: bool = False, start: dict[int, int] | None = None
) -> AsyncIterator[tuple[int, int, Any]]:
    """Yield (partition, offset, event) from ``start`` (default: the beginning)."""
    async for partition, offset, _, value in iter_records(bootstrap, topic, follow, start):
        yield partition, offset, codec.decode(value)


def _kept_body(value: bytes | None) -> tuple[str, str] | None:
    """(message id, body) of a bodies-topic record; None for one that is not a body."""
    try:
        kept = codec.decode(value)  # type: ignore[arg-type]
    except (codec.CodecError, TypeError):
        return None
    return (kept.message_id, kept.body) if isinstance(kept, TextBodyKept) else None


async def read_bodies(bootstrap: str, topic: str) -> dict[str, str]:
    """The texts' bodies still kept on the bodies topic, by message id
    (streams.rules.retention); what is not a body is passed over."""
    bodies: dict[str, str] = {}
    async for _, _, _, value in iter_records(bootstrap, topic):
        kept = _kept_body(value)
        if kept is not None:
            bodies[kept[0]] = kept[1]
    return bodies


async def follow_bodies(bootstrap: str, topic: str, bodies: dict[str, str],
                        caught_up: asyncio.Event) -> None:
    """Keep ``bodies`` filled from the bodies topic, for ever (``journal --follow``);
    ``caught_up`` is set once what the topic held at the start is read."""
    ends = await end_offsets(bootstrap, topic)
    left = {p for p, end in ends.items() if end > 0}
    if not left:
        caught_up.set()
    async for partition, offset, _, value in iter_records(bootstrap, topic, follow=True):
        kept = _kept_body(value)
        if kept is not None:
            bodies[kept[0]] = kept[1]
        if left and offset + 1 >= ends.get(partition, 0):
            left.discard(partition)
            if not left:
                caught_up.set()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer, tps = await _consumer(bootstrap, topic)
    if not tps:
        return {}
    try:
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def latest_by_key(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The last value of every key (what a compacted topic converges to)."""
    return {key: value async for _, _, key, value in iter_records(bootstrap, topic)
            if key is not None}


async def read_journal_async(bootstrap: str, topic: str) -> list[Any]:
    return [event async for _, _, event in iter_journal(bootstrap, topic)]


def read_journal(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(read_journal_async(bootstrap, topic))


@dataclass(frozen=True)
class KafkaJournal:
    """The journal and snapshot topics of one cluster, as the campaign shards recover from
    them (``actors.remote.JournalSource``; picklable, for Ray)."""

    kafka: str

    def events(self, topic: str, start: dict[int, int] | None = None
               ) -> AsyncIterator[tuple[int, int, Any]]:
        return iter_journal(self.kafka, topic, start=start)

    async def latest_by_key(self, topic: str) -> dict[bytes, bytes]:
        return await latest_by_key(self.kafka, topic)
