"""Shared fixtures: one real broker and one real Ray session per test run.

Set KAFKA_BOOTSTRAP_SERVERS to use an already running broker instead of the embedded one.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """Bootstrap servers of a real Kafka-protocol broker (noida-db unless given)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    from infra.broker import EmbeddedBroker

    with EmbeddedBroker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray session for the whole run (ray.init costs ~5 s and 600 MiB)."""
    import ray

    # address="local": always a session of our own; without it ray.init() joins any cluster
    # that `ray start` left running on this machine (the scale-out tests start one).
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
