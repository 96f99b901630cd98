"""EmbeddedBroker / ensure_topics against the real noida-db Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.broker import (
    BrokerError,
    EmbeddedBroker,
    ensure_topics,
    ensure_topics_async,
    wait_for_kafka,
)

TOPIC = "sms.inbound"
PARTITIONS = 4
N_MESSAGES = 100


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kafka-data"


@pytest.fixture
def broker(data_dir: Path) -> Iterator[EmbeddedBroker]:
    embedded = EmbeddedBroker(data_dir).start(timeout=30)
    yield embedded
    embedded.stop()
    assert not embedded.running


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A port somebody else is already listening on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def _fake_binary(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-noida-db"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


async def _partition_count(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(None)}
    finally:
        await admin.close()
    return len(described[topic]["partitions"])


async def _produce(bootstrap: str) -> dict[bytes, tuple[bytes, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = {}
        for i in range(N_MESSAGES):
            key, value = f"+3367000{i:04d}".encode(), f"msg-{i}".encode()
            meta = await producer.send_and_wait(TOPIC, key=key, value=value)
            sent[key] = (value, meta.partition)
    finally:
        await producer.stop()
    return sent


async def _consume_all(bootstrap: str) -> dict[bytes, tuple[bytes, int]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        received: dict[bytes, tuple[bytes, int]] = {}
        async with asyncio.timeout(15):
            while len(received) < N_MESSAGES:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        received[record.key] = (record.value, tp.partition)
    finally:
        await consumer.stop()
    return received


@pytest.mark.services
def test_ensure_topics_creates_partitions_and_is_idempotent(broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    assert bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.running and broker.pid

    created = ensure_topics(
        bootstrap,
        {TOPIC: PARTITIONS, "sms.audit": 1},
        config={"sms.audit": {"cleanup.policy": "compact"}},
    )
    assert created == [TOPIC, "sms.audit"]
    assert asyncio.run(_partition_count(bootstrap, TOPIC)) == PARTITIONS

    assert ensure_topics(bootstrap, {TOPIC: PARTITIONS, "sms.audit": 1}) == []
    assert asyncio.run(ensure_topics_async(bootstrap, {TOPIC: PARTITIONS})) == []
    # Asking for fewer partitions than exist is fine; asking for more is an error.
    assert ensure_topics(bootstrap, {TOPIC: 2}) == []
    with pytest.raises(BrokerError, match=r"'sms.audit'.*1 partition\(s\) but 3"):
        ensure_topics(bootstrap, {"sms.audit": 3})


@pytest.mark.services
def test_acked_messages_survive_a_broker_restart(broker: EmbeddedBroker, data_dir: Path) -> None:
    ensure_topics(broker.bootstrap_servers, {TOPIC: PARTITIONS})
    sent = asyncio.run(_produce(broker.bootstrap_servers))
    assert len({partition for _, partition in sent.values()}) > 1  # keys spread out

    first_pid, port = broker.pid, broker.port
    broker.stop()
    assert not broker.running and broker.pid is None
    with pytest.raises(BrokerError, match="did not answer"):
        wait_for_kafka(broker.bootstrap_servers, timeout=0.5)

    broker.start()
    assert broker.running and broker.pid != first_pid
    assert broker.port == port and broker.data_dir == data_dir.resolve()
    received = asyncio.run(_consume_all(broker.bootstrap_servers))
    assert received == sent  # same keys, values and partitions


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-noida-db"
    with pytest.raises(BrokerError, match=r"noida-db binary not found at .*no-such-noida-db"):
        EmbeddedBroker(tmp_path / "data", binary=missing).start()


def test_port_in_use_is_a_clear_error(tmp_path: Path, listening_socket: int) -> None:
    embedded = EmbeddedBroker(tmp_path / "data", port=listening_socket)
    with pytest.raises(BrokerError, match=rf"port {listening_socket} .*already in use"):
        embedded.start(timeout=10)
    assert not embedded.running


def test_binary_exiting_during_startup_reports_its_log(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, 'echo "boom: disk on fire" >&2; exit 3')
    embedded = EmbeddedBroker(tmp_path / "data", binary=fake)
    with pytest.raises(BrokerError, match=r"exited with code 3") as excinfo:
        embedded.start(timeout=10)
    message = str(excinfo.value)
    assert "boom: disk on fire" in message
    assert str(tmp_path / "data" / "broker.log") in message


def test_broker_not_coming_up_times_out(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, "exec sleep 60")
    embedded = EmbeddedBroker(tmp_path / "data", binary=fake)
    with pytest.raises(BrokerError, match=r"did not come up on 127\.0\.0\.1:\d+ within 1 s"):
        embedded.start(timeout=1)
    assert not embedded.running and embedded.pid is None


def test_the_journal_is_kept_for_ever_and_the_sealed_numbers_for_a_week(
        broker: EmbeddedBroker) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.app import topic_names
    from streams.cli import topic_configs, topic_layout

    names = topic_names("retention")
    ensure_topics(broker.bootstrap_servers, topic_layout(names, 2), config=topic_configs(names))

    async def configs() -> dict[str, dict[str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            answers = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in names.values()])
        finally:
            await admin.close()
        return {res[3]: {c[0]: c[1] for c in res[4]} for a in answers for res in a.resources}

    got = asyncio.run(configs())
    assert got[names["journal"]]["retention.ms"] == "-1"
    for role in ("inbound", "requests", "outbound"):  # they carry sealed numbers
        assert got[names[role]]["retention.ms"] == str(7 * 24 * 3_600_000)
    assert got[names["snapshots"]]["cleanup.policy"] == "compact"
