"""Ray wiring for campaign shards: a small facade that hides ``.remote()``.

Campaigns are spread over a few named actors (``antirelou-shard-N`` in the deployment's
namespace) by a stable hash of the campaign id; each call carries a whole batch. Call
``ray.init`` (local or ``address=...``) before building the facade.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import ray

from actors.campaign import Decision
from actors.shard import CampaignShard
from schemas.campaign import Campaign
from schemas.commands import RequestReply


def shard_of(campaign_id: str, n_shards: int) -> int:
    return zlib.crc32(campaign_id.encode()) % n_shards


class CampaignShards:
    def __init__(
        self,
        campaigns: Sequence[Campaign],
        *,
        n_shards: int = 1,
        namespace: str = "antirelou",
        history: Iterable[Decision] = (),
    ) -> None:
        self.n_shards = max(1, min(n_shards, len(campaigns)))
        by_shard: dict[int, list[Campaign]] = defaultdict(list)
        for c in campaigns:
            by_shard[shard_of(c.id, self.n_shards)].append(c)
        past = list(history)
        remote_cls = ray.remote(num_cpus=0)(CampaignShard)
        self._actors = [
            remote_cls.options(
                name=f"antirelou-shard-{i}", namespace=namespace, get_if_exists=True
            ).remote(by_shard[i], [e for e in past if shard_of(e.campaign_id, self.n_shards) == i])
            for i in range(self.n_shards)
        ]

    async def decide(self, batch: list[RequestReply]) -> list[Decision]:
        """One actor call per shard touched by the batch; decisions in batch order per shard."""
        groups: dict[int, list[RequestReply]] = defaultdict(list)
        for command in batch:
            groups[shard_of(command.campaign_id, self.n_shards)].append(command)
        results = await asyncio.gather(
            *(self._actors[i].decide.remote(cmds) for i, cmds in groups.items())
        )
        return [event for events in results for event in events]

    async def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for part in await asyncio.gather(*(a.status.remote() for a in self._actors)):
            out.update(part)
        return out

    def kill(self) -> None:
        for actor in self._actors:
            ray.kill(actor)
