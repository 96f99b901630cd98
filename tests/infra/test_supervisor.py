"""The supervised embedded broker (infra/supervisor.py), with the real noida-db: a broker
killed is seen at once and started again; one left by a dead owner is stopped by the next;
one whose owner is killed by SIGKILL goes with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from infra.broker import BrokerError, EmbeddedBroker, ensure_topics
from infra.supervisor import PID_FILE, BrokerSupervisor, alive

pytestmark = pytest.mark.services


def wait_until(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - start


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(topic, v, key=b"k")
        finally:
            await producer.stop()

    asyncio.run(go())


def test_a_killed_broker_is_reported_down_at_once_and_started_again(tmp_path, stop_at_end):
    gave_up: list[str] = []
    sup = stop_at_end(BrokerSupervisor(EmbeddedBroker(tmp_path / "kafka", die_with_parent=True),
                                       tmp_path, on_give_up=gave_up.append).start())
    bootstrap = sup.broker.bootstrap_servers
    assert sup.status().up and sup.orphan_note is None
    pid_file = json.loads((tmp_path / PID_FILE).read_text())
    assert pid_file["pid"] == sup.broker.pid and pid_file["up_pid"] == os.getpid()
    ensure_topics(bootstrap, {"t": 1})
    produce(bootstrap, "t", [b"kept"])
    time.sleep(1.5)  # noida-db persists about once a second

    old = sup.broker.pid
    os.kill(old, signal.SIGKILL)
    # Seen down within a poll or two; the reason names the death.
    wait_until(lambda: not sup.status().up, 2.0, "down after kill -9")
    assert "killed by SIGKILL" in (sup.status().reason or "")
    wait_until(lambda: sup.status().up, 30.0, "up again")
    status = sup.status()
    assert status.restarts == 1 and status.last_outage_s is not None
    assert sup.broker.pid != old and sup.broker.bootstrap_servers == bootstrap
    assert json.loads((tmp_path / PID_FILE).read_text())["pid"] == sup.broker.pid
    assert [e for e in read_journal_values(bootstrap, "t")] == [b"kept"]
    assert not gave_up
    sup.stop()
    assert not (tmp_path / PID_FILE).exists()


def read_journal_values(bootstrap: str, topic: str) -> list[bytes]:
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            out: list[bytes] = []
            while await consumer.position(tp) < end:
                for r in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    out.append(r.value)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(go())


def test_a_broker_dying_too_often_makes_the_supervisor_give_up_and_say_why(tmp_path,
                                                                         stop_at_end):
    gave_up: list[str] = []
    sup = stop_at_end(BrokerSupervisor(EmbeddedBroker(tmp_path / "kafka"), tmp_path,
                                       max_restarts=0, on_give_up=gave_up.append).start())
    os.kill(sup.broker.pid, signal.SIGKILL)
    wait_until(lambda: gave_up, 5.0, "gave up")
    assert "giving up" in gave_up[0] and "killed by SIGKILL" in gave_up[0]
    assert sup.gave_up == gave_up[0] and not sup.status().up


def test_the_next_owner_stops_a_broker_left_by_a_dead_one_and_says_so(tmp_path, stop_at_end):
    # An orphan: a broker with no parent death signal, its pid file naming an owner that
    # has exited (a child process that is gone).
    orphan = stop_at_end(EmbeddedBroker(tmp_path / "kafka").start())  # reaped at the end
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / PID_FILE).write_text(json.dumps({"pid": orphan.pid, "up_pid": gone.pid}))
    old = orphan.pid
    sup = stop_at_end(BrokerSupervisor(EmbeddedBroker(tmp_path / "kafka", port=orphan.port),
                                       tmp_path))
    sup.start()
    assert sup.orphan_note and f"pid {old}" in sup.orphan_note
    assert "still running" in sup.orphan_note and "stopped it" in sup.orphan_note
    assert not alive(old) and sup.status().up and sup.broker.pid != old
    sup.stop()
    orphan.stop()
    # A pid file whose broker is gone: said, and no error.
    (tmp_path / PID_FILE).write_text(json.dumps({"pid": old, "up_pid": gone.pid}))
    sup = stop_at_end(BrokerSupervisor(EmbeddedBroker(tmp_path / "kafka"), tmp_path).start())
    assert "already gone" in (sup.orphan_note or "")


def test_a_live_owner_of_the_state_folder_is_not_stolen_from(tmp_path, stop_at_end):
    # A live process whose command line is an `antirelou up` owns the folder's broker.
    fake_up = stop_at_end(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                            "streams.cli", "up"]))
    (tmp_path / PID_FILE).write_text(json.dumps({"pid": 1, "up_pid": fake_up.pid}))
    with pytest.raises(BrokerError, match="another `antirelou up`"):
        BrokerSupervisor(EmbeddedBroker(tmp_path / "kafka"), tmp_path).start()


def test_the_broker_dies_with_an_owner_killed_by_sigkill(tmp_path, stop_at_end):
    script = textwrap.dedent(f"""
        import sys, time
        from infra.broker import EmbeddedBroker
        b = EmbeddedBroker({str(tmp_path / 'kafka')!r}, die_with_parent=True).start()
        print(b.pid, flush=True)
        time.sleep(120)
    """)
    owner = stop_at_end(subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                         text=True))
    pid = int(owner.stdout.readline())
    assert alive(pid)
    owner.kill()  # no atexit, no cleanup: only the kernel's parent death signal
    owner.wait()
    took = wait_until(lambda: not alive(pid), 10.0, "broker gone with its owner")
    print(f"broker gone {took:.2f} s after its owner's SIGKILL")
