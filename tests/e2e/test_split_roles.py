"""A deployment split as the cluster files run it (issue 31): a deciding worker
(``--role decide``: screening, decisions, the Ray shards, no provider key) and a sending
process (``--role send``: the provider keys, no Ray, a consumer group of its own). A text is
answered once; the process that holds the MessageBird key is not a driver of the Ray
cluster; the deciding worker refuses to start with that key.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import ACCESS_KEY, CONFIG, REPLY_PARIS, SECRET, free_port, new_sender, of
from tests.e2e.test_web_role import group_members, last_assignment

pytestmark = pytest.mark.services


def ray_driver_pids() -> set[int]:
    """The process ids of every driver the test's Ray session has known (the workers
    started here join it with --ray-address)."""
    import ray

    return {int(job["DriverPid"]) for job in ray._private.state.jobs()}


def test_the_key_holder_sends_what_the_deciding_worker_approved_and_is_no_ray_driver(
        tmp_path, kafka, ray_address, messagebird, workers):
    (tmp_path / "decide").mkdir()
    (tmp_path / "send").mkdir()
    decide = workers.start(tmp_path / "decide", kafka, ray_address,
                           {"MESSAGEBIRD_ACCESS_KEY": None}, args=("--role", "decide"))
    send = workers.start(tmp_path / "send", kafka, ray_address,
                         {"MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY,
                          "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
                          "MESSAGEBIRD_SIGNING_KEY": None},  # no webhook there
                         app_id=decide.app_id, probe=False, args=("--role", "send"))
    health = send.admin_get("/health").json()
    assert health["dry_run"] is False and health["signed_webhooks"] is False

    # A text through the deciding worker's webhook: approved there, sent from the sender.
    sender = new_sender()
    answer = decide.post(sender=sender)
    assert answer.status_code == 200, answer.text
    (sent,) = of(decide.wait_for(lambda ev: of(ev, answer.message_id, "ReplySent")),
                 answer.message_id, "ReplySent")
    assert sent.dry_run is False
    sms = [m for m in messagebird.messages if sender in m["recipients"]]
    assert [(m["body"], m["reference"]) for m in sms] == [(REPLY_PARIS, answer.message_id)]

    # The deciding worker sends nothing and never takes sms-outbound; the sending process
    # takes it, in a group of its own (no rebalance of the deciding workers).
    assert "no reply is sent from here" in decide.log_path.read_text()
    assert f"{decide.app_id}.sms-outbound" not in last_assignment(decide)
    assert last_assignment(send).get(f"{decide.app_id}.sms-outbound") == "{0-1}"
    assert len(group_members(kafka, decide.app_id)) == 1
    assert len(group_members(kafka, f"{decide.app_id}-send")) == 1
    # The deciding worker is a driver of the Ray session; the key holder is not.
    drivers = ray_driver_pids()
    assert decide.process.pid in drivers and send.process.pid not in drivers
    assert sender not in send.log_path.read_text() and ACCESS_KEY not in send.log_path.read_text()


def test_a_deciding_worker_with_a_provider_key_does_not_start(tmp_path, kafka, ray_address):
    config = tmp_path / "campaigns.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--role", "decide", "--kafka", kafka,
         "--ray-address", ray_address, "--config", str(config), "--state-dir",
         str(tmp_path / "state"), "--web-port", str(free_port())],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY,
             "ANTIRELOU_SECRET": SECRET})
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("antirelou:")]
    assert "MESSAGEBIRD_ACCESS_KEY" in line and "--role send" in line
    assert ACCESS_KEY not in done.stderr
