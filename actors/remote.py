"""Ray wiring for campaign shards: a small facade that hides ``.remote()``.

Campaigns are spread over a few named actors (``antirelou-shard-N`` in the deployment's
namespace) by a stable hash of the campaign id; each call carries a whole batch.

Recovery is ours, not Ray's: an actor rebuilds its campaigns from the journal in its
constructor, so when Ray restarts a crashed actor (``max_restarts=-1``) and retries the
call that was in flight, the new process starts from what was journaled. The shells journal
a batch's events, acknowledged by the broker, before they send the next batch; but a
restarted actor may read the journal before that write lands, and would then hand out the
same ``seq`` and spend the same balance again. So every call carries, per campaign, the
last ``seq`` the worker journaled (``journaled()``), and a shard that is behind reads the
journal on until it has caught up (or fails the call, never deciding from a stale state).

Placement (a Ray cluster): ``resource`` makes each shard need one unit of a custom
resource, so shards run only on the nodes started with it (``ray start --resources
'{"antirelou_shards": 100}'``); ``spread`` asks Ray to spread them over those nodes
(``scheduling_strategy="SPREAD"``); ``memory_mb`` reserves Ray's ``memory`` resource per
shard (for scheduling; Ray does not cap a process at it). When a node dies, Ray restarts its
shards on another node that qualifies, and they recover there from the journal.

Where a shard recovers from is a port (``JournalSource``: the journal's events, the latest
snapshot of each campaign), given by the composition root (``infra.journal.KafkaJournal``):
actors/ imports nothing from infra/ or streams/.

Call ``ray.init`` (local or ``address=...``) before building the facade.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from actors.campaign import CampaignState, ControlOutcome
from actors.shard import CampaignShard, is_campaign_event
from actors.snapshot import SnapshotOutdated, decode_snapshot
from schemas.campaign import Campaign
from schemas.commands import ControlCommand, RequestReply, SettleReply, Tick

log = logging.getLogger("antirelou.shards")

# How long a call waits for a shard that Ray reports unavailable (its node died and Ray has
# not yet restarted it elsewhere: about 15 s with Ray's default node health checks).
UNAVAILABLE_WAIT_S = 180.0


def shard_of(campaign_id: str, n_shards: int) -> int:
    return zlib.crc32(campaign_id.encode()) % n_shards


class JournalSource(Protocol):
    """The topics a shard recovers from. Picklable: Ray hands it to each actor."""

    def events(self, topic: str, start: dict[int, int] | None = None
               ) -> AsyncIterator[tuple[int, int, Any]]:
        """(partition, offset, event) from ``start`` (default: the beginning) to the end."""
        ...

    async def latest_by_key(self, topic: str) -> dict[bytes, bytes]:
        """The last value of every key of a compacted topic."""
        ...


class JournalShard(CampaignShard):
    """A CampaignShard that starts from its campaigns' latest snapshots plus the journal
    after them (the actor class behind the facade)."""

    def __init__(self, campaigns: Sequence[Campaign], source: JournalSource, journal_topic: str,
                 snapshot_topic: str) -> None:
        super().__init__(campaigns)
        self._source, self._journal_topic, self._snapshot_topic = (
            source, journal_topic, snapshot_topic)
        self._load()
        self.rebuilt = 0  # recoveries after the start, to catch up with the journal
        self._first_call = True

    def _load(self) -> None:
        self._states = {c.id: CampaignState.opening(c) for c in self._campaigns.values()}
        # (A coroutine method would make Ray run this class as an async actor: keep the
        # reading in a module function.)
        snapshots, tail, self._read_to = asyncio.run(_read_recovery(
            self._source, self._journal_topic, self._snapshot_topic, list(self._states)))
        for state in snapshots:
            # The end date is the config's (an operator may have moved it), as in the audit.
            state.ends_at = self._campaigns[state.campaign_id].ends_at
            self._states[state.campaign_id] = state
        self.from_snapshots = len(snapshots)
        self.recovered = self.recover(tail)

    def _behind(self, known: dict[str, int] | None) -> list[str]:
        return [cid for cid, seq in (known or {}).items()
                if cid in self._states and self._states[cid].seq < seq]

    def catch_up(self, known: dict[str, int] | None, timeout_s: float = 15.0) -> None:
        """Make sure no campaign is older than the ``seq`` the worker journaled: recover
        again from the journal until it is (raise ShardBehind if it does not get there)."""
        if self._first_call:
            # Writes may have landed while the constructor read (a batch spans the
            # journal's partitions): if one did below a state's seq, it was skipped.
            self._first_call = False
            late, self._read_to = asyncio.run(
                _read_journal_from(self._source, self._journal_topic, self._read_to))
            if any(e.seq <= self._states[e.campaign_id].seq for e in late
                   if e.campaign_id in self._states):
                self._rebuild()
            else:
                self.recover(late)
        deadline = time.monotonic() + timeout_s
        while behind := self._behind(known):
            if time.monotonic() > deadline:
                raise ShardBehind(f"campaign(s) {', '.join(behind)} behind the journal")
            self._rebuild()
            if self._behind(known):
                time.sleep(0.1)

    def _rebuild(self) -> None:
        log.warning("campaign shard behind the journal; recovering again")
        self._load()
        self.rebuilt += 1

    def decide(self, batch: list[Any], known: dict[str, int] | None = None) -> list[Any]:
        self.catch_up(known)
        return super().decide(batch)

    def control(self, batch: list[Any], known: dict[str, int] | None = None) -> list[Any]:
        self.catch_up(known)
        return super().control(batch)

    def snapshot(self) -> list[CampaignState]:
        return list(self._states.values())

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "recovered": self.recovered,
                "from_snapshots": self.from_snapshots, "rebuilt": self.rebuilt,
                "node": ray.get_runtime_context().get_node_id()}


class ShardBehind(RuntimeError):
    """The shard's state is older than what the worker journaled, and stays so."""


