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

The layout is a deployment fact: how many shards, and the campaigns (every field of each,
as the campaign file gave them). The shard actors hold the layout they were created with
(``layout()``); a facade checks it when it starts (``ShardLayoutError``: a worker started
with another ``--shards`` or another campaign file refuses to start, since Ray hands it the
running actors and ignores the campaigns it passes, and two shards would then decide one
campaign), and every call carries its digest, which the shard refuses when it is not its
own (``LayoutMismatch``: a worker left with the old layout waits, it never decides).

Where a shard recovers from is a port (``JournalSource``: the journal's events, the latest
snapshot of each campaign), given by the composition root (``infra.journal.KafkaJournal``):
actors/ imports nothing from infra/ or streams/.

Operator commands are checked where they take effect: ``control`` takes the records of the
control topic as they are (bytes) and the shard itself verifies each one with the
``ControlAuthority`` it was created with (``infra.operators.OperatorAuthority``: the
operators' public keys, the app id, the freshness window, by the shard's own clock), so a
caller of the named actor cannot credit a budget or change a policy with an unsigned or
forged command. A refused one comes back as ``ControlRefused`` (the worker journals it). A
shard created without an authority refuses every command. This guards the actor's methods;
whoever can run code in the Ray cluster (Ray's token, README "Security") can do anything
there, which is why the cluster is closed.

Call ``ray.init`` (local or ``address=...``) before building the facade.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import time
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from actors.campaign import CampaignState, ControlOutcome
from actors.shard import CampaignShard, is_campaign_event
from actors.snapshot import SnapshotOutdated, decode_snapshot, encode_snapshot
from schemas import codec
from schemas.campaign import Campaign
from schemas.commands import (
    ChangePolicy,
    CreditBudget,
    RequestReply,
    SettleReply,
    SignedControl,
    Tick,
)
from schemas.events import ControlRefused

log = logging.getLogger("antirelou.shards")

# A call under way this long means the shard is not answering (its process stopped, its
# node cut off): /health says degraded.
SLOW_CALL_S = 10.0
AWAY_LOG_S = 30.0  # a shard still away is said again this often
# How long a worker starting waits for shards of another layout to go (their worker stopped).
LAYOUT_WAIT_S = 10.0


def shard_of(campaign_id: str, n_shards: int) -> int:
    return zlib.crc32(campaign_id.encode()) % n_shards


def layout_of(campaigns: Sequence[Campaign], n_shards: int) -> dict[str, Any]:
    """The deployment's shard layout: the number of shards and every campaign's fields."""
    return {"shards": n_shards,
            "campaigns": {c.id: _jsonable(dataclasses.asdict(c))
                          for c in sorted(campaigns, key=lambda c: c.id)}}


def layout_digest(layout: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def layout_difference(running: dict[str, Any], mine: dict[str, Any]) -> str:
    """What differs between the running layout and this worker's, in one phrase."""
    parts = []
    if running["shards"] != mine["shards"]:
        parts.append(f"{running['shards']} shard(s) running, {mine['shards']} here")
    theirs, ours = running["campaigns"], mine["campaigns"]
    if set(theirs) != set(ours):
        parts.append(f"campaigns {', '.join(sorted(theirs)) or 'none'} running, "
                     f"{', '.join(sorted(ours)) or 'none'} here")
    for cid in sorted(set(theirs) & set(ours)):
        fields = sorted(k for k in set(theirs[cid]) | set(ours[cid])
                        if theirs[cid].get(k) != ours[cid].get(k))
        if fields:
            parts.append(f"campaign {cid}: {', '.join(fields)} differ")
    return "; ".join(parts) or "the layouts differ"


class ShardLayoutError(RuntimeError):
    """The running shards were laid out by another deployment configuration (another
    ``--shards``, another campaign file): this worker must not use them."""


class LayoutMismatch(RuntimeError):
    """A shard refused a call carrying another layout than its own (transient for the
    caller: it waits, and says so, until it is restarted with the deployment's layout)."""

    transient = True


class JournalSource(Protocol):
    """The topics a shard recovers from. Picklable: Ray hands it to each actor."""

    def events(self, topic: str, start: dict[int, int] | None = None
               ) -> AsyncIterator[tuple[int, int, Any]]:
        """(partition, offset, event) from ``start`` (default: the beginning) to the end."""
        ...

    async def latest_by_key(self, topic: str) -> dict[bytes, bytes]:
        """The last value of every key of a compacted topic."""
        ...


class ControlAuthority(Protocol):
    """Who may command the campaigns. Picklable: Ray hands it to each actor."""

    def check(self, value: bytes, now_ms: int) -> Any:
        """The command (ChangePolicy or CreditBudget) a control record carries if it may be
        applied at ``now_ms``, else why not (``reason``, ``operator``, ``command_id``, ...)."""
        ...


NO_AUTHORITY = "this campaign shard was given no operator keys: it applies no command"


class JournalShard(CampaignShard):
    """A CampaignShard that starts from its campaigns' latest snapshots plus the journal
    after them, and applies only the operator commands its authority lets through (the
    actor class behind the facade)."""

    def __init__(self, campaigns: Sequence[Campaign], source: JournalSource, journal_topic: str,
                 snapshot_topic: str, layout: dict[str, Any] | None = None,
                 authority: ControlAuthority | None = None, clock: Any = time.time) -> None:
        super().__init__(campaigns)
        self._layout = layout
        self._digest = layout_digest(layout) if layout is not None else None
        self._source, self._journal_topic, self._snapshot_topic = (
            source, journal_topic, snapshot_topic)
        self._authority, self._clock = authority, clock
        self._load()
        self.rebuilt = 0  # recoveries after the start, to catch up with the journal
        self._first_call = True

    def _load(self) -> None:
        self._states = {c.id: CampaignState.opening(c) for c in self._campaigns.values()}
        # What the journal is known to hold, per campaign: the highest seq a worker said it
        # journaled (the ``known`` of its calls), or what recovery read. A command decided
        # and not confirmed yet keeps its whole answer (``_unconfirmed``): a worker whose
        # journal write failed asks again, and gets the same events, side events too (the
        # tick before a request, a SurgeStarted after it: a request decided before is
        # otherwise answered with its decision alone, and their seqs were lost).
        self._confirmed: dict[str, int] = {}
        self._unconfirmed: dict[str, OrderedDict[Any, tuple[int, list[Any]]]] = {}
        # Snapshots asked for while a campaign was ahead of the journal: the offsets they
        # were asked with, then the snapshot taken once the journal had caught up.
        self._wanted: dict[str, dict[int, int]] = {}
        self._captured: dict[str, tuple[int, bytes]] = {}
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
        self._confirmed = {cid: state.seq for cid, state in self._states.items()}

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
                self._confirm({cid: state.seq for cid, state in self._states.items()})
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

    def layout(self) -> dict[str, Any] | None:
        """The layout this shard was created with (the deployment's, ``layout_of``)."""
        return self._layout

    def _ready(self, known: dict[str, int] | None, digest: str | None) -> None:
        """Before a call decides anything: the caller's layout is this shard's, the shard
        has caught up with the journal, and what the caller journaled is confirmed."""
        if digest is not None and self._digest is not None and digest != self._digest:
            raise LayoutMismatch("this worker's shard layout (--shards, campaign file) is not "
                                 "the running shards': restart it with the deployment's")
        self.catch_up(known)
        self._confirm(known)

    def decide(self, batch: list[Any], known: dict[str, int] | None = None,
               digest: str | None = None) -> list[Any]:
        self._ready(known, digest)
        out: list[Any] = []
        for command in batch:
            key = _command_key(command)
            pending = self._unconfirmed.get(command.campaign_id)
            earlier = pending.get(key) if pending else None
            if earlier is not None:
                out += earlier[1]  # asked again before its answer was journaled
                continue
            events = super().decide([command])
            top = max((getattr(e, "seq", 0) for e in events), default=0)
            if top > self._confirmed.get(command.campaign_id, 0):
                self._unconfirmed.setdefault(command.campaign_id, OrderedDict())[key] = (
                    top, events)
            out += events
        return out

    def control(self, batch: list[Any], known: dict[str, int] | None = None,
                digest: str | None = None) -> list[Any]:
        """Apply the control records of ``batch`` (the topic's bytes) that the shard's
        authority lets through; a ControlRefused for each other one. Operator commands need
        no memory of their answers: each gives one event, the same one when asked again (by
        its command id)."""
        self._ready(known, digest)
        now = int(self._clock() * 1000)
        out: list[Any] = []
        for value in batch:
            checked = (self._authority.check(value, now) if self._authority is not None
                       else None)
            if isinstance(checked, ChangePolicy | CreditBudget):
                out += super().control([checked])
                continue
            out.append(ControlRefused(
                command_id=getattr(checked, "command_id", ""),
                campaign_id=getattr(checked, "campaign_id", ""),
                operator=getattr(checked, "operator", ""),
                reason=getattr(checked, "reason", NO_AUTHORITY), occurred_at=now))
        return out

    def _confirm(self, known: dict[str, int] | None) -> None:
        """The journal holds these seqs: their answers are forgotten, a snapshot waiting taken."""
        for cid, seq in (known or {}).items():
            if seq > self._confirmed.get(cid, -1) and cid in self._states:
                self._confirmed[cid] = seq
                pending = self._unconfirmed.get(cid)
                while pending and next(iter(pending.values()))[0] <= seq:
                    pending.popitem(last=False)
        for cid in [c for c in self._wanted if self._journaled(c)]:
            state = self._states[cid]
            self._captured[cid] = (state.seq, encode_snapshot(state, self._wanted.pop(cid)))

    def _journaled(self, campaign_id: str) -> bool:
        return self._states[campaign_id].seq <= self._confirmed.get(campaign_id, 0)

    def snapshot(self, offsets: dict[int, int] | None = None, taken: dict[str, int] | None = None,
                 known: dict[str, int] | None = None) -> list[tuple[str, int, bytes]]:
        """(campaign, seq, snapshot record) of each campaign whose state changed since
        ``taken`` (campaign -> seq of its last snapshot), with ``offsets``: the journal's end
        offsets read before this call. Never a state past what the journal holds: a
        campaign whose last decisions are not confirmed yet is snapshotted at the next
        call that confirms them (with these offsets, read before it), and given then."""
        self._confirm(known)  # what the worker journaled since its last call
        offsets, taken = offsets or {}, taken or {}
        out = []
        for cid, state in self._states.items():
            if self._journaled(cid):
                self._wanted.pop(cid, None)
                self._captured.pop(cid, None)
                if taken.get(cid) != state.seq:
                    out.append((cid, state.seq, encode_snapshot(state, offsets)))
                continue
            self._wanted.setdefault(cid, offsets)  # the earliest offsets: read before
            captured = self._captured.pop(cid, None)
            if captured is not None and taken.get(cid) != captured[0]:
                out.append((cid, *captured))
        return out

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "recovered": self.recovered,
                "from_snapshots": self.from_snapshots, "rebuilt": self.rebuilt,
                "node": ray.get_runtime_context().get_node_id()}


class ShardBehind(RuntimeError):
    """The shard's state is older than what the worker journaled, and stays so (transient
    for the caller: the journal's write may land yet; it asks again)."""

    transient = True


def _command_key(command: Any) -> tuple[Any, ...]:
    """One command however often it comes (Kafka redelivers it as it was written)."""
    return (type(command).__name__, getattr(command, "message_id", ""), command.occurred_at,
            getattr(command, "outcome", ""), getattr(command, "reason", ""))


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
        authority: ControlAuthority | None = None,
    ) -> None:
        self.n_shards = max(1, min(n_shards, len(campaigns)))
        self._by_shard: dict[int, list[Campaign]] = defaultdict(list)
        for c in campaigns:
            self._by_shard[shard_of(c.id, self.n_shards)].append(c)
        self.layout = layout_of(campaigns, self.n_shards)
        self.digest = layout_digest(self.layout)
        self._args = (journal, journal_topic, snapshot_topic, self.layout, authority)
        self._namespace = namespace
        placement: dict[str, Any] = {}
        if resource:
            placement["resources"] = {resource: 1}
        if spread:
            placement["scheduling_strategy"] = "SPREAD"
        if memory_mb:
            placement["memory"] = memory_mb * 2**20
        self._journaled: dict[str, int] = {}  # campaign -> last seq this worker journaled
        self._calls: dict[object, tuple[int, str, float]] = {}  # under way: shard, method, since
        self._trouble: dict[int, tuple[float, str, float]] = {}  # shard -> since, why, said at
        self._remote_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3,
                                      **placement)(JournalShard)
        self._actors = [self._acquire(i) for i in range(self.n_shards)]
        self._check_layout()

    def _check_layout(self, wait_s: float = LAYOUT_WAIT_S) -> None:
        """Every shard runs this worker's layout, else ShardLayoutError (one line). A shard
        of another layout whose worker has just stopped is dying: it is waited for."""
        deadline = time.monotonic() + wait_s
        while True:
            running = None
            for i in range(self.n_shards):
                try:
                    theirs = ray.get(self._actors[i].layout.remote())
                except RayActorError:  # dead (its owner stopped): take or create it again
                    self._actors[i] = self._acquire(i)
                    theirs = ray.get(self._actors[i].layout.remote())
                except AttributeError:  # no layout(): the shards of an older antirelou
                    raise ShardLayoutError(
                        f"the campaign shards of this deployment (namespace "
                        f"{self._namespace!r}) run an older version of antirelou: stop every "
                        "worker of the deployment, then start them with this one") from None
                if theirs is not None and layout_digest(theirs) != self.digest:
                    running = theirs
                    break
            if running is None:
                return
            if time.monotonic() > deadline:
                raise ShardLayoutError(
                    f"the campaign shards of this deployment (namespace {self._namespace!r}) "
                    f"run another layout: {layout_difference(running, self.layout)}; start "
                    "this worker with the same --shards and campaign file as the running "
                    "workers, or stop them all first")
            time.sleep(0.5)
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
        """The shard's answer. A shard that is away (its node gone, Ray restarting it, its
        owner gone, behind the journal, another layout, or simply not answering) is
        waited for, however long, and said so (``health()``): a stage never skips a batch
        because its shard is away. Only an error the shard's code raised is raised."""
        token = object()
        self._calls[token] = (i, method, time.monotonic())
        try:
            while True:
                try:
                    answer = await getattr(self._actors[i], method).remote(*args)
                except ActorUnavailableError:
                    # Its node is gone and Ray is restarting it (max_restarts=-1), maybe on
                    # another node. The call may or may not have run: calling again is
                    # safe, a shard's methods being idempotent by message id.
                    self._away(i, "unavailable (Ray is restarting it)")
                except RayActorError:
                    # The owner of the actor (another worker) is gone: take (or create)
                    # the shard again, which recovers from the journal.
                    self._away(i, "lost (its owner is gone); recovering it from the journal")
                    self._actors[i] = self._acquire(i)
                except (ShardBehind, LayoutMismatch) as exc:
                    self._away(i, f"{type(exc).__name__}: {exc}")
                else:
                    self._back(i)
                    return answer
                await asyncio.sleep(1.0)
        finally:
            del self._calls[token]

    def _away(self, i: int, reason: str) -> None:
        now = time.monotonic()
        since, _, said = self._trouble.get(i, (now, "", 0.0))
        if now - said >= AWAY_LOG_S:
            log.warning("campaign shard %d %s; waiting (%.0f s so far)", i, reason, now - since)
            said = now
        self._trouble[i] = (since, reason, said)

    def _back(self, i: int) -> None:
        trouble = self._trouble.pop(i, None)
        if trouble is not None:
            log.warning("campaign shard %d answers again after %.0f s", i,
                        time.monotonic() - trouble[0])

    def health(self) -> dict[str, Any]:
        """The shards as this worker's calls find them (``/health``): ``degraded`` while a
        shard is away or a call has waited more than ``SLOW_CALL_S`` (a shard stopped)."""
        now = time.monotonic()
        away = {i: {"reason": reason, "for_s": round(now - since, 1)}
                for i, (since, reason, _) in self._trouble.items()}
        for i, method, started in self._calls.values():
            waited = now - started
            if waited > SLOW_CALL_S and i not in away:
                away[i] = {"reason": f"not answering ({method})", "for_s": round(waited, 1)}
        return {"shards": self.n_shards, "degraded": bool(away),
                "away": {str(i): a for i, a in sorted(away.items())}}

    async def _scatter(self, method: str, batch: Sequence[Any]) -> list[Any]:
        if self.n_shards == 1:  # the usual deployment: one call, no regrouping
            return (list(await self._call(0, method, list(batch), self._known(0), self.digest))
                    if batch else [])
        groups: dict[int, list[Any]] = defaultdict(list)
        for command in batch:
            groups[shard_of(command.campaign_id, self.n_shards)].append(command)
        results = await asyncio.gather(*(self._call(i, method, cmds, self._known(i),
                                                    self.digest)
                                         for i, cmds in groups.items()))
        return [event for events in results for event in events]

    async def decide(self, batch: list[RequestReply | SettleReply | Tick]) -> list[Any]:
        """One actor call per shard touched by the batch; decisions in batch order per shard."""
        return await self._scatter("decide", batch)

    async def control(self, batch: list[bytes]) -> list[ControlOutcome | ControlRefused]:
        """Hand control records (unverified bytes) to the shard of the campaign they name;
        the shard checks them (a record that names none goes to the first, which refuses it)."""
        groups: dict[int, list[bytes]] = defaultdict(list)
        for value in batch:
            groups[shard_of(claimed_campaign(value), self.n_shards)].append(value)
        results = await asyncio.gather(*(self._call(i, "control", values, self._known(i),
                                                    self.digest)
                                         for i, values in groups.items()))
        return [event for events in results for event in events]

    async def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for part in await asyncio.gather(*(self._call(i, "status") for i in range(self.n_shards))):
            out.update(part)
        return out

    async def snapshot(self, offsets: dict[int, int], taken: dict[str, int]
                       ) -> list[tuple[str, int, bytes]]:
        """(campaign, seq, snapshot record) of the campaigns changed since ``taken``, each
        at a state the journal holds (``JournalShard.snapshot``)."""
        parts = await asyncio.gather(*(self._call(i, "snapshot", offsets, taken, self._known(i))
                                       for i in range(self.n_shards)))
        return [item for part in parts for item in part]

    def status_now(self) -> dict[str, dict[str, Any]]:
        """Blocking ``status`` for start-up (the banner), outside any event loop."""
        out: dict[str, dict[str, Any]] = {}
        for part in ray.get([actor.status.remote() for actor in self._actors]):
            out.update(part)
        return out

    def info_now(self) -> list[dict[str, Any]]:
        """Blocking ``info`` for start-up, outside any event loop."""
        return list(ray.get([actor.info.remote() for actor in self._actors]))


def claimed_campaign(value: bytes) -> str:
    """The campaign a control record says it is for, unverified (for routing only)."""
    try:
        message = codec.decode(value)
        if isinstance(message, SignedControl) and isinstance(message.command, str):
            message = codec.decode(message.command.encode())
    except (codec.CodecError, ValueError, TypeError):
        return ""
    campaign_id = getattr(message, "campaign_id", "")
    return campaign_id if isinstance(campaign_id, str) else ""
