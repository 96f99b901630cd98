"""State survives a worker restart; `antirelou up` runs the whole thing in dry-run mode."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from infra.journal import read_journal
from tests.e2e.conftest import (
    ACCESS_KEY,
    NUMBERS,
    free_port,
    new_sender,
    of,
    stop_worker,
)

pytestmark = pytest.mark.services


def test_a_restarted_worker_recovers_balances_from_the_snapshots(
        tmp_path, kafka, ray_address, messagebird, workers):
    env = {"MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint}
    first = workers.start(tmp_path, kafka, ray_address, env)
    r = first.post(sender=new_sender())
    first.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    before = first.status()
    time.sleep(2.5)  # let the leader write a snapshot (interval 1 s in these tests)
    stop_worker(first)

    # Same deployment (app id, state folder, broker), new process.
    second = workers.start(tmp_path, kafka, ray_address, env, app_id=first.app_id)
    assert second.status() == before
    # Recovery started from the snapshots, not from the beginning of the journal.
    log = second.log_path.read_text()
    assert "recovered 3 campaign(s) from snapshots and 0 journal events after them" in log


def test_texts_flow_after_a_worker_restart(tmp_path, kafka, ray_address, messagebird, workers):
    env = {"MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint}
    first = workers.start(tmp_path, kafka, ray_address, env)
    sender = new_sender()
    r = first.post(sender=sender)
    first.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    before = first.status()["paris"]
    stop_worker(first)
    second = workers.start(tmp_path, kafka, ray_address, env, app_id=first.app_id)
    again = second.post(sender=sender)
    newcomer = second.post(sender=new_sender())
    assert (again.status_code, newcomer.status_code) == (200, 200), newcomer.text
    events = second.wait_for(lambda ev: of(ev, again.message_id, "SenderScreened")
                             and of(ev, newcomer.message_id, "ReplySent"), timeout=30)
    assert of(events, again.message_id, "SenderScreened")[0].reason == "already_answered"
    # Kafka may redeliver a request after the restart's rebalance; the campaign then
    # repeats the very same decision (same seq), and the reply still goes out once.
    (approved,) = set(of(events, newcomer.message_id, "ReplyApproved"))
    assert approved.balance_after_micros == before["balance_micros"] - approved.cost_micros
    assert approved.seq == 2  # the campaign's decision sequence carried on
    assert len([m for m in messagebird.messages if sender in m["recipients"]]) == 1


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_starts_broker_and_worker_in_dry_run_and_ctrl_c_stops_them(tmp_path, ray_address):
    web, kafka_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESSAGEBIRD_", "BIRD_", "KAFKA_"))}
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--insecure-dev",
         "--config", "infra/campaigns.example.toml", "--state-dir", str(tmp_path / "state"),
         "--kafka-port", str(kafka_port), "--web-port", str(web), "--ray-address", ray_address],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    try:
        url = f"http://127.0.0.1:{web}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                health = requests.get(url + "/health", timeout=2).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
                time.sleep(0.5)
        assert health["dry_run"] is True and health["signed_webhooks"] is False
        assert health["campaigns"] == ["lyon", "paris"]
        output = (tmp_path / "up.log").read_text()
        # The example file runs on Bird (issue 30): its webhook first, a dry run without
        # BIRD_ACCESS_KEY, unsigned events in insecure dev mode, no classic warning.
        assert f"Bird webhook at {url}/webhooks/bird (campaigns lyon, paris)" in output
        assert "DRY RUN for lyon, paris: BIRD_ACCESS_KEY not set" in output
        assert "Bird webhook events are accepted unsigned" in output
        assert "MessageBird classic" not in output
        assert "campaign paris (FR, fr): budget EUR 3,700.00, reply 2 GSM-7" in output

        # As the README's Try it does: the 30-minute safety delay off, so the reply comes now.
        cwd = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        bootstrap = f"127.0.0.1:{kafka_port}"
        for campaign in ("paris", "lyon"):
            done = subprocess.run(
                [sys.executable, "-m", "streams.cli", "policy", "set", campaign,
                 "reply_delay_minutes=0", "--insecure-dev", "--kafka", bootstrap,
                 "--config", "infra/campaigns.example.toml"],
                capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
            assert done.returncode == 0 and "in force" in done.stdout, done.stdout + done.stderr

        sender = new_sender()
        event = {"service": "channels", "event": "sms.inbound", "payload": {
            "id": "up-1", "channelId": "lyon-sms-channel", "direction": "incoming",
            "sender": {"contact": {"identifierKey": "phonenumber",
                                   "identifierValue": "+" + sender}},
            "body": {"type": "text", "text": {"text": "coucou"}},
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        deadline = time.monotonic() + 60
        while True:  # the webhook may answer 503 until partitions are assigned
            r = requests.post(url + "/webhooks/bird", json=event, timeout=30)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.json()["campaign"] == "lyon", r.text
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while not of(events := read_journal(bootstrap, "antirelou.journal"), "up-1", "ReplySent"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        (sent,) = of(events, "up-1", "ReplySent")
        assert sent.dry_run and sent.provider_message_id is None
        assert of(events, "up-1", "ReplyApproved")[0].campaign_id == "lyon"

        # Development: no [[operator]] in the example file, so --insecure-dev commands are
        # sent unsigned and applied, loudly; without the flag the CLI says what to configure.
        cli_env = {k: v for k, v in env.items()
                   if not k.startswith(("ANTIRELOU_OPERATOR", "ANTIRELOU_INSECURE"))}
        base = [sys.executable, "-m", "streams.cli", "budget", "credit", "lyon", "1",
                "--source", "dev", "--kafka", bootstrap, "--config",
                "infra/campaigns.example.toml"]
        refused = subprocess.run(base, capture_output=True, text=True, timeout=60, env=cli_env,
                                 cwd=cwd)
        assert refused.returncode == 2 and "antirelou operator new" in refused.stderr
        done = subprocess.run([*base, "--insecure-dev"], capture_output=True, text=True,
                              timeout=60, env=cli_env, cwd=cwd)
        assert done.returncode == 0, done.stderr
        assert "UNSIGNED" in done.stderr and "lyon: credited EUR 1.00" in done.stdout
        assert "INSECURE DEV MODE: unsigned operator command" in (tmp_path / "up.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0, (tmp_path / "up.log").read_text()
    assert not _port_open(kafka_port) and not _port_open(web)
    assert sender not in (tmp_path / "up.log").read_text()
    assert NUMBERS  # the example config's numbers are not the test's
