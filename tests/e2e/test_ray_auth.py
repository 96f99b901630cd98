"""The Ray cluster closed by default, for real (issue 31): the two-node cluster of
tests/e2e/test_ray_cluster.py (``ray start --head`` + ``ray start --address``) started with
token authentication (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), as the manifests start it.
A driver without the token (none, Ray's auth disabled, a wrong one) cannot connect, so it can
neither call a shard nor run a task; a node without it does not join; the worker with it
joins, creates its shards on the cluster and answers a text; a worker asked to join without
token authentication does not start.

Everything started here is killed by process id (never ``ray stop``); HOME is a folder of
the test's own, so no ~/.ray/auth_token of this machine is read or written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ACCESS_KEY, free_port, new_sender, of, start_worker, stop_worker
from tests.e2e.test_ray_cluster import RESOURCE, kill_session, ray_start

pytestmark = [pytest.mark.services, pytest.mark.scaleout]

ASK = """
import json, sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
    nodes = sum(n["Alive"] for n in ray.nodes())
    ran = ray.get(ray.remote(lambda: "ran")._remote(num_cpus=0), timeout=60)
    print(json.dumps({"connected": True, "nodes": nodes, "ran": ran}))
except Exception as exc:  # what a driver without the token gets
    print(json.dumps({"connected": False, "error": f"{type(exc).__name__}: {exc}"[:300]}))
"""


def auth_env(home: Path, **auth: str | None) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    env.update({k: v for k, v in auth.items() if v is not None})
    return env


def ask(address: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", ASK, address], capture_output=True, text=True,
                          env=env, timeout=180)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.returncode, done.stderr[-2000:])
    return json.loads(lines[-1])


@pytest.fixture
def token_cluster(tmp_path):
    """A head and a second node, both with token authentication and the shards' resource;
    yields (address, token, env of a process holding the token, home)."""
    temp = Path(tempfile.mkdtemp(prefix="raya-", dir="/tmp"))  # Ray's socket paths are short
    home = tmp_path / "home"
    home.mkdir()
    token = secrets.token_hex(32)
    env = auth_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    port = free_port()
    resources = json.dumps({RESOURCE: 10})
    started = []
    try:
        started.append(ray_start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                  "--num-cpus=1", f"--resources={resources}",
                                  "--include-dashboard=false", f"--temp-dir={temp}"],
                                 tmp_path / "ray-head.log", env))
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not (answer := ask(address, env))["connected"]:
            assert started[0].poll() is None, (tmp_path / "ray-head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, answer
            time.sleep(1)
        started.append(ray_start([f"--address={address}", "--node-ip-address=127.0.0.1",
                                  "--num-cpus=1", f"--resources={resources}"],
                                 tmp_path / "ray-node.log", env))
        deadline = time.monotonic() + 90
        while ask(address, env)["nodes"] < 2:
            assert started[1].poll() is None, (tmp_path / "ray-node.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the second Ray node never joined"
            time.sleep(1)
        yield address, token, env, home
    finally:
        for process in reversed(started):
            kill_session(process)
        shutil.rmtree(temp, ignore_errors=True)


def test_without_the_token_nothing_connects_joins_or_runs(token_cluster, tmp_path):
    address, token, env, home = token_cluster
    # With the token: a driver connects, sees both nodes and runs a task.
    assert ask(address, env) == {"connected": True, "nodes": 2, "ran": "ran"}
    # Without it (Ray's default), with auth disabled, or with another token: refused.
    for attempt in (auth_env(home), auth_env(home, RAY_AUTH_MODE="disabled"),
                    auth_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)):
        answer = ask(address, attempt)
        assert answer["connected"] is False, (attempt.get("RAY_AUTH_MODE"), answer)
    assert token not in json.dumps(answer)
    # A node without the token does not join the cluster.
    intruder = ray_start([f"--address={address}", "--node-ip-address=127.0.0.1",
                          "--num-cpus=1"], tmp_path / "ray-intruder.log",
                         auth_env(home, RAY_AUTH_MODE="disabled"))
    try:
        deadline = time.monotonic() + 20
        while intruder.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert ask(address, env)["nodes"] == 2  # still the head and the second node
    finally:
        kill_session(intruder)


def test_the_worker_joins_with_the_token_and_answers_a_text(token_cluster, tmp_path, kafka,
                                                            messagebird):
    address, token, env, home = token_cluster
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "HOME": str(home)}
    # Asked to join without token authentication, the worker does not start.
    (tmp_path / "open").mkdir()
    with pytest.raises(RuntimeError, match="needs token authentication"):
        start_worker(tmp_path / "open", kafka, address, {"RAY_AUTH_MODE": None,
                                                         "HOME": str(home)})
    (tmp_path / "w").mkdir()
    worker = start_worker(tmp_path / "w", kafka, address, {
        **auth, "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        "ANTIRELOU_SHARD_RESOURCE": RESOURCE})
    try:
        answer = worker.post(sender=new_sender())
        assert answer.status_code == 200, answer.text
        worker.wait_for(lambda ev: of(ev, answer.message_id, "ReplySent"), timeout=90)
        log = worker.log_path.read_text()
        assert token not in log
        # Ray's key holder warning: this worker (--role all) holds the provider key.
        assert "--role decide and --role send apart" in log
    finally:
        stop_worker(worker)
