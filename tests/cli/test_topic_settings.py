"""The topic settings that matter on a replicated Kafka (replication factor,
min.insync.replicas, the journal kept for ever) come from the project's own topic creation,
set by flags or the environment; checked against the real broker (one noida-db broker, so
only a replication factor of 1 can be created here: the rest is checked as configs)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.broker import BrokerError, broker_count, default_replication, ensure_topics
from infra.config import ConfigError
from streams.app import topic_names
from streams.cli import build_parser, min_insync_for, topic_configs, topic_layout

pytestmark = pytest.mark.services


def test_min_insync_replicas_is_two_from_three_replicas_on_unless_given():
    assert [min_insync_for(rf) for rf in (1, 2, 3, 5)] == [None, None, 2, 2]
    assert min_insync_for(3, 3) == 3 and min_insync_for(1, 1) == 1
    with pytest.raises(ConfigError, match="between 1 and the replication factor 3"):
        min_insync_for(3, 4)
    assert [default_replication(n) for n in (0, 1, 2, 3, 7)] == [1, 1, 2, 3, 3]


def test_every_topic_gets_min_insync_and_the_journal_keeps_its_retention():
    names = topic_names("rf")
    configs = topic_configs(names, min_insync=2)
    assert set(configs) == set(names.values())
    assert all(c["min.insync.replicas"] == "2" for c in configs.values())
    assert configs[names["journal"]]["retention.ms"] == "-1"
    assert configs[names["snapshots"]]["cleanup.policy"] == "compact"
    assert all("min.insync.replicas" not in c for c in topic_configs(names).values())


def test_the_flags_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ANTIRELOU_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("ANTIRELOU_MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("ANTIRELOU_SHARD_RESOURCE", "antirelou_shards")
    monkeypatch.setenv("ANTIRELOU_SHARD_SPREAD", "1")
    monkeypatch.setenv("ANTIRELOU_SHARD_MEMORY_MB", "512")
    args = build_parser().parse_args(["worker"])
    assert (args.replication_factor, args.min_insync_replicas) == (3, 2)
    assert (args.shard_resource, args.shard_spread, args.shard_memory_mb) == (
        "antirelou_shards", True, 512)
    monkeypatch.delenv("ANTIRELOU_REPLICATION_FACTOR")
    assert build_parser().parse_args(["worker"]).replication_factor is None


def _describe(kafka: str, topics: list[str]) -> tuple[dict, dict]:
    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
            answers = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in topics])
        finally:
            await admin.close()
        replicas = {t["topic"]: {len(p["replicas"]) for p in t["partitions"]} for t in described}
        configs = {res[3]: {c[0]: c[1] for c in res[4]} for a in answers for res in a.resources}
        return replicas, configs
    return asyncio.run(go())


def test_topics_are_created_with_the_replication_and_min_insync_asked_for(kafka):
    names = topic_names("rf-" + uuid.uuid4().hex[:8])
    assert broker_count(kafka) == 1
    created = ensure_topics(kafka, topic_layout(names, 2), config=topic_configs(names, 1),
                            replication=1)
    assert sorted(created) == sorted(names.values())
    replicas, configs = _describe(kafka, list(names.values()))
    assert all(r == {1} for r in replicas.values()), replicas
    assert all(c["min.insync.replicas"] == "1" for c in configs.values()), configs
    assert configs[names["journal"]]["retention.ms"] == "-1"


def test_more_replicas_than_brokers_is_a_clear_error(kafka):
    name = "rf-" + uuid.uuid4().hex[:8] + ".journal"
    with pytest.raises(BrokerError, match="could not create topics|replication"):
        ensure_topics(kafka, {name: 1}, replication=3)
    with pytest.raises(BrokerError, match="replication factor must be >= 1"):
        ensure_topics(kafka, {name: 1}, replication=0)
