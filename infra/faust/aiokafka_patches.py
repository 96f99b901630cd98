"""A floor between empty fetches, for brokers that do not long-poll (noida-db).

A Kafka broker holds a fetch with no data for ``fetch.max.wait.ms`` (aiokafka: 500 ms)
before it answers. noida-db 0.2.3 answers at once, so every idle aiokafka consumer sends
fetches back to back: about 4,500 a second, most of a core, in the client and in the broker
(measured by ``tests/benchmarks/bench_pipeline.py``; py-spy showed the worker's Faust
consumer thread and the policy follower spending their time writing fetch requests).

:func:`install_fetch_floor` makes a fetch that returned no records take at least ``floor_s``
(default 10 ms) before the consumer's background fetcher may send the next one. Against a real
Kafka an empty answer already took ``fetch.max.wait.ms``, so nothing changes; against
noida-db a new record waits at most ``floor_s`` longer to be fetched, and after a lull (200
ms with nothing) the floor grows to 100 ms (``ANTIRELOU_FETCH_IDLE_MAX_MS``; ``floor_after``).

It wraps ``aiokafka.consumer.fetcher.Fetcher._proc_fetch_request`` (aiokafka is pinned:
0.14.0); if that method is missing it logs a warning and does nothing. Set
``ANTIRELOU_FETCH_FLOOR_MS=0`` to turn it off.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("antirelou")

DEFAULT_FLOOR_S = 0.010


IDLE_AFTER = 20  # empty fetches in a row (200 ms at the floor) before the floor grows
DEFAULT_IDLE_MAX_S = 0.100


def floor_after(empties: int, floor_s: float, max_s: float) -> float:
    """The wait after the ``empties``-th empty fetch in a row: the floor, then (once the
    consumer has had nothing for IDLE_AFTER fetches) twice as long every 10 more, up to
    ``max_s``. An idle worker fetched 100 times a second from noida-db (10-14% of a core,
    py-spy: its Faust consumer thread writing fetch requests); at 100 ms, 10 a second. A
    text after a lull then waits up to ``max_s`` to be fetched; once one came, the floor is
    back (a Faust worker reads every stage topic with one consumer, so the next stages
    fetch at the floor too)."""
    if empties < IDLE_AFTER or max_s <= floor_s:
        return floor_s
    return min(max_s, floor_s * 2 ** ((empties - IDLE_AFTER) // 10 + 1))


def floored(original, floor_s: float, max_s: float):  # type: ignore[no-untyped-def]
    """``Fetcher._proc_fetch_request`` with the floor after an empty answer."""

    async def proc_fetch_request(self, assignment, node_id, request):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        started = loop.time()
        has_new_data = await original(self, assignment, node_id, request)
        empties = self.__dict__.setdefault("_antirelou_empties", {})
        if has_new_data:
            empties.pop(node_id, None)
            return has_new_data
        n = empties[node_id] = empties.get(node_id, 0) + 1
        # While this task runs, the fetcher sends no other fetch to this node.
        remaining = (min(floor_after(n, floor_s, max_s), self._fetch_max_wait_ms / 1000)
                     - (loop.time() - started))
        if remaining > 0:
            try:
                await asyncio.sleep(remaining)
            except asyncio.CancelledError:
                # Like the original: a cancelled fetch (close, unassignment) just ends.
                return False
        return has_new_data

    proc_fetch_request.antirelou_floor = floor_s  # type: ignore[attr-defined]
    return proc_fetch_request


def install_fetch_floor(floor_s: float | None = None, max_s: float | None = None) -> float:
    """Install the floor (once per process); returns the floor in seconds (0: not installed).
    ``max_s``: what the floor grows to while the consumer gets nothing (``floor_after``)."""
    if floor_s is None:
        floor_s = float(os.environ.get("ANTIRELOU_FETCH_FLOOR_MS", DEFAULT_FLOOR_S * 1000)) / 1000
    if max_s is None:
        max_s = float(os.environ.get("ANTIRELOU_FETCH_IDLE_MAX_MS",
                                     DEFAULT_IDLE_MAX_S * 1000)) / 1000
    if floor_s <= 0:
        return 0.0
    from aiokafka.consumer import fetcher

    original = getattr(fetcher.Fetcher, "_proc_fetch_request", None)
    if original is None:
        log.warning("aiokafka has no Fetcher._proc_fetch_request: no fetch floor installed")
        return 0.0
    if getattr(original, "antirelou_floor", None) is not None:
        return original.antirelou_floor
    fetcher.Fetcher._proc_fetch_request = floored(original, floor_s, max(floor_s, max_s))
    return floor_s


def install_keep_member_on_stale_commit() -> bool:
    """An offset commit refused with ILLEGAL_GENERATION rejoins as the same member.

    aiokafka 0.14.0 answers that refusal by forgetting its member id and joining as a new
    member. noida-db 0.2.3 refuses a commit with ILLEGAL_GENERATION while a rebalance is
    under way (a Kafka broker says REBALANCE_IN_PROGRESS: the generation is still current),
    then names the forgotten member id as the new generation's leader; that member never
    joins again, so nobody sends the assignment and the group wedges until the broker
    restarts (tests/infra/faust/noida_group_wedge.py shows it with aiokafka alone). Kafka's own
    Java client keeps its member id on ILLEGAL_GENERATION and resets only the generation;
    this does the same for commits: the member rejoins under its id, the broker's leader is
    a live member, and the rebalance completes. Against a Kafka broker the rejoin is the
    same, only under the old id (a broker that no longer knows the id answers
    UNKNOWN_MEMBER_ID, and aiokafka then forgets it as before).

    Wraps ``GroupCoordinator._do_commit_offsets``; returns False (with a warning) if aiokafka
    has no such method."""
    from aiokafka import errors
    from aiokafka.consumer import group_coordinator as gc

    original = getattr(gc.GroupCoordinator, "_do_commit_offsets", None)
    if original is None:
        log.warning("aiokafka has no GroupCoordinator._do_commit_offsets: commits refused "
                    "with ILLEGAL_GENERATION rejoin as a new member")
        return False
    if getattr(original, "antirelou_keep_member", False):
        return True
    unknown = gc.JoinGroupRequest.UNKNOWN_MEMBER_ID

    async def _do_commit_offsets(self, assignment, offsets):  # type: ignore[no-untyped-def]
        member_id = self.member_id
        try:
            return await original(self, assignment, offsets)
        except errors.IllegalGenerationError:
            if member_id != unknown and self.member_id == unknown:
                self.member_id = member_id  # the generation stays reset: a rejoin is due
            raise

    _do_commit_offsets.antirelou_keep_member = True  # type: ignore[attr-defined]
    gc.GroupCoordinator._do_commit_offsets = _do_commit_offsets
    return True
