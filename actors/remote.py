"""Ray wiring for campaign shards: a small facade that hides ``.remote()``.

Campaigns are spread over a few named actors (``antirelou-shard-N`` in the deployment's
namespace) by a stable hash of the campaign id; each call carries a whole batch.

Recovery is ours, not Ray's: an actor rebuilds its campaigns from the journal in its
constructor, so when Ray restarts a crashed actor (``max_restarts=-1``) and retries the
call that was in flight, the new process starts from exactly what was journaled. The
shells journal a batch's events, acknowledged by the broker, before they send the next
batch, so nothing an actor returned can be missing from what its successor reads.

Call ``ray.init`` (local or ``address=...``) before building the facade.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.campaign import CampaignState, ControlOutcome
from actors.shard import CampaignShard, is_campaign_event
from actors.snapshot import decode_snapshot
from infra.journal import iter_journal, latest_by_key
from schemas.campaign import Campaign
from schemas.commands import ControlCommand, RequestReply, SettleReply, Tick

log = logging.getLogger("antirelou.shards")


def shard_of(campaign_id: str, n_shards: int) -> int:
    return zlib.crc32(campaign_id.encode()) % n_shards


class JournalShard(CampaignShard):
    """A CampaignShard that starts from its campaigns' latest snapshots plus the journal
    after them (the actor class behind the facade)."""

    def __init__(self, campaigns: Sequence[Campaign], kafka: str, journal_topic: str,
                 snapshot_topic: str) -> None:
        super().__init__(campaigns)
        # (A coroutine method would make Ray run this class as an async actor: keep the
        # reading in a module function.)
        snapshots, tail = asyncio.run(
            _read_recovery(kafka, journal_topic, snapshot_topic, list(self._states)))
        for state in snapshots:
            self._states[state.campaign_id] = state
        self.from_snapshots = len(snapshots)
        self.recovered = self.recover(tail)

    def snapshot(self) -> list[CampaignState]:
        return list(self._states.values())

    def info(self) -> dict[str, int]:
        return {"pid": os.getpid(), "recovered": self.recovered,
                "from_snapshots": self.from_snapshots}


async def _read_recovery(
    kafka: str, journal_topic: str, snapshot_topic: str, campaign_ids: list[str]
) -> tuple[list[CampaignState], list[Any]]:
    """The campaigns' latest snapshots, and the campaign events of the journal after them."""
    starts: dict[int, int] | None = None
    states = []
    latest = await latest_by_key(kafka, snapshot_topic)
    for campaign_id in campaign_ids:
        raw = latest.get(campaign_id.encode())
        if raw is None:
            starts = {}  # a campaign without a snapshot needs the whole journal
            continue
        state, offsets = decode_snapshot(raw)
        states.append(state)
        if starts is None:
            starts = dict(offsets)
        elif starts:
            for p, o in offsets.items():
                starts[p] = min(starts.get(p, o), o)
    tail = [e async for _, _, e in iter_journal(kafka, journal_topic, start=starts or None)
            if is_campaign_event(e)]
    return states, tail


class CampaignShards:
    def __init__(
        self,
        campaigns: Sequence[Campaign],
        *,
        kafka: str,
        journal_topic: str,
        snapshot_topic: str,
        n_shards: int = 1,
        namespace: str = "antirelou",
    ) -> None:
        self.n_shards = max(1, min(n_shards, len(campaigns)))
        self._by_shard: dict[int, list[Campaign]] = defaultdict(list)
        for c in campaigns:
            self._by_shard[shard_of(c.id, self.n_shards)].append(c)
        self._args = (kafka, journal_topic, snapshot_topic)
        self._namespace = namespace
        self._remote_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)(JournalShard)
        self._actors = [self._acquire(i) for i in range(self.n_shards)]

    def _acquire(self, i: int) -> Any:
        # get_if_exists: workers of one deployment share the shards instead of each
        # holding its own copy of a budget.
        return self._remote_cls.options(
            name=f"antirelou-shard-{i}", namespace=self._namespace, get_if_exists=True
        ).remote(self._by_shard[i], *self._args)

    async def _call(self, i: int, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._actors[i], method).remote(*args)
        except RayActorError:
            # The owner of the actor (another worker) is gone, or its restarts ran out:
            # take (or create) the shard again, which recovers from the journal, and retry.
            log.warning("campaign shard %d lost; recovering it from the journal", i)
            self._actors[i] = self._acquire(i)
            return await getattr(self._actors[i], method).remote(*args)

    async def _scatter(self, method: str, batch: Sequence[Any]) -> list[Any]:
        if self.n_shards == 1:  # the usual deployment: one call, no regrouping
            return list(await self._call(0, method, list(batch))) if batch else []
        groups: dict[int, list[Any]] = defaultdict(list)
        for command in batch:
            groups[shard_of(command.campaign_id, self.n_shards)].append(command)
        results = await asyncio.gather(*(self._call(i, method, cmds) for i, cmds in groups.items()))
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

    def info_now(self) -> list[dict[str, int]]:
        """Blocking ``info`` for start-up, outside any event loop."""
        return list(ray.get([actor.info.remote() for actor in self._actors]))
