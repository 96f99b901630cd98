"""A stage's batch either completes or is fetched again: never skipped, never a crash.

faust-streaming 0.15.3's ``take_events`` acknowledges its batch in a ``finally`` that also
runs when the agent's body raises; the supervisor then restarts the agent and the commit
passes the batch: the texts, requests or commands in it were never processed (seen: three
texts screened ``forward``, decided by the shard, never journaled nor sent; their senders
awaiting for ever, the audit failing on the seq gap). So the screen, decide and control
agents hand each batch to ``BatchRunner.run``, which never lets an exception reach Faust:

- a batch that completes is acknowledged as Faust does;
- one that fails is not acknowledged, and each of its partitions is fetched again from the
  batch's first offset, through the stage's offset-order guard (``InOrder.fetch_again``:
  the records after it are held out until it comes again; the send stage's
  ``SeenOrder.fetch_again`` is the same seek), after a pause that doubles up to 30 s while
  it keeps failing. Every stage is idempotent (screening restates a verdict it holds; a
  shard answers a command again with the same events), so what comes twice is processed
  once. ``/health`` says the stage is failing, and since when;
- a failure that is not the broker's (``transient``) is looked at record by record: the
  records before the failing one are done, and a record that fails alone, ``POISON_AFTER``
  times in a row, is a poison record: passed over, journaled as ``RecordPoisoned`` in its
  place, counted, and the stage's ``on_poison`` told (the decide stage reopens the sender
  of a poisoned request, so he is not left awaiting).

A campaign shard that is away is not a failure: the facade waits for it (actors/remote.py)
and ``/health`` says so.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from schemas import codec
from schemas.codec import CodecError
from schemas.events import RecordPoisoned
from streams.stages.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]  # the repository: our frames' paths below it
log = logging.getLogger("antirelou")

POISON_AFTER = 3  # a record failing alone this many times in a row is passed over
FIRST_PAUSE_S = 1.0  # before a failed batch is fetched again; doubled while it fails
MAX_PAUSE_S = 30.0

Handle = Callable[[Sequence[Any]], Awaitable[None]]


def origin(exc: BaseException) -> str:
    """Where ``exc`` was raised in our code (``streams/rules/approvals.py:44``), else the
    library file it came from: a place, never the error's text (which may hold a number)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    ours = [f for f in frames if Path(f.filename).is_relative_to(ROOT)
            and "site-packages" not in f.filename]
    frame = (ours or frames)[-1]
    path = Path(frame.filename)
    where = path.relative_to(ROOT).as_posix() if ours else path.name
    return f"{where}:{frame.lineno}"


def transient(exc: BaseException) -> bool:
    """A failure of what the stage depends on (the broker, the network, a shard behind),
    which passes: the batch is tried again as it is, never taken for poison."""
    if getattr(exc, "transient", False):
        return True
    if isinstance(exc, KafkaError):
        return not isinstance(exc, MessageSizeTooLargeError)
    return isinstance(exc, OSError | TimeoutError)


class BatchRunner:
    def __init__(self, rt: Runtime, stage: str, role: str,
                 on_poison: Callable[[Any, RecordPoisoned], Awaitable[None]] | None = None,
                 *, pause_s: float = FIRST_PAUSE_S) -> None:
        """``stage``: its name (/health); ``role``: its topic's role (``rt.names``, the
        order guard); ``on_poison(event, fact)``: what else the stage does for a poisoned
        record, once its fact is journaled."""
        self.rt, self.stage, self.role = rt, stage, role
        self.on_poison = on_poison
        self.pause_s = pause_s
        self._attempts: dict[tuple[Any, int], int] = {}  # (tp, offset) failing alone
        self._failing = 0  # batches failed in a row

    async def run(self, events: Sequence[Any], handle: Handle) -> None:
        """Process ``events`` (admitted in order) with ``handle``; never raises (but a
        cancellation)."""
        if not events:
            return
        try:
            await handle(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the batch is fetched again, or looked into
            self._failed(events, exc)
            if transient(exc):
                await self._fetch_again(events)
            else:
                await self._one_by_one(events, handle)
            return
        self._done(events)

    async def _one_by_one(self, events: Sequence[Any], handle: Handle) -> None:
        for k, event in enumerate(events):
            try:
                await handle([event])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - poison, or fetched again from here
                if transient(exc) or not await self._poisoned(event, exc):
                    if not transient(exc):
                        self._failed([event], exc)
                    await self._fetch_again(events[k:])
                    return
            else:
                self._attempts.pop(_where(event), None)
        self._done(events)

    async def _poisoned(self, event: Any, exc: Exception) -> bool:
        """True once the record has failed alone ``POISON_AFTER`` times and was passed over
        (its fact journaled); False: it is tried again."""
        where = _where(event)
        tries = self._attempts[where] = self._attempts.get(where, 0) + 1
        if tries < POISON_AFTER:
            return False
        fact = poison_fact(self.rt, self.stage, event, exc)
        try:
            await self.rt.record([fact], acked=True)
            if self.on_poison is not None:
                await self.on_poison(event, fact)
        except asyncio.CancelledError:
            raise
        except Exception as again:  # noqa: BLE001 - not passed over: tried again later
            log.error("stage %s: poison record not journaled (%s); trying again",
                      self.stage, type(again).__name__)
            return False
        del self._attempts[where]
        self.rt.stage(self.stage).poisoned += 1
        log.error("*** stage %s: record %d of %s partition %d failed %d times alone (%s); "
                  "passed over, journaled as RecordPoisoned ***", self.stage, fact.offset,
                  fact.topic, fact.partition, tries, fact.error)
        return True

    def _failed(self, events: Sequence[Any], exc: BaseException) -> None:
        self._failing += 1
        self.rt.stage_failed(self.stage, exc)
        # The error's type only: its text is not ours to vouch for (no number in a log).
        log.error("stage %s: a batch of %d record(s) failed (%s at %s)%s", self.stage,
                  len(events), type(exc).__name__, origin(exc),
                  "; fetching it again" if transient(exc)
                  else "; trying its records one by one")

    def _done(self, events: Sequence[Any]) -> None:
        self._failing = 0
        self.rt.stage_ok(self.stage)

    async def _fetch_again(self, events: Sequence[Any]) -> None:
        # Not a hot loop while the broker is away: the pause doubles while batches fail.
        pause = min(MAX_PAUSE_S, self.pause_s * 2 ** max(0, self._failing - 1))
        await asyncio.sleep(pause)
        await self.rt.in_order[self.rt.names[self.role]].fetch_again(events)


def _where(event: Any) -> tuple[Any, int]:
    return event.message.tp, event.message.offset


def poison_fact(rt: Runtime, stage: str, event: Any, exc: BaseException) -> RecordPoisoned:
    """The fact journaled for a poisoned record: where it was, what it named."""
    message = event.message
    try:
        named = codec.decode(event.value)
    except (CodecError, TypeError):
        named = None
    return RecordPoisoned(
        stage=stage, topic=message.topic, partition=message.partition, offset=message.offset,
        error=type(exc).__name__, record_type=getattr(named, "TYPE", ""),
        occurred_at=rt.now_ms(), message_id=getattr(named, "message_id", "") or "",
        campaign_id=getattr(named, "campaign_id", "") or "",
        sender=getattr(named, "sender", "") or "",
        command_id=getattr(named, "command_id", "") or "")
