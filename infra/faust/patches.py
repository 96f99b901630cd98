"""Faust's consumer hands each fetched record to its streams without four tasks per record.

faust-streaming 0.15.3's ``Consumer._drain_messages`` delivers every record it fetched with

    await self.wait_first(callback(message), self.suspend_flow.wait())

and mode's ``Service.wait_first`` makes a task of each argument and of the service's
``stopped`` and ``crashed`` events (four tasks), waits on them with ``asyncio.wait`` and
cancels the three losers: for every record, although the callback (the conductor putting
the event in its streams' queues) nearly always finishes at once. py-spy (2026-12-02) put a
fifth of the worker's CPU in the event loop and this path at the top of Faust's share.

:func:`install_eager_delivery` gives Faust's ``Consumer`` a ``wait_first`` that, for such a
call (a coroutine, then the wait of an ``asyncio.Event`` that is not set, the consumer neither
stopped nor crashed), first runs the coroutine in place up to its first wait:

- it finishes without waiting (a queue with room): that is what ``wait_first`` would have
  returned, the coroutine the winner; no task, no ``asyncio.wait``;
- it waits (a full queue, a lock held): the rest of it goes to the original ``wait_first``,
  raced against the event as before, so a rebalance (``suspend_flow``) still interrupts a
  delivery blocked on a full stream.

Every other call, and every call while the event is set or the consumer stopping, goes to
the original unchanged. Faust is pinned (0.15.3); if its ``Consumer`` or mode's ``Service``
lacks ``wait_first`` this logs a warning and does nothing. ``ANTIRELOU_EAGER_DELIVERY=0``
turns it off (for a before/after benchmark).

:func:`install_batched_recovery` (below) does the like for the tables' recovery: Faust's
loop reading the changelogs back takes the records in passes, not one task per record.
:func:`install_bulk_recovery` goes further for the in-memory tables: one plain consumer
reads their changelog partitions before that loop, which then has nothing left to read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import types
from collections.abc import Coroutine, Generator
from typing import Any

log = logging.getLogger("antirelou")

_EVENT_WAIT = asyncio.Event.wait.__code__


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """The rest of ``coro``, which was sent None once and yielded ``waiting``: what the event
    loop sends or throws goes on to it (as ``yield from`` would), its result is ours."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation included: it is the coroutine's to see
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value


async def _rest(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    return await resume(coro, waiting)


def unset_event_wait(coro: Any) -> bool:
    """``coro`` is ``asyncio.Event.wait()`` not started, of an event that is not set."""
    if getattr(coro, "cr_code", None) is not _EVENT_WAIT or coro.cr_frame is None:
        return False
    event = coro.cr_frame.f_locals.get("self")
    return isinstance(event, asyncio.Event) and not event.is_set()


def switched_on(enabled: bool | None, variable: str) -> bool:
    """``enabled`` if given, else the environment ``variable`` is not "0"."""
    return os.environ.get(variable, "1") != "0" if enabled is None else enabled


def install_eager_delivery(enabled: bool | None = None, cls: Any = None) -> bool:
    """Install the eager ``wait_first`` on Faust's Consumer (``cls``: another mode Service
    class, for tests), once; True when installed."""
    if not switched_on(enabled, "ANTIRELOU_EAGER_DELIVERY"):
        return False
    from mode.services import WaitResults

    if cls is None:
        from faust.transport.consumer import Consumer as cls

    original = getattr(cls, "wait_first", None)
    if original is None:
        log.warning("%s has no wait_first: records are delivered as before", cls.__name__)
        return False
    if getattr(original, "antirelou_eager", False):
        return True

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
                and unset_event_wait(coros[1])
                and not self._stopped.is_set() and not self._crashed.is_set()):
            deliver, flow = coros
            try:
                waiting = deliver.send(None)
            except StopIteration as done:
                flow.close()  # never started: closing it is all it needs
                return WaitResults([deliver], [done.value], False)
            except BaseException:
                flow.close()
                raise
            return await original(self, _rest(deliver, waiting), flow)
        return await original(self, *coros, timeout=timeout)

    wait_first.antirelou_eager = True  # type: ignore[attr-defined]
    cls.wait_first = wait_first
    return True


