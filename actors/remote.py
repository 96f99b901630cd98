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

from actors.campaign import ControlOutcome, Decision
from actors.shard import CampaignShard, is_campaign_event
from infra.journal import read_journal
from schemas.campaign import Campaign
from schemas.commands import ControlCommand, RequestReply

log = logging.getLogger("antirelou.shards")


def shard_of(campaign_id: str, n_shards: int) -> int:
    return zlib.crc32(campaign_id.encode()) % n_shards


class JournalShard(CampaignShard):
    """A CampaignShard that starts from the journal (the actor class behind the facade)."""

    def __init__(self, campaigns: Sequence[Campaign], kafka: str, journal_topic: str) -> None:
        history = [e for e in read_journal(kafka, journal_topic) if is_campaign_event(e)]
        super().__init__(campaigns, history)
        self.recovered = len(history)

    def info(self) -> dict[str, int]:
        return {"pid": os.getpid(), "recovered": self.recovered}


class CampaignShards:
    def __init__(
        self,
        campaigns: Sequence[Campaign],
        *,
        kafka: str,
        journal_topic: str,
        n_shards: int = 1,
        namespace: str = "antirelou",
    ) -> None:
        self.n_shards = max(1, min(n_shards, len(campaigns)))
        self._by_shard: dict[int, list[Campaign]] = defaultdict(list)
        for c in campaigns:
            self._by_shard[shard_of(c.id, self.n_shards)].append(c)
        self._kafka, self._topic, self._namespace = kafka, journal_topic, namespace
        self._remote_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)(JournalShard)
        self._actors = [self._acquire(i) for i in range(self.n_shards)]

    def _acquire(self, i: int) -> Any:
        # get_if_exists: workers of one deployment share the shards instead of each
        # holding its own copy of a budget.
        return self._remote_cls.options(
            name=f"antirelou-shard-{i}", namespace=self._namespace, get_if_exists=True
        ).remote(self._by_shard[i], self._kafka, self._topic)

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
        groups: dict[int, list[Any]] = defaultdict(list)
        for command in batch:
            groups[shard_of(command.campaign_id, self.n_shards)].append(command)
        results = await asyncio.gather(*(self._call(i, method, cmds) for i, cmds in groups.items()))
        return [event for events in results for event in events]

    async def decide(self, batch: list[RequestReply]) -> list[Decision]:
        """One actor call per shard touched by the batch; decisions in batch order per shard."""
        return await self._scatter("decide", batch)

    async def control(self, batch: list[ControlCommand]) -> list[ControlOutcome]:
        return await self._scatter("control", batch)

    async def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for part in await asyncio.gather(*(self._call(i, "status") for i in range(self.n_shards))):
            out.update(part)
        return out

    async def info(self) -> list[dict[str, int]]:
        return list(await asyncio.gather(*(self._call(i, "info") for i in range(self.n_shards))))
