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


@pytest.fixture
def stop_at_end():
    """``stop_at_end(thing, stop=None)``: ``thing`` (a broker, a supervisor, a gateway, a
    ``subprocess.Popen``), stopped when the test ends however it ends, the last one first.
    ``stop`` defaults to ``thing.stop``; a process still running is killed and reaped.
    Stopping what the test stopped already is harmless: the things given here allow it."""
    stops: list = []

    def register(thing, stop=None):
        if stop is None and hasattr(thing, "poll"):  # a process

            def stop() -> None:
                if thing.poll() is None:
                    thing.kill()
                    thing.wait()

        stops.append(stop or thing.stop)
        return thing

    yield register
    for stop in reversed(stops):
        stop()
