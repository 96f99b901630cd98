"""Reaching a Kafka cluster and creating its topics (any Kafka, or the embedded broker).

:func:`wait_for_kafka` waits for a Kafka endpoint to answer a metadata request;
:func:`ensure_topics` / :func:`ensure_topics_async` create missing topics with a given
partition count, configs and replication factor (``min(3, brokers)`` unless given);
:func:`broker_count` says how many brokers a cluster has. Create source topics before a
Faust worker starts: Faust (faust-streaming 0.15.3) does not declare them, the broker then
auto-creates them with ONE partition on first metadata request, and a Table over a
4-partition changelog crashes with ``PartitionsMismatch``. Faust does create its own
changelog (same partition count, ``cleanup.policy=compact``) and
``APP-__assignor-__leader`` topics on noida-db, with default settings.

What was checked against noida-db 0.2.3 (aiokafka 0.14.0):

* One broker (node id 1). CreateTopics honours the partition count (4 partitions show
  up in Metadata / ``describe_topics`` with leader 1) and topic configs
  (``cleanup.policy=compact`` is visible through DescribeConfigs). Replication factor
  > 1 fails with error 38, 0 partitions with error 37, an existing topic with 36.
  aiokafka's ``create_topics`` does not raise on these: the error codes must be read
  from the response, which this module does.
* A Metadata request that *names* a missing topic auto-creates it with one partition
  (``describe_topics(["x"])`` creates ``x``), so this module only ever asks for the
  metadata of all topics.

The embedded broker itself (starting, stopping, what a kill -9 loses) is infra/broker.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

__all__ = [
    "BrokerError",
    "broker_count",
    "broker_count_async",
    "default_replication",
    "ensure_topics",
    "ensure_topics_async",
    "wait_for_kafka",
    "wait_for_kafka_async",
]

_T = TypeVar("_T")

# Kafka error codes that CreateTopics may return and we interpret ourselves.
_TOPIC_ALREADY_EXISTS = 36


class BrokerError(Exception):
    """The broker could not be started, reached or configured as asked."""


# --------------------------------------------------------------------------- helpers


def _run_sync(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    # Called from async code: don't block-nest loops, use a private one in a thread.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broker-sync") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def _describe_exc(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def _split_bootstrap(bootstrap_servers: str) -> list[tuple[str, int]]:
    endpoints = []
    for item in bootstrap_servers.split(","):
        item = item.strip()
        if "://" in item:
            item = item.split("://", 1)[1]
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            host, port = item, "9092"
        endpoints.append((host.strip("[]"), int(port)))
    return endpoints


async def _any_tcp_open(bootstrap_servers: str, timeout: float) -> bool:
    """Cheap pre-check so polling a down broker does not flood aiokafka's error log."""
    endpoints = _split_bootstrap(bootstrap_servers)
    if not endpoints:
        return True  # let aiokafka produce the error
    for host, port in endpoints:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (TimeoutError, OSError):
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return True
    return False


async def _connect_admin(bootstrap_servers: str, deadline: float, request_timeout: float):
    """Start an AIOKafkaAdminClient, retrying connection errors until ``deadline``."""
    from aiokafka.admin import AIOKafkaAdminClient

    from infra.kafka_auth import client_options

    last_error: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=max(100, int(min(request_timeout, remaining) * 1000)),
            client_id="antirelou-infra", **client_options(),
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=remaining)
            return admin
        except Exception as exc:
            last_error = exc
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    detail = f" (last error: {_describe_exc(last_error)})" if last_error else ""
    raise BrokerError(f"Kafka at {bootstrap_servers} is not reachable{detail}")


# ---------------------------------------------------------------- public functions


async def wait_for_kafka_async(bootstrap_servers: str, timeout: float = 30.0) -> None:
    """Wait until a Kafka metadata request to ``bootstrap_servers`` succeeds."""
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while time.monotonic() < deadline:
        if not await _any_tcp_open(
            bootstrap_servers, min(1.0, max(0.05, deadline - time.monotonic()))
        ):
            last_error = "nothing accepts TCP connections there"
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            continue
        try:
            admin = await _connect_admin(bootstrap_servers, deadline, request_timeout=2.0)
        except BrokerError as exc:
            last_error = str(exc)
            break
        try:
            remaining = max(0.1, deadline - time.monotonic())
            await asyncio.wait_for(admin.describe_cluster(), timeout=remaining)
            return
        except Exception as exc:
            last_error = _describe_exc(exc)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise BrokerError(
        f"Kafka at {bootstrap_servers} did not answer a metadata request within "
        f"{timeout:g} s: {last_error}"
    )


def wait_for_kafka(bootstrap_servers: str, timeout: float = 30.0) -> None:
    """Block until Kafka at ``bootstrap_servers`` answers; raise BrokerError otherwise."""
    _run_sync(lambda: wait_for_kafka_async(bootstrap_servers, timeout))


