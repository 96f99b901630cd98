"""Faults of `antirelou up`'s embedded broker, through the real `up` (signed webhooks, the
local MessageBird, pacing off): the broker kill -9'd during a small flood and restarted by
`up`; `up` kill -9'd and started again; Ctrl-C while a reply is in backoff.

Each test runs its own `up` (its own broker, state folder and app id) on the run's Ray
session. Numbers measured are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from infra.supervisor import PID_FILE, alive
from tests.e2e.conftest import (
    ACCESS_KEY,
    CONFIG,
    SECRET,
    SIGNING_KEY,
    Worker,
    free_port,
    new_sender,
    of,
)
from tests.factories import ROOT

pytestmark = pytest.mark.services

ADMIN_TOKEN = "broker-faults-admin-token-0123456789"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Up(Worker):
    kafka_port: int
    state: Path

    def broker_pid(self) -> int:
        return json.loads((self.state / PID_FILE).read_text())["pid"]

    def health(self) -> tuple[int, dict]:
        # The details are for the admin (streams/console/ops.py); a broker outage shows to all.
        r = requests.get(self.url + "/health", timeout=5,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        return r.status_code, r.json()

    def output(self) -> str:
        return self.log_path.read_text()


def start_up(tmp: Path, ray_address: str, messagebird, *, app_id: str | None = None,
             kafka_port: int | None = None, web_port: int | None = None,
             extra_env: dict | None = None, wait: bool = True,
             config_text: str = CONFIG) -> Up:
    config = tmp / "campaigns.toml"
    config.write_text(config_text)
    kafka_port = kafka_port or free_port()
    web_port = web_port or free_port()
    app_id = app_id or "bf-" + uuid.uuid4().hex[:8]
    log_path = tmp / f"up-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MESSAGEBIRD_"))}
    env.update({"MESSAGEBIRD_SIGNING_KEY": SIGNING_KEY,
                "ANTIRELOU_SECRET": SECRET,
                "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY,
                "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
                "ANTIRELOU_ADMIN_TOKEN": ADMIN_TOKEN, **(extra_env or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--config", str(config),
         "--state-dir", str(tmp / "state"), "--app-id", app_id,
         "--kafka-port", str(kafka_port), "--web-port", str(web_port),
         "--ray-address", ray_address, "--partitions", "2", "--snapshot-interval", "1",
         "--public-url", f"http://127.0.0.1:{web_port}"],
        stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        start_new_session=True,
    )
    up = Up(f"http://127.0.0.1:{web_port}", f"127.0.0.1:{kafka_port}", app_id, log_path,
            process, config)
    up.kafka_port, up.state = kafka_port, tmp / "state"
    if wait:
        wait_ready(up)
    return up


def wait_ready(up: Up, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert up.process.poll() is None, f"up exited {up.process.returncode}:\n{up.output()}"
        try:
            # A text to no campaign is journaled (404) once the pipeline takes writes.
            if up.post(sender=new_sender(), recipient="33600000000").status_code == 404:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"up did not come up:\n{up.output()}"
        time.sleep(0.5)
    # And the worker has started (tables, agents): a text is screened.
    probe = up.post(sender=new_sender(), campaign="tiny")
    assert probe.status_code == 200, probe.text
    up.wait_for(lambda ev: of(ev, probe.message_id, "SenderScreened"),
                timeout=max(10.0, deadline - time.monotonic()))


def ctrl_c(up: Up, timeout: float = 30.0) -> float:
    """SIGINT to `up` alone (as a terminal's Ctrl-C reaches it); seconds until it exited."""
    start = time.monotonic()
    os.kill(up.process.pid, signal.SIGINT)
    up.process.wait(timeout)
    return time.monotonic() - start


def stop(up: Up) -> None:
    if up.process.poll() is None:
        with_pid = None
        try:
            with_pid = up.broker_pid()
        except (OSError, ValueError):
            pass
        os.kill(up.process.pid, signal.SIGINT)
        try:
            up.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.process.pid, signal.SIGKILL)
            up.process.wait(10)
        if with_pid and alive(with_pid):
            os.killpg(with_pid, signal.SIGKILL)