# ------------------------------------------------------------------ the tables' recovery

RECOVERY_BATCH = 1000  # changelog events taken from the queue at most per pass


def install_batched_recovery(enabled: bool | None = None, cls: Any = None) -> bool:
    """Give Faust's table ``Recovery`` a ``_slurp_changelogs`` that takes what the changelog
    queue holds in one pass (up to :data:`RECOVERY_BATCH` events) instead of one event per
    ``asyncio.wait_for`` (a task each in Python 3.11), and asks whether recovery is done
    (every active changelog partition's remaining count) once per pass, not per event.

    faust-streaming 0.15.3's loop did both for every changelog record, and formatted two
    debug f-strings each time: a worker given a table of 50,000-200,000 senders read them
    back at 5,000-6,800 records/s (130-180 µs of CPU each), this loop at 11,600-16,100 (about
    50 µs), while a bare consumer reads that changelog at 160,000 and more
    (tests/benchmarks/README.md, "the tables' recovery"). The queue filled, so each
    record's delivery also took mode's four-task ``wait_first``.

    What each event does is Faust's: the offset kept if newer than the one seen, the event
    buffered and its table's ``on_changelog_event`` awaited, a full buffer applied, the
    processing-time samples Faust's estimate of the time left reads. One change: an event
    of a partition neither active nor standby is skipped with a warning (Faust's loop fell
    through and appended it to the previous event's table). ``ANTIRELOU_BATCHED_RECOVERY=0``
    turns it off (before/after benchmarks)."""
    if not switched_on(enabled, "ANTIRELOU_BATCHED_RECOVERY"):
        return False
    if cls is None:
        from faust.tables.recovery import Recovery as cls

    from mode.services import ServiceTask

    original = getattr(cls, "_slurp_changelogs", None)
    if not isinstance(original, ServiceTask):  # a service's background task, by name
        log.warning("%s has no _slurp_changelogs task: table recovery is Faust's",
                    cls.__name__)
        return False
    if getattr(original.fun, "antirelou_batched", False):
        return True
    cls._slurp_changelogs = ServiceTask(batched_slurp_changelogs)
    return True


async def batched_slurp_changelogs(self: Any) -> None:
    """Faust's ``Recovery._slurp_changelogs``, batched: what the changelog queue holds taken
    in one pass, then each event applied as Faust's loop does (``_apply_changelog_events``),
    then the checks Faust's loop made per event, once."""
    changelog_queue = self.tables.changelog_queue
    timeout_count = 0
    while not self.should_stop:
        try:
            self.signal_recovery_end.clear()
            if changelog_queue.empty():
                try:
                    events = [await asyncio.wait_for(changelog_queue.get(), timeout=5.0)]
                except TimeoutError:
                    timeout_count += 1
                    if self.should_stop:
                        return
                    await _maybe_signal_recovery_end(self, timeout=True,
                                                     timeout_count=timeout_count)
                    continue
            else:
                events = []
                while len(events) < RECOVERY_BATCH and not changelog_queue.empty():
                    events.append(changelog_queue.get_nowait())
            timeout_count = 0
            await _apply_changelog_events(self, events)
            await _maybe_signal_recovery_end(self)
            _note_standbys_ready(self)
        except Exception as ex:  # as Faust's loop: said, and the loop goes on
            log.warning("Error in recovery %s", ex)