async def ensure_topics_async(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    timeout: float = 30.0,
    config: Mapping[str, Mapping[str, str]] | None = None,
    replication: int | None = None,
) -> list[str]:
    """Create the missing topics of ``{name: partitions}``; return the names created.

    Existing topics are left alone, but one with fewer partitions than asked for is an
    error. ``config`` maps topic names to topic configs used when creating them.
    Replication factor: ``replication``, else ``min(3, number of brokers)``.
    """
    if replication is not None and replication < 1:
        raise BrokerError(f"replication factor must be >= 1, got {replication!r}")
    for name, partitions in topics.items():
        if not name or not isinstance(name, str):
            raise BrokerError(f"invalid topic name {name!r}")
        if not isinstance(partitions, int) or partitions < 1:
            raise BrokerError(f"topic {name!r}: partition count must be >= 1, got {partitions!r}")
    config = config or {}
    unknown = set(config) - set(topics)
    if unknown:
        raise BrokerError(f"config given for topics not being ensured: {sorted(unknown)}")
    if not topics:
        return []

    deadline = time.monotonic() + timeout
    request_timeout = min(10.0, timeout)
    admin = await _connect_admin(bootstrap_servers, deadline, request_timeout)
    try:
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            return await _ensure_topics(admin, bootstrap_servers, topics, config, deadline,
                                        replication)
    except TimeoutError as exc:
        raise BrokerError(
            f"ensure_topics on {bootstrap_servers} did not finish within {timeout:g} s"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def _partition_counts(admin) -> dict[str, int]:
    # Never name topics here: on noida-db a Metadata request naming a missing topic
    # auto-creates it with one partition.
    described = await admin.describe_topics(None)
    return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


def _check_partitions(bootstrap: str, name: str, have: int, want: int) -> None:
    if have < want:
        raise BrokerError(
            f"topic {name!r} on {bootstrap} already exists with {have} partition(s) but "
            f"{want} were asked for; partitions are not added automatically (keyed data "
            "would be re-partitioned) -- delete the topic or add partitions deliberately"
        )


async def _ensure_topics(
    admin,
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, Mapping[str, str]],
    deadline: float,
    replication: int | None = None,
) -> list[str]:
    from aiokafka.admin import NewTopic

    existing = await _partition_counts(admin)
    for name, want in topics.items():
        if name in existing:
            _check_partitions(bootstrap, name, existing[name], want)
    missing = [name for name in topics if name not in existing]
    if not missing:
        return []

    if replication is None:
        cluster = await admin.describe_cluster()
        replication = default_replication(len(cluster.get("brokers") or []))
    new_topics = [
        NewTopic(
            name,
            topics[name],
            replication,
            topic_configs={k: str(v) for k, v in (config.get(name) or {}).items()},
        )
        for name in missing
    ]
    request_timeout_ms = max(100, int(min(10.0, deadline - time.monotonic()) * 1000))
    response = await admin.create_topics(new_topics, timeout_ms=request_timeout_ms)

    created: list[str] = []
    raced: list[str] = []
    failures: list[str] = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            created.append(name)
        elif code == _TOPIC_ALREADY_EXISTS:
            raced.append(name)  # created concurrently by someone else
        else:
            failures.append(f"{name!r}: error {code}{f' ({message})' if message else ''}")
    if failures:
        raise BrokerError(f"could not create topics on {bootstrap}: " + "; ".join(failures))

    # Wait until the new topics are visible with all their partitions.
    while True:
        counts = await _partition_counts(admin)
        for name in raced:
            if name in counts:
                _check_partitions(bootstrap, name, counts[name], topics[name])
        pending = [n for n in created + raced if counts.get(n, 0) < topics[n]]
        if not pending:
            break
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"topics {pending} on {bootstrap} were created but do not show all their "
                "partitions in metadata yet"
            )
        await asyncio.sleep(0.1)
    return [name for name in topics if name in created]


def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    timeout: float = 30.0,
    config: Mapping[str, Mapping[str, str]] | None = None,
    replication: int | None = None,
) -> list[str]:
    """Synchronous :func:`ensure_topics_async`."""
    return _run_sync(
        lambda: ensure_topics_async(bootstrap_servers, topics, timeout=timeout, config=config,
                                    replication=replication)
    )


def default_replication(brokers: int) -> int:
    """The replication factor used when none is given: ``min(3, brokers)``."""
    return max(1, min(3, brokers))


async def broker_count_async(bootstrap_servers: str, timeout: float = 30.0) -> int:
    """How many brokers the cluster at ``bootstrap_servers`` has."""
    deadline = time.monotonic() + timeout
    admin = await _connect_admin(bootstrap_servers, deadline, min(10.0, timeout))
    try:
        cluster = await asyncio.wait_for(admin.describe_cluster(),
                                         max(0.1, deadline - time.monotonic()))
        return len(cluster.get("brokers") or [])
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def broker_count(bootstrap_servers: str, timeout: float = 30.0) -> int:
    """Synchronous :func:`broker_count_async`."""
    return _run_sync(lambda: broker_count_async(bootstrap_servers, timeout))


async def set_topic_configs_async(bootstrap_servers: str,
                                  configs: Mapping[str, Mapping[str, str]],
                                  timeout: float = 30.0) -> None:
    """Set the configs of existing topics (``{topic: {key: value}}``) with AlterConfigs,
    which replaces a topic's whole config: give every key the topic should keep. BrokerError
    when the broker refuses (no right to alter, unknown topic) or does not answer."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    deadline = time.monotonic() + timeout
    admin = await _connect_admin(bootstrap_servers, deadline, min(10.0, timeout))
    try:
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            responses = await admin.alter_configs([
                ConfigResource(ConfigResourceType.TOPIC, name,
                               configs={k: str(v) for k, v in wanted.items()})
                for name, wanted in configs.items()])
    except TimeoutError as exc:
        raise BrokerError(f"setting topic configs on {bootstrap_servers} did not finish "
                          f"within {timeout:g} s") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    failures = [f"{resource[3]!r}: error {resource[0]}"
                f"{f' ({resource[1]})' if resource[1] else ''}"
                for response in responses for resource in response.resources
                if resource[0] != 0]
    if failures:
        raise BrokerError(f"could not set topic configs on {bootstrap_servers}: "
                          + "; ".join(failures))


def set_topic_configs(bootstrap_servers: str, configs: Mapping[str, Mapping[str, str]],
                      timeout: float = 30.0) -> None:
    """Synchronous :func:`set_topic_configs_async`."""
    _run_sync(lambda: set_topic_configs_async(bootstrap_servers, configs, timeout))