async def _read_journal_from(source: JournalSource, journal_topic: str, start: dict[int, int]
                             ) -> tuple[list[Any], dict[int, int]]:
    """The campaign events from ``start`` to the end, and where reading stopped."""
    read_to = dict(start)
    tail = []
    async for partition, offset, event in source.events(journal_topic, start=start or None):
        read_to[partition] = offset + 1
        if is_campaign_event(event):
            tail.append(event)
    return tail, read_to


async def _read_recovery(
    source: JournalSource, journal_topic: str, snapshot_topic: str, campaign_ids: list[str]
) -> tuple[list[CampaignState], list[Any], dict[int, int]]:
    """The campaigns' latest snapshots, the campaign events of the journal after them, and
    the offsets where reading stopped."""
    starts: dict[int, int] | None = None
    states = []
    latest = await source.latest_by_key(snapshot_topic)
    for campaign_id in campaign_ids:
        raw = latest.get(campaign_id.encode())
        if raw is None:
            starts = {}  # a campaign without a snapshot needs the whole journal
            continue
        try:
            state, offsets = decode_snapshot(raw)
        except SnapshotOutdated as exc:
            log.warning("%s: rebuilt from the whole journal", exc)
            starts = {}
            continue
        states.append(state)
        if starts is None:
            starts = dict(offsets)
        elif starts:
            for p, o in offsets.items():
                starts[p] = min(starts.get(p, o), o)
    tail, read_to = await _read_journal_from(source, journal_topic, starts or {})
    return states, tail, read_to