async def _apply_changelog_events(self: Any, events: list[Any]) -> None:
    """What Faust's loop does with each changelog event: the offset kept if newer than the
    one seen, the event buffered and its table's ``on_changelog_event`` awaited, a full
    buffer applied, the processing-time samples of the estimate of the time left. An event
    of a partition neither active nor standby is skipped with a warning."""
    from time import monotonic

    tp_to_table = self.tp_to_table
    active_tps, standby_tps = self.active_tps, self.standby_tps
    active_offsets, standby_offsets = self.active_offsets, self.standby_offsets
    active_events_received_at = self._active_events_received_at
    standby_events_received_at = self._standby_events_received_at
    buffers, buffer_sizes = self.buffers, self.buffer_sizes
    processing_times = self._processing_times
    for event in events:
        now = monotonic()
        message = event.message
        tp, offset = message.tp, message.offset
        bufsize = buffer_sizes.get(tp)
        is_active = tp in active_tps
        if is_active:
            table = tp_to_table[tp]
            offsets = active_offsets
            if bufsize is None:
                bufsize = buffer_sizes[tp] = table.recovery_buffer_size
            active_events_received_at[tp] = now
        elif tp in standby_tps:
            table = tp_to_table[tp]
            offsets = standby_offsets
            if bufsize is None:
                bufsize = buffer_sizes[tp] = table.standby_buffer_size
                standby_events_received_at[tp] = now
        else:
            log.warning("table recovery: a record of %s, neither active nor standby: "
                        "skipped", tp)
            continue
        seen_offset = offsets.get(tp, None)
        if seen_offset is None or offset > seen_offset:
            offsets[tp] = offset
            buf = buffers[table]
            buf.append(event)
            await table.on_changelog_event(event)
            if len(buf) >= bufsize:
                table.apply_changelog_batch(buf)
                buf.clear()
                self._last_flush_at = now
            if is_active:
                now_after = monotonic()
                last_processed_at = self._last_active_event_processed_at
                if last_processed_at is not None:
                    processing_times.append(now_after - last_processed_at)
                    if len(processing_times) > self.num_samples_required_for_estimate:
                        processing_times.popleft()
                self._last_active_event_processed_at = now_after


async def _maybe_signal_recovery_end(self: Any, timeout: bool = False,
                                     timeout_count: int = 0) -> None:
    # As Faust: after two empty waits in a transaction, the aborted transactions' tail.
    if timeout and self.app.in_transaction and timeout_count > 1:
        await _detect_aborted_tx(self)
    if self.in_recovery and not self.need_recovery():
        self.flush_buffers()  # apply what is left in the buffers
        self._set_recovery_ended()
        if self._actives_span is not None:
            self._actives_span.set_tag("Actives-Ready", True)
        self.signal_recovery_end.set()


async def _detect_aborted_tx(self: Any) -> None:
    offsets = self.active_offsets
    for tp, highwater in self.active_highwaters.items():
        if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
            position = await self.app.consumer.position(tp)
            if position is not None and position >= highwater:
                log.info("aborted transactions until the highwater of %s", tp)
                offsets[tp] = highwater


def _note_standbys_ready(self: Any) -> None:
    standby_ready = self._standbys_span is None and self.tables.standbys_ready
    if not standby_ready and not self.standby_remaining_total():
        if self._standbys_span:
            from faust.utils.tracing import finish_span

            finish_span(self._standbys_span)
            self._standbys_span = None
        self.tables.on_standbys_ready()


batched_slurp_changelogs.antirelou_batched = True  # type: ignore[attr-defined]


# ------------------------------------------------------------ the in-memory tables, in bulk

BULK_BUDGET_S = 0.5  # of Faust's broker_request_timeout (90 s), the most spent in bulk
BULK_IDLE_S = 10.0  # a bulk read given nothing this long leaves the rest to Faust's loop
BULK_CONNECT_S = 10.0  # the bulk consumer's start, at most
BULK_STOP_S = 5.0  # and its stop
BULK_WARNINGS = 5  # records that do not decode said one by one per read; then a count


