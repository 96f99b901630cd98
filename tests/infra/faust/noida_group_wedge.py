"""noida-db 0.2.3 wedges a consumer group when its leader commits while a second member
joins: a minimal reproduction with aiokafka alone (no Faust, no antirelou code but the
broker launcher). Not a test: run it, it prints what happened and exits 1 if the group
wedged::

    .venv/bin/python tests/infra/faust/noida_group_wedge.py          # A commits: wedges
    .venv/bin/python tests/infra/faust/noida_group_wedge.py --no-commit   # control: fine
    .venv/bin/python tests/infra/faust/noida_group_wedge.py --keep-member # the fix: fine

What it does: consumer A joins group ``g`` alone (generation 1, leader, both partitions of
``t``). Consumer B joins. While that rebalance is under way, A commits an offset with its
generation (as Faust does every few seconds, and on every revoke). What noida-db does
wrong, step by step (the aiokafka DEBUG lines it prints show it):

1. It answers A's OffsetCommit with ILLEGAL_GENERATION (22). A real Kafka answers
   REBALANCE_IN_PROGRESS (27) while the group prepares a rebalance: the generation is
   still A's. aiokafka, told its generation is illegal, drops its member id and rejoins
   as a new member.
2. Its JoinGroup answer for generation 2 names as leader A's *old* member id, which will
   never send a JoinGroup or SyncGroup again. A real Kafka elects the leader among the
   members that joined this generation. No live member is leader, nobody sends the
   assignment; each follower's SyncGroup fails after the session timeout (10 s), it
   rejoins, and gets the same dead leader again, for ever (the old id is never evicted).

Without the commit (``--no-commit``) the same two members share the partitions within a
second, and when A leaves B takes both. A restart of noida-db clears the wedge (the group
is forgotten). ``--keep-member`` installs the workers' fix
(``infra.faust.aiokafka_patches.install_keep_member_on_stale_commit``: A rejoins under its own id, as
Kafka's Java client does): the group completes (tests/infra/faust/test_aiokafka_patches.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.structs import OffsetAndMetadata  # noqa: E402

from infra.broker import EmbeddedBroker, ensure_topics  # noqa: E402


def consumer(bootstrap: str, name: str) -> AIOKafkaConsumer:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="g", enable_auto_commit=False,
                         session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
                         client_id=name)
    c.subscribe(["t"])
    return c


async def poll(c: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await c.getmany(timeout_ms=200)


async def scenario(bootstrap: str, commit: bool) -> bool:
    a, b = consumer(bootstrap, "A"), consumer(bootstrap, "B")
    stop = asyncio.Event()
    await a.start()
    polling = [asyncio.create_task(poll(a, stop))]
    while len(a.assignment()) < 2:
        await asyncio.sleep(0.1)
    print("A alone: generation 1, partitions", sorted(p.partition for p in a.assignment()))
    b_start = asyncio.create_task(b.start())  # B's JoinGroup starts a rebalance
    await asyncio.sleep(0.5)
    if commit:
        try:  # A's commit with its (still current) generation, mid-rebalance
            await a.commit({TopicPartition("t", 0): OffsetAndMetadata(0, "")})
            print("A's commit accepted")
        except Exception as exc:  # noqa: BLE001 - this is what is shown
            print(f"A's commit refused: {type(exc).__name__}")
    deadline = time.monotonic() + 35
    while time.monotonic() < deadline:
        if b_start.done() and a.assignment() and b.assignment():
            break
        await asyncio.sleep(0.2)
    shared = b_start.done() and bool(a.assignment()) and bool(b.assignment())
    print(f"after {35 - max(0.0, deadline - time.monotonic()):.0f} s: A holds "
          f"{sorted(p.partition for p in a.assignment())}, B has "
          f"{sorted(p.partition for p in b.assignment()) if b_start.done() else 'nothing'}")
    stop.set()
    b_start.cancel()
    for task in polling:
        task.cancel()
    for c in (a, b):
        try:
            await asyncio.wait_for(c.stop(), 5)
        except Exception:  # noqa: BLE001, S110 - a wedged member may not stop cleanly
            pass
    return shared


class JoinLeaders(logging.Handler):
    """Prints the generation and leader of each JoinGroup answer aiokafka logs."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Join group response"):
            fields = {k: v.strip("'") for k, v in (
                part.split("=", 1) for part in text.split("(", 1)[1].split(", ") if "=" in part)}
            print(f"  JoinGroup answer: generation {fields.get('generation_id')}, leader "
                  f"{fields.get('leader_id', '?')[-12:]}, this member "
                  f"{fields.get('member_id', '?')[-12:]}")
        elif "OffsetCommit failed" in text or "SyncGroup for group" in text:
            print("  " + text.split("\n")[0][:120])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-commit", action="store_true")
    parser.add_argument("--keep-member", action="store_true",
                        help="with infra.faust.aiokafka_patches.install_keep_member_on_stale_commit")
    args = parser.parse_args()
    if args.keep_member:
        from infra.faust.aiokafka_patches import install_keep_member_on_stale_commit
        install_keep_member_on_stale_commit()
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.setLevel(logging.DEBUG)
    coordinator.addHandler(JoinLeaders())
    coordinator.propagate = False
    with EmbeddedBroker(Path(tempfile.mkdtemp()) / "kafka") as broker:
        ensure_topics(broker.bootstrap_servers, {"t": 2})
        shared = asyncio.run(scenario(broker.bootstrap_servers, commit=not args.no_commit))
    print("the two members share the partitions" if shared else
          "WEDGED: the group never completed the rebalance")
    return 0 if shared else 1


if __name__ == "__main__":
    sys.exit(main())
