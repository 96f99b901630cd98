"""A real Ray cluster on this machine: a head (``ray start --head``) and a second node
(``ray start --address``), both offering the custom resource the shards need; the worker
joins it with ``--ray-address`` and spreads two shards over the two nodes. The node holding
one shard is killed (every process of it, SIGKILL) mid-flood: Ray restarts the shard on the
head, where it recovers from snapshot + journal, and the flood goes on.

The test process keeps its own Ray session (``ray.init(address="local")`` in
tests/conftest.py): it never joins this cluster; it looks at it through a small driver
process. Everything started here is killed by process id in the fixture's finalizer (never
``ray stop``, which would stop every Ray on the machine).

Run alone with ``pytest -m scaleout``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ACCESS_KEY, free_port, new_sender, start_worker, stop_worker
from tests.e2e.test_scaleout_workers import all_settled, check_deployment, post_quietly

pytestmark = [pytest.mark.services, pytest.mark.scaleout]

RESOURCE = "antirelou_shards"
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
# Node deaths noticed in about 8 s instead of Ray's default 15-30 s: longer than Ray's own
# retries of a call to an unavailable actor last (about 4 s), so the facade's wait is used.
FAST_HEALTH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "2000",
               "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "4"}

LOOK = """
import json, sys, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], log_to_driver=False,
         configure_logging=False)
nodes = {n["NodeID"]: "node:__internal_head__" in n["Resources"] for n in ray.nodes() if n["Alive"]}
shards = {}
for i in range(int(sys.argv[3])):
    try:
        actor = ray.get_actor(f"antirelou-shard-{i}", namespace=sys.argv[2])
        shards[i] = ray.get(actor.info.remote(), timeout=60)
    except ValueError:
        pass
print(json.dumps({"nodes": nodes, "shards": shards}))
"""


@dataclass
class RayCluster:
    address: str
    head: subprocess.Popen
    node: subprocess.Popen
    logs: Path

    def look(self, namespace: str = "none", shards: int = 0) -> dict:
        """Alive nodes (id -> is head) and the shards' info, seen by a driver of its own."""
        done = subprocess.run([sys.executable, "-c", LOOK, self.address, namespace, str(shards)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def kill_node(self) -> int:
        """SIGKILL every process of the second node (its session): raylet, workers, actors."""
        return kill_session(self.node)


def kill_session(process: subprocess.Popen) -> int:
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == process.pid:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        pass
    return killed


def ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    # --block: `ray start` stays in the foreground with its processes in its own session,
    # so the fixture can kill exactly them.
    return subprocess.Popen([*RAY, "start", *args, "--block", "--disable-usage-stats"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


@pytest.fixture
def ray_cluster(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))  # Ray's socket paths are short
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **FAST_HEALTH}
    env.pop("RAY_ADDRESS", None)
    resources = json.dumps({RESOURCE: 10})
    head = ray_start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                      "--num-cpus=1", f"--resources={resources}", "--include-dashboard=false",
                      f"--temp-dir={temp}"], tmp_path / "ray-head.log", env)
    node = None
    try:
        cluster = RayCluster(f"127.0.0.1:{port}", head, head, tmp_path)
        deadline = time.monotonic() + 60
        while True:  # the head answers
            assert head.poll() is None, (tmp_path / "ray-head.log").read_text()[-2000:]
            done = subprocess.run([sys.executable, "-c", LOOK, cluster.address, "none", "0"],
                                  capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                break
            assert time.monotonic() < deadline, done.stderr[-2000:]
            time.sleep(1)
        node = ray_start([f"--address={cluster.address}", "--node-ip-address=127.0.0.1",
                          "--num-cpus=1", f"--resources={resources}"],
                         tmp_path / "ray-node.log", env)
        cluster.node = node
        deadline = time.monotonic() + 60
        while len(cluster.look()["nodes"]) < 2:
            assert node.poll() is None, (tmp_path / "ray-node.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the second Ray node never joined"
            time.sleep(1)
        yield cluster
    finally:
        if node is not None:
            kill_session(node)
        kill_session(head)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_killed_ray_node_takes_its_shard_down_and_it_comes_back_on_the_other_node(
        tmp_path, kafka, ray_cluster, messagebird):
    env = {"MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
           "ANTIRELOU_SHARDS": "2", "ANTIRELOU_SHARD_RESOURCE": RESOURCE,
           "ANTIRELOU_SHARD_SPREAD": "1"}
    (tmp_path / "w").mkdir()
    worker = start_worker(tmp_path / "w", kafka, ray_cluster.address, env)
    try:
        # The two shards are spread over the two nodes.
        seen = ray_cluster.look(worker.app_id, 2)
        head = next(n for n, is_head in seen["nodes"].items() if is_head)
        other = next(n for n, is_head in seen["nodes"].items() if not is_head)
        placed = {int(i): info["node"] for i, info in seen["shards"].items()}
        assert sorted(placed.values()) == sorted([head, other]), (placed, seen["nodes"])
        doomed = next(i for i, n in placed.items() if n == other)
        doomed_pid = seen["shards"][str(doomed)]["pid"]
        doomed_campaign = next(c for c in ("paris", "lyon") if zlib.crc32(c.encode()) % 2 == doomed)

        senders = [new_sender() for _ in range(30)]
        campaign = {s: ("paris", "lyon")[i % 2] for i, s in enumerate(senders)}
        flood = [s for s in senders for _ in range(2)]  # two texts each: one reply each
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:  # 60 texts over about 6 s
            futures = [pool.submit(post_quietly, worker, at=start + i * 0.1, sender=s,
                                   campaign=campaign[s]) for i, s in enumerate(flood)]
            worker.wait_for(lambda ev: sum(e.TYPE == "ReplySent" for e in ev) >= 3)
            killed_at = time.monotonic()
            killed = ray_cluster.kill_node()  # mid-flood: the node and the shard on it
            answers = [f.result() for f in futures]
        # The webhook does not wait for the shards: every text is acknowledged.
        assert [status for status, _ in answers] == [200] * len(flood), answers
        acknowledged = [mid for _, mid in answers]
        posted_after_kill = sum(start + i * 0.1 > killed_at for i in range(len(flood)))

        events = worker.wait_for(all_settled(acknowledged), timeout=150)
        settled_s = time.monotonic() - killed_at
        time.sleep(1)
        forwarded, outcomes = check_deployment(events, acknowledged, senders, worker, messagebird)
        # Both campaigns were answered, the doomed shard's too.
        for cid in ("paris", "lyon"):
            assert any(e.TYPE == "ReplySent" and e.campaign_id == cid for e in events), cid

        # The node is gone; the shard runs on the head now, a new process that recovered.
        after = ray_cluster.look(worker.app_id, 2)
        assert after["nodes"] == {head: True}, after
        moved = after["shards"][str(doomed)]
        assert moved["node"] == head and moved["pid"] != doomed_pid, (moved, doomed_pid)
        log = worker.log_path.read_text()
        sent = sum("ReplySent" in o for o in outcomes.values())
        print(f"\nray cluster: shard {doomed} ({doomed_campaign}) on the killed node "
              f"({killed} processes); {posted_after_kill} of {len(flood)} texts posted after "
              f"the kill; all settled {settled_s:.1f} s after it; {len(forwarded)} forwarded, "
              f"{sent} sent, {len(forwarded) - sent} uncertain; shard recovered "
              f"{moved['recovered']} journal events after {moved['from_snapshots']} snapshot(s); "
              f"'unavailable' warnings {log.count('unavailable; waiting')}")
    finally:
        stop_worker(worker)