class _Change:
    """A changelog record as a table's ``apply_changelog_batch`` reads it: the decoded
    ``key`` and ``value``, and the ``message`` (aiokafka's record: its raw ``value``, None for
    a tombstone, and its ``partition``, which the in-memory store keeps per key)."""

    __slots__ = ("key", "message", "value")

    def __init__(self, key: Any, value: Any, message: Any) -> None:
        self.key, self.value, self.message = key, value, message


def install_bulk_recovery(enabled: bool | None = None, cls: Any = None) -> bool:
    """Read the in-memory tables' changelog partitions a worker is given with one plain
    aiokafka consumer before Faust's recovery loop, and tell that loop they are read.

    With the in-memory store (``persisted_offset`` None), a worker given a partition reads
    its tables' changelogs from the start through Faust's consumer: each record made a
    Faust ``Message``, passed through the conductor's lock and callback, decoded, made an
    ``Event``, queued, then buffered and applied (:func:`install_batched_recovery` cut the
    loop's own cost; the path before it stays, 45-50 µs of CPU per record). A bare consumer
    reads the same changelog 10-20 times faster (tests/benchmarks/README.md).

    This wraps ``Recovery._build_offsets``: once Faust has the active partitions' start
    offsets (their highwaters are already built), :func:`bulk_read` reads each partition of
    an in-memory table with no changelog callback from there to its highwater, decodes each
    record with the table's changelog schema (as Faust's topic does), applies them through
    the table's own ``apply_changelog_batch`` and sets the partition's offset to the
    highwater. Faust then seeks there and has nothing to read (or the rest, if the bulk read
    stopped early: a rebalance, its time budget, :data:`BULK_IDLE_S` without a record; or
    failed: the broker away). The whole is bounded well within Faust's request timeout, past
    which Faust's recovery would stop for good (mode's ``wait_first`` times out as
    "stopped"). A record whose key or value does not decode is skipped with a warning and
    counted, as Faust drops it, but its offset is passed: in Faust's loop a dropped last
    record left recovery waiting for ever. ``ANTIRELOU_BULK_RECOVERY=0`` turns it off."""
    if not switched_on(enabled, "ANTIRELOU_BULK_RECOVERY"):
        return False
    if cls is None:
        from faust.tables.recovery import Recovery as cls
    original = getattr(cls, "_build_offsets", None)
    if not asyncio.iscoroutinefunction(original):
        log.warning("%s has no _build_offsets: tables are read back by Faust's loop only",
                    cls.__name__)
        return False
    if getattr(original, "antirelou_bulk", False):
        return True

    async def _build_offsets(self: Any, consumer: Any, tps: Any, destination: Any,
                             title: str) -> None:
        await original(self, consumer, tps, destination, title)
        if title != "active":
            return
        try:  # bounded: past Faust's timeout its recovery would stop for good
            await asyncio.wait_for(bulk_read(self, tps, destination),
                                   bulk_budget_s(self.app) + BULK_CONNECT_S + BULK_STOP_S)
        except Exception as exc:  # noqa: BLE001 - a broker away: Faust's loop reads it all
            log.warning("table recovery in bulk failed (%s: %s); Faust's loop reads the rest",
                        type(exc).__name__, exc)

    _build_offsets.antirelou_bulk = True  # type: ignore[attr-defined]
    cls._build_offsets = _build_offsets
    return True


def bulk_budget_s(app: Any) -> float:
    """The most a bulk read takes: :data:`BULK_BUDGET_S` of Faust's request timeout."""
    return BULK_BUDGET_S * app.conf.broker_request_timeout