def post(up: Up, sender: str) -> tuple[int | None, str, float]:
    try:
        r = up.post(sender=sender)
    except requests.RequestException:
        return None, "", time.monotonic()
    return r.status_code, r.message_id, time.monotonic()


def screened(events, mid) -> bool:
    return bool(of(events, mid, "SenderScreened"))


def sms_to(messagebird, sender: str) -> int:
    return len([m for m in messagebird.messages if sender in m["recipients"]])


def test_kill_9_of_up_then_the_same_command_starts_stopping_its_orphan(
        tmp_path, ray_address, messagebird):
    first = start_up(tmp_path, ray_address, messagebird)
    sender = new_sender()
    r = first.post(sender=sender)
    assert r.status_code == 200, r.text
    first.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    broker_pid = first.broker_pid()

    os.kill(first.process.pid, signal.SIGKILL)  # `up` alone; its broker is not signalled
    first.process.wait(10)
    again = start_up(tmp_path, ray_address, messagebird, app_id=first.app_id,
                     kafka_port=first.kafka_port)
    try:
        said = [line for line in again.output().splitlines()
                if f"previous `antirelou up` (pid {first.process.pid}" in line]
        assert said, again.output()
        print("\nthe next up said:", said[0])
        assert not alive(broker_pid) and again.broker_pid() != broker_pid
        # The deployment carries on: the sender is not answered twice, a newcomer is.
        newcomer = new_sender()
        a, b = again.post(sender=sender), again.post(sender=newcomer)
        assert (a.status_code, b.status_code) == (200, 200)
        events = again.wait_for(lambda ev: of(ev, a.message_id, "SenderScreened")
                                and of(ev, b.message_id, "ReplySent"))
        assert of(events, a.message_id, "SenderScreened")[0].reason == "already_answered"
        assert sms_to(messagebird, sender) == 1 and sms_to(messagebird, newcomer) == 1
        new_broker = again.broker_pid()
        took = ctrl_c(again)
    finally:
        stop(again)
    assert again.process.returncode == 0, again.output()
    print(f"second up stopped {took:.1f} s after Ctrl-C")
    assert not alive(new_broker) and not port_open(again.kafka_port)
    assert not (again.state / PID_FILE).exists()


def test_ctrl_c_with_a_reply_in_backoff_stops_up_within_10_s(
        tmp_path, ray_address, messagebird):
    up = start_up(tmp_path, ray_address, messagebird,
                  extra_env={"ANTIRELOU_SEND_ATTEMPTS": "15"})
    try:
        broker_pid = up.broker_pid()
        messagebird.fail_next(10_000, 503)  # every call fails: the reply waits in backoff
        r = up.post(sender=new_sender())
        assert r.status_code == 200, r.text
        up.wait_for(lambda ev: any(e.TYPE == "ReplyAttempted" and e.attempt >= 2
                                   for e in of(ev, r.message_id)))
        took = ctrl_c(up)
        print(f"\nup stopped {took:.1f} s after Ctrl-C with a reply in backoff "
              f"(exit {up.process.returncode})")
    finally:
        messagebird.reset()
        stop(up)
    assert took < 10, up.output()
    assert not alive(broker_pid) and not port_open(up.kafka_port)
    assert not port_open(int(up.url.rsplit(":", 1)[1]))
    assert not (up.state / PID_FILE).exists()