class CampaignShards:
    def __init__(
        self,
        campaigns: Sequence[Campaign],
        *,
        journal: JournalSource,
        journal_topic: str,
        snapshot_topic: str,
        n_shards: int = 1,
        namespace: str = "antirelou",
        resource: str | None = None,
        spread: bool = False,
        memory_mb: int | None = None,
    ) -> None:
        self.n_shards = max(1, min(n_shards, len(campaigns)))
        self._by_shard: dict[int, list[Campaign]] = defaultdict(list)
        for c in campaigns:
            self._by_shard[shard_of(c.id, self.n_shards)].append(c)
        self._args = (journal, journal_topic, snapshot_topic)
        self._namespace = namespace
        placement: dict[str, Any] = {}
        if resource:
            placement["resources"] = {resource: 1}
        if spread:
            placement["scheduling_strategy"] = "SPREAD"
        if memory_mb:
            placement["memory"] = memory_mb * 2**20
        self._journaled: dict[str, int] = {}  # campaign -> last seq this worker journaled
        self._remote_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3,
                                      **placement)(JournalShard)
        self._actors = [self._acquire(i) for i in range(self.n_shards)]

    def _acquire(self, i: int) -> Any:
        # get_if_exists: workers of one deployment share the shards instead of each
        # holding its own copy of a budget.
        return self._remote_cls.options(
            name=f"antirelou-shard-{i}", namespace=self._namespace, get_if_exists=True
        ).remote(self._by_shard[i], *self._args)

    def journaled(self, events: Sequence[Any]) -> None:
        """The shell stored these events (acknowledged): later calls say so to the shard."""
        for event in events:
            seq = getattr(event, "seq", 0)
            if seq and is_campaign_event(event) and seq > self._journaled.get(
                    event.campaign_id, 0):
                self._journaled[event.campaign_id] = seq

    def _known(self, i: int) -> dict[str, int]:
        return {c.id: self._journaled[c.id] for c in self._by_shard[i] if c.id in self._journaled}

    async def _call(self, i: int, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + UNAVAILABLE_WAIT_S
        waiting = reacquired = False
        while True:
            try:
                return await getattr(self._actors[i], method).remote(*args)
            except ActorUnavailableError:
                # Its node is gone and Ray is restarting it (max_restarts=-1), maybe on
                # another node. The call may or may not have run: calling again is safe, a
                # shard's methods being idempotent by message id.
                if time.monotonic() > deadline:
                    raise
                if not waiting:
                    log.warning("campaign shard %d unavailable; waiting for Ray to restart it", i)
                    waiting = True
                await asyncio.sleep(1.0)
            except RayActorError:
                # The owner of the actor (another worker) is gone, or its restarts ran out:
                # take (or create) the shard again, which recovers from the journal, and retry.
                if reacquired:
                    raise
                log.warning("campaign shard %d lost; recovering it from the journal", i)
                self._actors[i] = self._acquire(i)
                reacquired = True

    async def _scatter(self, method: str, batch: Sequence[Any]) -> list[Any]:
        if self.n_shards == 1:  # the usual deployment: one call, no regrouping
            return list(await self._call(0, method, list(batch), self._known(0))) if batch else []
        groups: dict[int, list[Any]] = defaultdict(list)
        for command in batch:
            groups[shard_of(command.campaign_id, self.n_shards)].append(command)
        results = await asyncio.gather(*(self._call(i, method, cmds, self._known(i))
                                         for i, cmds in groups.items()))
        return [event for events in results for event in events]

    async def decide(self, batch: list[RequestReply | SettleReply | Tick]) -> list[Any]:
        """One actor call per shard touched by the batch; decisions in batch order per shard."""
        return await self._scatter("decide", batch)

    async def control(self, batch: list[ControlCommand]) -> list[ControlOutcome]:
        return await self._scatter("control", batch)

    async def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for part in await asyncio.gather(*(self._call(i, "status") for i in range(self.n_shards))):
            out.update(part)
        return out

    async def snapshot(self) -> list[CampaignState]:
        parts = await asyncio.gather(*(self._call(i, "snapshot") for i in range(self.n_shards)))
        return [state for part in parts for state in part]

    def status_now(self) -> dict[str, dict[str, Any]]:
        """Blocking ``status`` for start-up (the banner), outside any event loop."""
        out: dict[str, dict[str, Any]] = {}
        for part in ray.get([actor.status.remote() for actor in self._actors]):
            out.update(part)
        return out

    def info_now(self) -> list[dict[str, Any]]:
        """Blocking ``info`` for start-up, outside any event loop."""
        return list(ray.get([actor.info.remote() for actor in self._actors]))
