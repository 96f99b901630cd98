"""The notary (leader timer ``notarise_journal``): reads each journal partition once, in
offset order, grows its RFC 6962 tree (``infra.checkpoints.Notary``) and signs a checkpoint
when records have waited ``checkpoint_interval_s``, when 16,384 have (one notary record
stays under Kafka's 1 MiB), and at every UTC day's end (grown or not). Each checkpoint
goes three ways:

- ``<app>.notary`` (kept for ever): the note and the leaf hashes since the previous one,
  which ``antirelou export`` writes beside the journal so ``verify`` names a changed record
  exactly;
- ``<app>.checkpoints`` (compacted, keyed by partition): the latest note of each partition
  with the tree's frontier and the next offset, which the notary resumes from (on any
  worker that becomes leader) and ``/public`` shows;
- ``checkpoints_file`` (if set): every note appended, a file the deployment can publish.

It writes nothing into the journal and changes no stage that does: the journal's writers
are unaware of it. A notary record written before its checkpoint record is written again
after a restart with the same leaf hashes (the export and ``verify`` take such twins once).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from infra.checkpoints import Notary, Signed, notary_line
from infra.journal import iter_records, latest_by_key
from streams.stages.runtime import Runtime
from streams.stages.watchdog import EndOffsets

log = logging.getLogger("antirelou")


def register_notary(rt: Runtime) -> None:
    settings = rt.settings
    if settings.checkpoint_key is None:
        return
    notary = Notary(settings.origin, settings.checkpoint_key)
    resumed: list[bool] = []

    def raw(name: str) -> Any:
        return rt.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw", partitions=1)

    topics = {"notary": raw(rt.names["notary"]), "checkpoints": raw(rt.names["checkpoints"])}
    ends = EndOffsets(settings.kafka)  # one long-lived client: a new one each tick is noise

    @rt.app.on_before_shutdown.connect
    async def on_shutdown_close_notary_client(app: Any, **kwargs: Any) -> None:
        await ends.close()

    @rt.app.timer(interval=min(30.0, settings.checkpoint_interval_s), on_leader=True)
    async def notarise_journal() -> None:
        try:
            if not resumed:
                await resume(rt, notary)
                resumed.append(True)
            for signed in await notarise(rt, notary, ends):
                await publish(rt, topics, signed, settings.checkpoints_file)
        except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker
            resumed.clear()  # read the notary's state again: what was signed is there
            log.warning("journal checkpoint skipped (%s: %s); next try in 30 s",
                        type(exc).__name__, exc)


async def resume(rt: Runtime, notary: Notary) -> None:
    notary.logs.clear()
    for key, value in (await latest_by_key(rt.settings.kafka, rt.names["checkpoints"])).items():
        notary.resume(int(key), orjson.loads(value))


async def notarise(rt: Runtime, notary: Notary, end_offsets: EndOffsets) -> list[Signed]:
    """Every journal record not yet taken, then the checkpoints due."""
    kafka, topic = rt.settings.kafka, rt.names["journal"]
    interval_ms = int(rt.settings.checkpoint_interval_s * 1000)
    now = rt.now_ms()
    ends = {p: end for (_, p), end in (await end_offsets.of(topic)).items()}
    signed: list[Signed] = []
    start = {p: notary.log(p).next_offset for p in ends}
    if any(ends[p] > start[p] for p in ends):
        async for p, offset, _, value in iter_records(kafka, topic, start=start):
            if offset < ends[p] and notary.add(p, offset, value):
                signed.append(notary.sign(p, now))  # a full chunk
    signed += [notary.sign(p, now) for p in sorted(ends) if notary.due(p, now, interval_ms)]
    return signed


async def publish(rt: Runtime, topics: dict[str, Any], signed: Signed,
                  path: Path | None) -> None:
    key = str(signed.partition).encode()
    await rt.acknowledged(topics["notary"].send(key=key, value=notary_line(signed)))
    await rt.acknowledged(topics["checkpoints"].send(key=key, value=orjson.dumps(signed.state)))
    if path is not None:
        with open(path, "a") as f:
            f.write(signed.note + "\n")
    log.info("journal partition %d: checkpoint signed at %d events", signed.partition,
             signed.size)