def _bulk_tables(recovery: Any, tps: Any, offsets: Any) -> dict[Any, Any]:
    """The partitions of ``tps`` to read in bulk, each with its table: an in-memory table
    with no changelog callback, its start offset and highwater known, something to read."""
    from faust.stores.memory import Store as MemoryStore

    todo = {}
    for tp in tps:
        table = recovery.tp_to_table.get(tp)
        start, highwater = offsets.get(tp), recovery.active_highwaters.get(tp)
        if (table is None or start is None or highwater is None or highwater <= start
                or not isinstance(table.data, MemoryStore)
                or getattr(table, "_on_changelog_event", None) is not None):
            continue
        todo[tp] = table
    return todo


def _bulk_consumer(app: Any) -> Any:
    """A plain aiokafka consumer (no group) connected as Faust's own consumer is."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

    conf = app.conf
    return AIOKafkaConsumer(
        bootstrap_servers=server_list(conf.broker, 9092),
        client_id=f"{conf.broker_client_id}-bulk-recovery", group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level="read_committed"
        if getattr(conf.processing_guarantee, "value", None) == "exactly_once"
        else "read_uncommitted",
        max_partition_fetch_bytes=max(conf.consumer_max_fetch_size, 4 * 1024 * 1024),
        fetch_max_bytes=64 * 1024 * 1024, max_poll_records=10_000,
        **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
    )


def changelog_decoder(app: Any, schema: Any) -> Any:
    """``record -> (key, value)`` as Faust's changelog topic decodes it with ``schema``
    (``faust/serializers/schemas.py`` ``Schema.compile``), raising Faust's KeyDecodeError or
    ValueDecodeError. Two cases take a shorter way to the same calls (a test holds them
    equal on arbitrary bytes): a ``str`` key of Faust's json codec on orjson
    (``orjson.loads(raw.decode())``, what the codec runs), and a value of its raw codec
    with no value type (the bytes as they are). Any other schema: Faust's calls."""
    import orjson
    from faust.exceptions import KeyDecodeError
    from faust.serializers import codecs

    serializers = app.serializers
    loads_key, loads_value = serializers.loads_key, serializers.loads_value
    allow_empty = schema.allow_empty

    def key_of(record: Any) -> Any:
        return schema.loads_key(app, record, loads=loads_key)

    def value_of(record: Any) -> Any:
        if record.value is None and allow_empty:
            return None
        return schema.loads_value(app, record, loads=loads_value)

    key_codec = schema.key_serializer or serializers.key_serializer
    if (schema.key_type is str and isinstance(key_codec, str)
            and type(codecs.get_codec(key_codec)) is codecs.json
            and getattr(codecs._json, "orjson", None) is orjson):
        loads = orjson.loads

        def key_of(record: Any) -> Any:  # noqa: F811
            raw = record.key
            if raw is None:
                return None
            try:
                return loads(raw.decode())
            except Exception as exc:  # as Faust's registry: any failure is a KeyDecodeError
                raise KeyDecodeError(str(exc)) from exc

    value_codec = serializers._serializer(schema.value_type, schema.value_serializer,
                                          serializers.value_serializer)
    if (schema.value_type is None and allow_empty and isinstance(value_codec, str)
            and type(codecs.get_codec(value_codec)) is codecs.raw):
        def value_of(record: Any) -> Any:  # noqa: F811
            return record.value  # bytes, or None for a tombstone

    def decode(record: Any) -> tuple[Any, Any]:
        return key_of(record), value_of(record)

    return decode


def bulk_health(recovery: Any) -> dict[str, int]:
    """What :func:`bulk_read` did in this worker so far (``/health``, ``table_recovery``):
    changelog records applied, and records skipped because they did not decode."""
    stats = getattr(recovery, "antirelou_bulk", None)
    if stats is None:
        stats = recovery.antirelou_bulk = {"read_in_bulk": 0, "undecodable_skipped": 0}
    return stats