def test_the_broker_killed_during_a_flood_is_restarted_by_up_and_no_text_is_lost(
        tmp_path, ray_address, messagebird):
    # The supervisor waits 2 s before the restart here (0.5 s by default), so that the
    # outage lasts long enough to be seen from outside.
    up = start_up(tmp_path, ray_address, messagebird,
                  extra_env={"ANTIRELOU_BROKER_RESTART_DELAY_S": "2"})
    try:
        # A running deployment, not one still settling: its first commits and a broker
        # snapshot after them (a kill within about a second of the worker's first
        # assignment can still leave a partition unread: README, known limits).
        time.sleep(3)
        senders = [new_sender() for _ in range(30)]
        flood = [(s, uuid.uuid4().hex) for s in senders for _ in range(2)]
        answers: dict[str, tuple[int | None, float]] = {}  # message id -> (status, when)

        def post_one(sender: str, mid: str) -> None:
            try:
                status = up.post(sender=sender, message_id=mid).status_code
            except requests.RequestException:
                status = None
            answers[mid] = (status, time.monotonic())

        with ThreadPoolExecutor(16) as pool:
            futures = []
            for s, m in flood[:20]:
                futures.append(pool.submit(post_one, s, m))
                time.sleep(0.01)  # about 100 texts/s
            os.kill(up.broker_pid(), signal.SIGKILL)
            killed_at = time.monotonic()
            # /health says so at once, and the webhook refuses at once (the provider
            # retries a 503).
            code, health = up.health()
            while code == 200:
                assert time.monotonic() - killed_at < 2, health
                code, health = up.health()
            seen_down = time.monotonic() - killed_at
            t0 = time.monotonic()
            refused = up.post(sender=new_sender())
            refused_in = time.monotonic() - t0
            for s, m in flood[20:]:  # the flood goes on during the outage
                futures.append(pool.submit(post_one, s, m))
                time.sleep(0.01)
            for f in futures:
                f.result()
        print(f"\n/health not ok {seen_down:.2f} s after the kill: {health['status']}")
        assert code == 503 and not health["broker"]["up"]
        assert "killed by SIGKILL" in health["status"] and "restarting" in health["status"]
        assert refused.status_code == 503 and refused_in < 1.0, (refused.text, refused_in)
        # Back by itself.
        while up.health()[0] != 200:
            assert time.monotonic() - killed_at < 60, up.output()[-3000:]
            time.sleep(0.05)
        print(f"broker back (health ok) {time.monotonic() - killed_at:.1f} s after the kill")
        before = [m for m, (st, when) in answers.items() if st == 200 and when < killed_at]
        refused_flood = [(s, m) for s, m in flood if answers[m][0] != 200]
        assert refused_flood, "the flood was over before the kill"
        # MessageBird retries what got no 200: the same message ids, until accepted.
        retried_at = time.monotonic()
        after: list[str] = []
        for s, m in refused_flood + [(new_sender(), uuid.uuid4().hex) for _ in range(5)]:
            while True:
                try:
                    status = up.post(sender=s, message_id=m).status_code
                except requests.RequestException:
                    status = None
                if status == 200:
                    after.append(m)
                    break
                assert time.monotonic() - retried_at < 60, status
                time.sleep(0.2)
        print(f"first retried text acknowledged {time.monotonic() - killed_at:.1f} s after "
              f"the kill; {len(before)} acknowledged before it, {len(refused_flood)} refused "
              "(503 or no answer) and retried")
        acknowledged = before + after
        deadline = time.monotonic() + 60
        while True:
            events = up.journal()
            missing = [m for m in acknowledged if not screened(events, m)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        status, health = up.health()
        why = (f"{len(missing)} acknowledged text(s) never screened "
               f"({len(set(missing) & set(before))} acknowledged before the kill):\n"
               + "\n".join(line for line in up.output().splitlines()
                           if "WARNING" in line or "ERROR" in line)[-4000:])
        # Every text acknowledged is screened, those of the lost second included (written
        # again by `up`): a partition that stalled or stepped over records fails here.
        assert not missing, why
        assert all(of(events, m, "TextReceived") for m in acknowledged if m not in missing)
        print(f"texts written again after the restart: {health['texts_written_again']}; "
              f"records lost seen by the worker: {health['records_lost']['records']}")
        assert health["broker"]["restarts"] == 1 and health["broker"]["last_outage_s"] >= 2
        time.sleep(2)  # replies still under way
        for s in set(senders):
            assert sms_to(messagebird, s) <= 1, s
        audit = subprocess.run(
            [sys.executable, "-m", "streams.cli", "audit", "--kafka", up.kafka,
             "--app-id", up.app_id, "--config", str(up.config)],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        print("audit exit", audit.returncode, audit.stdout[-1500:])
        if audit.returncode != 0:  # what was lost is said
            assert audit.returncode == 1, audit.stderr
            assert "Lost tail: this journal is missing records" in audit.stdout
    finally:
        stop(up)