async def _stop(consumer: Any) -> None:
    """``consumer.stop()``; aiokafka's raises the CancelledError of its own committed-offsets
    task when stopped just after ``assign``: that one is not ours to pass on."""
    try:
        await asyncio.wait_for(consumer.stop(), BULK_STOP_S)
    except TimeoutError:
        log.warning("table recovery in bulk: its consumer did not stop in %g s", BULK_STOP_S)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def bulk_read(recovery: Any, tps: Any, offsets: Any, *,
                    budget_s: float | None = None, idle_s: float = BULK_IDLE_S,
                    consumer: Any = None) -> int:
    """Read ``tps``'s in-memory changelog partitions from ``offsets`` (the last offset
    applied, -1 for none) to their highwaters (``recovery.active_highwaters``, the last
    offset there) and apply them; ``offsets`` is moved on to what was read. Returns the
    records applied. ``budget_s``: at most this long (else :data:`BULK_BUDGET_S` of Faust's
    request timeout, within which Faust waits for its offsets); ``consumer``: an unstarted
    aiokafka consumer (tests), else one made like Faust's."""
    from time import monotonic

    from aiokafka import TopicPartition
    from faust.exceptions import KeyDecodeError, ValueDecodeError

    todo = _bulk_tables(recovery, tps, offsets)
    if not todo or recovery.should_stop or recovery.signal_recovery_start.is_set():
        return 0
    app = recovery.app
    if budget_s is None:
        budget_s = bulk_budget_s(app)
    decoders = {tp: changelog_decoder(app, table.changelog_topic.schema)
                for tp, table in todo.items()}
    highwaters = recovery.active_highwaters
    by_kafka = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
    consumer = consumer if consumer is not None else _bulk_consumer(app)
    started = last_progress = monotonic()
    applied = skipped = 0
    pending = set(by_kafka)
    try:
        await asyncio.wait_for(consumer.start(), BULK_CONNECT_S)
        consumer.assign(list(by_kafka))
        for ktp, tp in by_kafka.items():
            consumer.seek(ktp, max(offsets[tp] + 1, 0))
        while pending:
            if recovery.should_stop or recovery.signal_recovery_start.is_set():
                break  # stopping, or a rebalance: Faust starts again
            now = monotonic()
            if now - started > budget_s or now - last_progress > idle_s:
                log.warning("table recovery in bulk stopped after %.1f s (%s); Faust's "
                            "loop reads the rest", now - started,
                            "its time" if now - started > budget_s else "nothing fetched")
                break
            fetched = await consumer.getmany(*pending, timeout_ms=200)
            for ktp, records in fetched.items():
                tp = by_kafka[ktp]
                table, decode, highwater = todo[tp], decoders[tp], highwaters[tp]
                changes = []
                last = offsets[tp]
                for record in records:
                    if record.offset > highwater:
                        break
                    last = record.offset
                    try:
                        changes.append(_Change(*decode(record), record))
                    except (KeyDecodeError, ValueDecodeError) as exc:
                        skipped += 1
                        if skipped <= BULK_WARNINGS:
                            log.warning("table recovery: a record of %s at offset %d does "
                                        "not decode (%s): skipped", tp, record.offset,
                                        type(exc).__name__)
                if changes:
                    table.apply_changelog_batch(changes)
                    applied += len(changes)
                offsets[tp] = max(offsets[tp], last)
                last_progress = monotonic()
            for ktp in list(pending):
                tp = by_kafka[ktp]
                if offsets[tp] >= highwaters[tp] or await consumer.position(ktp) > highwaters[tp]:
                    offsets[tp] = highwaters[tp]  # read to the end (gaps: compaction, markers)
                    pending.discard(ktp)
            await asyncio.sleep(0)  # the worker's other tasks (its web server) run between
    finally:
        await _stop(consumer)
    stats = bulk_health(recovery)
    stats["read_in_bulk"] += applied
    stats["undecodable_skipped"] += skipped
    log.info("table recovery in bulk: %d changelog records of %d partitions in %.1f s%s",
             applied, len(by_kafka) - len(pending), monotonic() - started,
             f", {skipped} that did not decode skipped" if skipped else "")
    return applied
