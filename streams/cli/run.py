"""Running it: ``antirelou up`` (everything on one machine), ``antirelou worker`` (one Faust
worker against a running broker) and ``antirelou fake-messagebird``; the composition root
that builds the broker, the topics, the Ray shards and the Faust app from the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import ConfigError, load_body_retention_days, load_campaigns
from streams.cli.common import (
    Help,
    add_common,
    env,
    eur,
    float_env,
    int_env,
    ucs2_warning,
)

log = logging.getLogger("antirelou")

# The work topics carry the sender's number (sealed): kept long enough for any restart or
# outage to be worked through (a surge's deferred replies wait in a table, not here), then
# deleted by the broker. The journal, without numbers, is kept for ever (the broker's
# default would drop it after 7 days).
WORK_TOPIC_RETENTION_MS = 7 * 24 * 3_600_000

# Ctrl-C/SIGTERM: seconds `up` and `worker` have to stop before they stop the broker and
# exit regardless (a reply in backoff or a hung MessageBird call must not hold them).
STOP_GRACE_S = 7.0


# --- the command line -----------------------------------------------------------------


def add_up_parsers(sub: Any) -> None:
    """``up`` and ``worker``: the same options."""
    for name in ("up", "worker"):
        p = sub.add_parser(
            name, formatter_class=Help,
            help="start everything on this machine" if name == "up" else
            "one Faust worker against a running broker",
            description="start the embedded broker (unless --kafka), a local Ray "
            "session and the worker" if name == "up" else "one Faust worker; "
            "start more to scale out")
        add_common(p, server=True)
        _add_cluster_options(p)
        _add_web_options(p)
        _add_worker_options(p)
        if name == "worker":
            p.add_argument("--role", choices=("all", "web"),
                           default=env("ANTIRELOU_ROLE", "all"),
                           help="all: the webhooks and every stage; web: the webhooks and "
                           "/health only (no Ray, no stage partitions), beside full workers "
                           "that screen what it stores [ANTIRELOU_ROLE]")


def add_fake_parser(sub: Any) -> None:
    p = sub.add_parser("fake-messagebird", formatter_class=Help,
                       help="local MessageBird-compatible REST server")
    p.add_argument("--port", type=int, default=8089, help="port to listen on")
    p.add_argument("--access-key", default="test_key", help="the access key it accepts")


def _optional_int_env(name: str) -> int | None:
    return int_env(name, "0") or None  # 0 or unset: the default decided later


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Where the broker and Ray run, and how topics and shards are laid out."""
    p.add_argument("--kafka-port", type=int, default=int_env("ANTIRELOU_KAFKA_PORT", "9092"),
                   help="port of the embedded broker (up only) [ANTIRELOU_KAFKA_PORT]")
    p.add_argument("--ray-address", default=env("RAY_ADDRESS"),
                   help="Ray cluster to join; default: a local Ray session [RAY_ADDRESS]")
    p.add_argument("--partitions", type=int, default=int_env("ANTIRELOU_PARTITIONS", "4"),
                   help="partitions of the work topics (fixed once created) "
                        "[ANTIRELOU_PARTITIONS]")
    p.add_argument("--shards", type=int, default=int_env("ANTIRELOU_SHARDS", "1"),
                   help="Ray actors holding the campaigns [ANTIRELOU_SHARDS]")
    p.add_argument("--shard-resource", default=env("ANTIRELOU_SHARD_RESOURCE"),
                   help="each shard needs one unit of this custom Ray resource: shards run "
                   "only on nodes started with it [ANTIRELOU_SHARD_RESOURCE]")
    p.add_argument("--shard-spread", action="store_true",
                   default=env("ANTIRELOU_SHARD_SPREAD") == "1",
                   help="spread the shards over the Ray nodes [ANTIRELOU_SHARD_SPREAD=1]")
    p.add_argument("--shard-memory-mb", type=int,
                   default=_optional_int_env("ANTIRELOU_SHARD_MEMORY_MB"),
                   help="Ray memory reserved per shard, MiB [ANTIRELOU_SHARD_MEMORY_MB]")
    p.add_argument("--replication-factor", type=int,
                   default=_optional_int_env("ANTIRELOU_REPLICATION_FACTOR"),
                   help="replicas of each topic created; default min(3, brokers) "
                   "[ANTIRELOU_REPLICATION_FACTOR]")
    p.add_argument("--min-insync-replicas", type=int,
                   default=_optional_int_env("ANTIRELOU_MIN_INSYNC_REPLICAS"),
                   help="min.insync.replicas of the topics created; default 2 when "
                   "replicated 3 or more times, else the broker's [ANTIRELOU_MIN_INSYNC_REPLICAS]")


def _add_web_options(p: argparse.ArgumentParser) -> None:
    """The web server: webhooks, delivery reports, admin pages."""
    p.add_argument("--web-host", default=env("ANTIRELOU_WEB_HOST", "127.0.0.1"),
                   help="address of the webhook and admin web server [ANTIRELOU_WEB_HOST]")
    p.add_argument("--web-port", type=int, default=int_env("ANTIRELOU_WEB_PORT", "6066"),
                   help="its port [ANTIRELOU_WEB_PORT]")
    p.add_argument("--public-url", default=env("ANTIRELOU_PUBLIC_URL"),
                   help="base URL MessageBird (and Bird) call, which their signatures "
                        "cover; required unless --insecure-dev (then default: the request's "
                        "URL) [ANTIRELOU_PUBLIC_URL]")
    p.add_argument("--report-url", default=env("ANTIRELOU_REPORT_URL"),
                   help="base URL for delivery reports; default: --public-url, else the "
                   "local web address [ANTIRELOU_REPORT_URL]")
    p.add_argument("--http-idle-timeout", type=float,
                   default=float_env("ANTIRELOU_HTTP_IDLE_TIMEOUT_S", "15"),
                   help="close a connection without a complete request header or idle "
                        "for this long [ANTIRELOU_HTTP_IDLE_TIMEOUT_S]")
    p.add_argument("--event-skew-minutes", type=float,
                   default=float_env("ANTIRELOU_EVENT_SKEW_MINUTES", "5"),
                   help="a text's createdDatetime is kept within its arrival time +- this "
                        "(a replay of past texts needs more) [ANTIRELOU_EVENT_SKEW_MINUTES]")
    p.add_argument("--http-body-timeout", type=float,
                   default=float_env("ANTIRELOU_HTTP_BODY_TIMEOUT_S", "10"),
                   help="answer 408 to a request body not received within this long "
                        "[ANTIRELOU_HTTP_BODY_TIMEOUT_S]")
    p.add_argument("--webhook-concurrency", type=int,
                   default=int_env("ANTIRELOU_WEBHOOK_CONCURRENCY", "256"),
                   help="webhook requests under way at once in this process; the next is "
                   "answered 503 with Retry-After at once [ANTIRELOU_WEBHOOK_CONCURRENCY]")
    p.add_argument("--ack-timeout", type=float,
                   default=float_env("ANTIRELOU_ACK_TIMEOUT_S", "10"),
                   help="seconds the webhook waits for the broker before answering 503 "
                   "[ANTIRELOU_ACK_TIMEOUT_S]")
    p.add_argument("--insecure-dev", action="store_true",
                   default=env("ANTIRELOU_INSECURE_DEV") == "1",
                   help="accept unsigned webhooks when no signing key is set, unsigned "
                        "operator commands when no operator is declared, and leave the "
                        "admin pages open when ANTIRELOU_ADMIN_TOKEN is not set "
                        "(development) [ANTIRELOU_INSECURE_DEV=1]")


def no_dashboard_default(hostname: Callable[[], str] | None = None) -> bool:
    """``--no-dashboard`` unless said otherwise: ``ANTIRELOU_NO_DASHBOARD=1``; or, with
    ``ANTIRELOU_DASHBOARD_HOST`` set, on every host but the one of that name (one replica
    of a StatefulSet serves the dashboard, the others share the stages only)."""
    if env("ANTIRELOU_NO_DASHBOARD") == "1":
        return True
    host = env("ANTIRELOU_DASHBOARD_HOST")
    if not host:
        return False
    import socket

    return (hostname or socket.gethostname)() != host


def _add_worker_options(p: argparse.ArgumentParser) -> None:
    """Sending, timers and batches of the worker."""
    p.add_argument("--send-attempts", type=int,
                   default=int_env("ANTIRELOU_SEND_ATTEMPTS", "6"),
                   help="calls per reply on 5xx/429/unreachable before it fails and is "
                   "refunded [ANTIRELOU_SEND_ATTEMPTS]")
    p.add_argument("--breaker-cooldown", type=float,
                   default=float_env("ANTIRELOU_BREAKER_COOLDOWN_S", "5"),
                   help="seconds sends wait once MessageBird failed 5 times in a row "
                   "[ANTIRELOU_BREAKER_COOLDOWN_S]")
    p.add_argument("--loglevel", default=env("ANTIRELOU_LOGLEVEL", "info"),
                   help="worker log level [ANTIRELOU_LOGLEVEL]")
    p.add_argument("--snapshot-interval", type=float,
                   default=float_env("ANTIRELOU_SNAPSHOT_INTERVAL_S", "30"),
                   help="seconds between campaign snapshots [ANTIRELOU_SNAPSHOT_INTERVAL_S]")
    p.add_argument("--tick-interval", type=float,
                   default=float_env("ANTIRELOU_TICK_INTERVAL_S", "5"),
                   help="seconds between clock ticks to the campaigns, which release and "
                        "expire deferred replies [ANTIRELOU_TICK_INTERVAL_S]")
    p.add_argument("--no-dashboard", action="store_true", default=no_dashboard_default(),
                   help="do not follow the journal: no /dashboard, and /metrics holds only "
                        "this worker's own consumer lag; in a deployment of several workers "
                        "one of them serves the dashboard and the deployment's figures "
                        "[ANTIRELOU_NO_DASHBOARD=1; or ANTIRELOU_DASHBOARD_HOST=NAME: on every "
                        "host but NAME, e.g. all pods of a StatefulSet but antirelou-worker-0]")
    p.add_argument("--screen-batch", type=int,
                   default=int_env("ANTIRELOU_SCREEN_BATCH", "200"),
                   help="texts screened per batch (one journal write each; 1: one by "
                        "one) [ANTIRELOU_SCREEN_BATCH]")


def fake_messagebird(args: argparse.Namespace) -> int:
    from infra import messagebird_local

    return messagebird_local.main(["--port", str(args.port),
                                   "--access-key", args.access_key]) or 0


# --- topics ------------------------------------------------------------------------------


def topic_layout(names: dict[str, str], partitions: int) -> dict[str, int]:
    # Policies are few and must be read in order by every worker; snapshots are one record
    # per campaign: one partition each.
    single = ("policies", "snapshots")
    return {name: 1 if role in single else partitions for role, name in names.items()}


def min_insync_for(replication: int, given: int | None = None) -> int | None:
    """``min.insync.replicas`` for topics replicated ``replication`` times: the one given,
    else 2 from 3 replicas on (a write acknowledged with acks=all is then on two brokers,
    and one broker may be down), else None (the broker's default)."""
    if given is not None:
        if not 1 <= given <= replication:
            raise ConfigError(f"min.insync.replicas {given} must be between 1 and the "
                              f"replication factor {replication}")
        return given
    return 2 if replication >= 3 else None


BODY_SEGMENT_MAX_MS = 86_400_000  # the bodies topic's segments: a body outlives its
# retention by at most this (Kafka deletes whole segments, the newest record past it)


def body_topic_config(body_retention_ms: int) -> dict[str, str]:
    """The bodies topic's config: deleted past the campaign file's retention (a minute
    when bodies are not kept: none is written)."""
    retention = max(body_retention_ms, 60_000)
    return {"cleanup.policy": "delete", "retention.ms": str(retention),
            "segment.ms": str(min(retention, BODY_SEGMENT_MAX_MS))}


def topic_configs(names: dict[str, str], min_insync: int | None = None,
                  body_retention_ms: int = 30 * 86_400_000) -> dict[str, dict[str, str]]:
    from actors.snapshot import MAX_SNAPSHOT_BYTES

    work = {"cleanup.policy": "delete", "retention.ms": str(WORK_TOPIC_RETENTION_MS)}
    configs = {
        names["bodies"]: body_topic_config(body_retention_ms),
        # Snapshots: only the latest per campaign matters, and one may exceed Kafka's 1 MiB.
        names["snapshots"]: {"cleanup.policy": "compact",
                             "max.message.bytes": str(MAX_SNAPSHOT_BYTES)},
        names["journal"]: {"cleanup.policy": "delete", "retention.ms": "-1"},
        names["inbound"]: work, names["requests"]: work, names["outbound"]: work,
    }
    if min_insync is not None:
        for role in names:
            configs[names[role]] = {**configs.get(names[role], {}),
                                    "min.insync.replicas": str(min_insync)}
    return configs


def _create_topics(args: argparse.Namespace, kafka: str,
                   body_retention_ms: int) -> tuple[dict[str, str], int]:
    """The deployment's topics (those missing); their names and replication factor. The
    bodies topic's retention is set to the campaign file's at every start (a retention
    lowered in the file deletes the older bodies)."""
    from infra.broker import BrokerError, broker_count, default_replication, ensure_topics
    from infra.kafka_admin import set_topic_configs
    from streams.app import topic_names

    names = topic_names(args.app_id)
    replication = args.replication_factor or default_replication(broker_count(kafka))
    min_insync = min_insync_for(replication, args.min_insync_replicas)
    configs = topic_configs(names, min_insync, body_retention_ms)
    created = ensure_topics(kafka, topic_layout(names, args.partitions),
                            config=configs, replication=replication)
    if created:
        log.info("created topics %s (replication factor %d, min.insync.replicas %s)",
                 ", ".join(created), replication, min_insync or "the broker's")
    if names["bodies"] not in created:
        try:
            set_topic_configs(kafka, {names["bodies"]: configs[names["bodies"]]})
        except BrokerError as exc:
            log.warning("the retention of %s could not be set to the campaign file's (%s): "
                        "set retention.ms=%s on it with your Kafka tooling", names["bodies"],
                        exc, configs[names["bodies"]]["retention.ms"])
    return names, replication


# --- up and worker -----------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What ``up`` and ``worker`` read before they start anything."""

    campaigns: list
    operators: dict
    providers: Any
    state_dir: Path
    secret: bytes
    signing_key: str | None
    bird_signing_key: str | None
    body_retention_ms: int


def supervised_broker(state_dir: Path, port: int):
    """The embedded broker under its supervisor (infra/supervisor.py): an orphan of a
    killed `up` stopped first (and said), restarted when it dies, dies with this process."""
    from infra.broker import EmbeddedBroker
    from infra.supervisor import BrokerSupervisor

    delay = float(env("ANTIRELOU_BROKER_RESTART_DELAY_S", "0.5"))
    supervisor = BrokerSupervisor(EmbeddedBroker(state_dir / "kafka", port=port,
                                                 die_with_parent=True), state_dir,
                                  restart_delay_s=delay).start()
    if supervisor.orphan_note:
        print(f"antirelou: {supervisor.orphan_note}", flush=True)
    return supervisor


def serve(args: argparse.Namespace, embedded: bool) -> int:
    """``up`` (``embedded``: starts the broker unless --kafka) and ``worker``."""
    if getattr(args, "role", "all") == "web":
        return serve_web(args)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import faust  # noqa: F401  (imported before Ray, as `up` always did)
    import ray

    from infra.faust.aiokafka_patches import install_fetch_floor, install_keep_member_on_stale_commit
    from infra.faust.patches import (
        install_batched_recovery,
        install_bulk_recovery,
        install_eager_delivery,
    )

    log.info("event loop: %s", install_event_loop())
    install_fetch_floor()  # noida-db answers empty fetches at once: do not spin on them
    install_keep_member_on_stale_commit()  # else noida-db wedges the group in a rebalance
    install_eager_delivery()  # no four tasks per record fetched (infra/faust/patches.py)
    install_batched_recovery()  # the tables' changelogs read back in passes, not per record
    install_bulk_recovery()  # the in-memory tables' changelogs first read by a plain consumer
    deployment = _read_deployment(args)
    if deployment is None:
        return 2
    broker = None
    kafka = args.kafka
    if kafka is None:
        if not embedded:
            print("antirelou: worker needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
            return 2
        broker = supervised_broker(deployment.state_dir, args.kafka_port)
        kafka = broker.broker.bootstrap_servers
        log.info("embedded Kafka-protocol broker (noida-db) on %s, data in %s",
                 kafka, deployment.state_dir / "kafka")
    try:
        code = _serve_on(args, deployment, kafka, broker)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if broker is not None:
            broker.stop()
    if embedded:
        # Python's own exit would now join the send pool's and Ray's threads, out of reach
        # of the stop bound (4-10 s after a flood): `up` ends here (infra/supervisor.py).
        from infra.supervisor import exit_now

        exit_now(code)
    return code


def serve_web(args: argparse.Namespace) -> int:
    """``worker --role web``: the webhooks and /health, on the deployment's broker and
    topics, with its secret (checked against the journal's key), no Ray and no stage: a
    front that scales apart from the workers that screen, decide and send."""
    from infra.broker import wait_for_kafka
    from infra.faust.aiokafka_patches import install_fetch_floor
    from streams.app import create_app
    from streams.console.ops import register_guard

    log.info("event loop: %s", install_event_loop())
    install_fetch_floor()
    deployment = _read_deployment(args)
    if deployment is None:
        return 2
    if args.kafka is None:
        print("antirelou: worker needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    wait_for_kafka(args.kafka)
    _, replication = _create_topics(args, args.kafka, deployment.body_retention_ms)
    if not _key_matches(args, args.kafka, deployment.secret):
        return 2
    settings = _settings(args, deployment, args.kafka, replication, None)
    settings.role = "web"
    app = create_app(settings, None, None)
    admin_token = env("ANTIRELOU_ADMIN_TOKEN")
    register_guard(app, admin_token, args.insecure_dev, args.public_url)
    web = f"http://{args.web_host}:{args.web_port}"
    from streams.app import WEBHOOK_PATH

    print(f"antirelou: web-only process (--role web): webhook at {web}{WEBHOOK_PATH}; no "
          "stage runs here: texts are screened, decided and sent by the full workers of "
          f"app {args.app_id}", flush=True)
    if deployment.providers.uses_bird:
        from streams.intake.bird import BIRD_WEBHOOK_PATH

        print(f"antirelou: Bird webhook at {web}{BIRD_WEBHOOK_PATH}", flush=True)
    if deployment.signing_key is None and deployment.providers.uses_messagebird:
        print("antirelou: *** INSECURE DEV MODE: webhooks are accepted unsigned ***",
              flush=True)
    return _run_faust_worker(app, args, cleanup=lambda: None)


def _run_faust_worker(app: Any, args: argparse.Namespace, cleanup: Callable[[], None]) -> int:
    """The Faust worker on ``app`` until it stops (its exit status), the stop bounded
    (``cleanup`` on the way out), what start-up loaded frozen out of the collector's reach."""
    import faust

    from infra.supervisor import bound_shutdown

    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    bound_shutdown(worker, STOP_GRACE_S, cleanup=cleanup)
    freeze_what_was_loaded()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _read_deployment(args: argparse.Namespace) -> Deployment | None:
    """The campaign file, the webhook signing keys and the deployment secret; None (said
    why) when a key is missing or the secret cannot be had."""
    from infra.keycheck import SecretError, deployment_secret
    from infra.operators import load_operators
    from infra.providers import load_providers
    from infra.statedir import make_private
    from streams.rules.retention import retention_ms

    campaigns = load_campaigns(args.config)
    operators = load_operators(args.config, [c.id for c in campaigns])
    providers = load_providers(args.config, campaigns)  # provider of each campaign, checked
    signing_key = env("MESSAGEBIRD_SIGNING_KEY")
    bird_signing_key = env("BIRD_SIGNING_KEY")
    if signing_key is None and providers.uses_messagebird and not args.insecure_dev:
        print("antirelou: no webhook signing key. Set MESSAGEBIRD_SIGNING_KEY, or pass "
              "--insecure-dev to accept unsigned webhooks while developing.", file=sys.stderr)
        return None
    if bird_signing_key is None and providers.uses_bird and not args.insecure_dev:
        print("antirelou: no Bird webhook signing key. Set BIRD_SIGNING_KEY (the signing key "
              "of the webhook subscription), or pass --insecure-dev.", file=sys.stderr)
        return None
    refusal = start_refusal(args)
    if refusal is not None:
        print(f"antirelou: {refusal}", file=sys.stderr)
        return None
    state_dir = make_private(Path(args.state_dir).resolve())  # broker data, tables, secret
    try:
        secret, secret_from = deployment_secret(state_dir, development=args.insecure_dev)
    except SecretError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return None
    log.info("deployment secret from %s", secret_from)
    if not secret_from.startswith("ANTIRELOU"):
        log.warning("the deployment secret is kept in the state folder (%s): development "
                    "only, a backup of the folder opens every sealed number", secret_from)
    return Deployment(campaigns, operators, providers, state_dir, secret, signing_key,
                      bird_signing_key, retention_ms(load_body_retention_days(args.config)))


# Keys an example file or a tutorial may leave as a placeholder ("CHANGE-ME"): refused.
KEYS = {"MESSAGEBIRD_SIGNING_KEY": "the signing key MessageBird gives",
        "BIRD_SIGNING_KEY": "the webhook subscription's signing key",
        "MESSAGEBIRD_ACCESS_KEY": "MessageBird's access key (or none: dry run)",
        "BIRD_ACCESS_KEY": "Bird's access key (or none: dry run)",
        "ANTIRELOU_ADMIN_TOKEN": "a random token (or none: no admin pages)"}
MIN_ADMIN_TOKEN_CHARS = 16


def start_refusal(args: argparse.Namespace) -> str | None:
    """Why ``up`` / ``worker`` must not start with these settings (one line), or None:
    a placeholder for a key; an admin token too short to stand guessing; outside
    ``--insecure-dev``, no ``--public-url``, which fixes the URL MessageBird's and Bird's
    signatures are checked against (without it the request's Host header chose it: a
    token signed for another endpoint of the account was accepted); a public URL that is
    not one."""
    from urllib.parse import urlsplit

    from infra.keycheck import placeholder

    for name, what in KEYS.items():
        value = env(name)
        if value is not None and value.strip() and placeholder(value):
            return f"{name} is a placeholder, not a key: set {what}"
    if args.webhook_concurrency < 1:
        return f"--webhook-concurrency {args.webhook_concurrency}: at least 1"
    token = env("ANTIRELOU_ADMIN_TOKEN")
    if token is not None and len(token) < MIN_ADMIN_TOKEN_CHARS:
        return (f"ANTIRELOU_ADMIN_TOKEN has {len(token)} characters: it guards the admin "
                f"pages, give it at least {MIN_ADMIN_TOKEN_CHARS} random ones")
    url = args.public_url
    if url is None:
        if args.insecure_dev:
            return None
        return ("--public-url (ANTIRELOU_PUBLIC_URL) is required outside --insecure-dev: the "
                "base URL MessageBird calls (https://sms.example.org), which its signatures "
                "cover")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok or parts.query or parts.fragment:
        return (f"--public-url {url!r} is not a base URL like https://sms.example.org "
                "(scheme, host, optional port and path; no query)")
    return None


EVENT_LOOPS = ("uvloop", "asyncio")


def install_event_loop(choice: str | None = None) -> str:
    """The worker's event loops (Faust's, and those of its consumer threads) are uvloop's
    unless ``ANTIRELOU_EVENT_LOOP=asyncio``; returns the one installed. The worker spends
    about a quarter of its CPU in the event loop itself (a task, a future, a callback per
    record; py-spy, 2026-12-02): uvloop's loop, in C, took the worker's CPU per text of the
    pipeline benchmark from 0.36 to 0.32 ms in one same-run pair (tests/benchmarks/README.md).
    Called before anything makes a loop (Ray's awaitable refs bind to the running one)."""
    choice = choice or os.environ.get("ANTIRELOU_EVENT_LOOP", "uvloop")
    if choice not in EVENT_LOOPS:
        raise SystemExit(f"antirelou: ANTIRELOU_EVENT_LOOP must be one of "
                         f"{', '.join(EVENT_LOOPS)}, not {choice!r}")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: the worker runs on asyncio's own event loop")
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return choice


def freeze_what_was_loaded() -> int:
    """Move every object alive now (Ray, Faust, aiokafka, the config: they live as long as
    the process) out of the garbage collector's reach; returns how many. A full collection
    then walks only what the flow creates: without this, a collection's pause stopped every
    stage of the worker for 130-240 ms at 100 texts/s (measured 2026-12-02 with gc.callbacks;
    the latency row's p99 was made of such pauses). Objects are still freed by reference
    counting; only cycles among them are no longer collected (there are none to speak of in
    what start-up builds)."""
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _key_matches(args: argparse.Namespace, kafka: str, secret: bytes) -> bool:
    """The deployment secret is the one the journal was written with (else said, False)."""
    from infra.broker import ensure_topics
    from infra.keycheck import KEYCHECK_CONFIG, SecretError, check_key, keycheck_topic

    topic = keycheck_topic(args.app_id)
    ensure_topics(kafka, {topic: 1}, config={topic: KEYCHECK_CONFIG})
    try:
        asyncio.run(check_key(kafka, topic, secret))
    except SecretError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return False
    log.info("the deployment secret is the deployment's (key check in %s)", topic)
    return True


def _serve_on(args: argparse.Namespace, d: Deployment, kafka: str, broker: Any) -> int:
    """Topics, key check, Ray shards, the app; then the Faust worker until it stops."""
    import ray

    from infra.broker import wait_for_kafka
    from infra.messagebird_gateway import gateway_from_env
    from infra.providers import gateways_from_env
    from infra.supervisor import persist_topology
    from streams.app import create_app
    from streams.console.ops import register_ops

    wait_for_kafka(kafka)
    names, replication = _create_topics(args, kafka, d.body_retention_ms)
    if not _key_matches(args, kafka, d.secret):
        return 2
    ray.init(address=args.ray_address or "local", namespace=args.app_id, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    shards = _start_shards(args, d, kafka, names)
    gateway = gateways_from_env(d.providers, gateway_from_env())
    settings = _settings(args, d, kafka, replication, broker)
    app = create_app(settings, shards, gateway)
    persist_topology(app, broker, kafka)  # a broker killed now loses none of it
    admin_token = env("ANTIRELOU_ADMIN_TOKEN")
    register_ops(app, settings, admin_token=admin_token, insecure_dev=args.insecure_dev,
                 follow_journal=not getattr(args, "no_dashboard", False))
    _announce_campaigns(args, d, shards)
    _announce_access(args, d, gateway, admin_token)
    code = _run_faust_worker(app, args, cleanup=broker.stop if broker else lambda: None)
    if broker is not None and broker.gave_up:
        print(f"antirelou: {broker.gave_up}", file=sys.stderr, flush=True)
        return 1
    return code


def _start_shards(args: argparse.Namespace, d: Deployment, kafka: str,
                  names: dict[str, str]) -> Any:
    from actors.remote import CampaignShards
    from infra.journal import KafkaJournal

    shards = CampaignShards(d.campaigns, journal=KafkaJournal(kafka),
                            journal_topic=names["journal"],
                            snapshot_topic=names["snapshots"], n_shards=args.shards,
                            namespace=args.app_id, resource=args.shard_resource,
                            spread=args.shard_spread, memory_mb=args.shard_memory_mb)
    # Synchronous on purpose: an event loop run here, before Faust's, would be the one
    # Ray's awaitable refs bind to, and the agents' awaits could then hang.
    infos = shards.info_now()
    log.info("campaign shards recovered %d campaign(s) from snapshots and %d journal "
             "events after them", sum(i["from_snapshots"] for i in infos),
             sum(i["recovered"] for i in infos))
    return shards


def _settings(args: argparse.Namespace, d: Deployment, kafka: str, replication: int,
              broker: Any) -> Any:
    from infra.sending import RetryPolicy
    from streams.app import Settings

    return Settings(
        kafka=kafka, campaigns=d.campaigns, secret=d.secret, app_id=args.app_id,
        partitions=args.partitions, web_host=args.web_host, web_port=args.web_port,
        data_dir=d.state_dir / "faust", signing_key=d.signing_key,
        bird_signing_key=d.bird_signing_key, bird_channels=d.providers.bird_channels,
        allow_unsigned=args.insecure_dev, public_url=args.public_url,
        snapshot_interval_s=args.snapshot_interval, operators=d.operators,
        tick_interval_s=args.tick_interval, screen_batch_size=args.screen_batch,
        report_base_url=(args.report_url or args.public_url
                         or f"http://{args.web_host}:{args.web_port}"),
        # The hard cap on calls (probes included) is never below the attempts asked for.
        retry=RetryPolicy(max_attempts=args.send_attempts,
                          max_calls=max(RetryPolicy.max_calls, args.send_attempts)),
        breaker_cooldown_s=args.breaker_cooldown,
        ack_timeout_s=args.ack_timeout,
        webhook_concurrency=args.webhook_concurrency,
        replication_factor=replication,
        http_idle_timeout_s=args.http_idle_timeout,
        http_body_timeout_s=args.http_body_timeout,
        event_skew_ms=int(args.event_skew_minutes * 60_000),
        body_retention_ms=d.body_retention_ms,
        broker_status=broker.status if broker is not None else None,
    )


def body_retention_line(body_retention_ms: int, app_id: str) -> str:
    """What the deployment keeps of texts, said at start."""
    days = body_retention_ms // 86_400_000
    if not days:
        return "texts' bodies are not kept (body_retention_days = 0)"
    return (f"texts' bodies kept {days} day(s) in {app_id}.bodies, then deleted; the journal "
            "keeps what the decisions need of them")


def _announce_campaigns(args: argparse.Namespace, d: Deployment, shards: Any) -> None:
    """The webhook's address and each campaign's live balance and reply cost."""
    from actors.campaign import reply_cost
    from schemas.events import MICROS_PER_EUR
    from streams.app import WEBHOOK_PATH

    print(f"antirelou: webhook at http://{args.web_host}:{args.web_port}{WEBHOOK_PATH}",
          flush=True)
    print(f"antirelou: {body_retention_line(d.body_retention_ms, args.app_id)}", flush=True)
    live = shards.status_now()  # after the journal: the live balance and policy
    for c in d.campaigns:
        cost = reply_cost(c)
        st = live.get(c.id)
        now = ("" if st is None else
               f" (policy v{st['policy']['version']}); balance EUR "
               f"{eur(st['balance_micros'])}, spent EUR {eur(st['spent_micros'])}, reserve "
               f"EUR {st['policy']['reserve_eur']}")
        print(f"antirelou: campaign {c.id} ({c.country}, {c.language}): budget "
              f"EUR {eur(c.budget_micros)}, reply {cost.segments} "
              f"{cost.encoding} segment(s) = EUR "
              f"{(st['reply_cost_micros'] if st else cost.cost_micros) / MICROS_PER_EUR:.4f}"
              + now, flush=True)
        warning = ucs2_warning(c.reply_text)
        if warning:
            print(f"antirelou: WARNING campaign {c.id}: {warning}", flush=True)


def _announce_access(args: argparse.Namespace, d: Deployment, gateway: Any,
                     admin_token: str | None) -> None:
    """Who may reach what, and every development shortcut in force, said loudly."""
    from infra.gateway import DryRunGateway
    from infra.operators import NO_OPERATORS
    from streams.intake.bird import BIRD_WEBHOOK_PATH

    web = f"http://{args.web_host}:{args.web_port}"
    if admin_token:
        print(f"antirelou: dashboard at {web}/dashboard, metrics at {web}/metrics "
              "(admin token: ANTIRELOU_ADMIN_TOKEN)", flush=True)
    elif args.insecure_dev:
        print(f"antirelou: *** INSECURE DEV MODE: {web}/dashboard, /metrics, /campaigns "
              "and /health are OPEN to anyone who reaches this port (set "
              "ANTIRELOU_ADMIN_TOKEN) ***", flush=True)
    else:
        print("antirelou: WARNING /dashboard, /metrics and /campaigns are refused: set "
              "ANTIRELOU_ADMIN_TOKEN", flush=True)
    providers = d.providers
    if providers.uses_bird:
        print(f"antirelou: Bird webhook at {web}{BIRD_WEBHOOK_PATH} (campaigns "
              f"{', '.join(sorted(providers.bird_channels.values()))})", flush=True)
    dry = sorted(c.id for c in d.campaigns
                 if isinstance(gateway.for_campaign(c.id), DryRunGateway))
    if dry:
        keys = {"messagebird": "MESSAGEBIRD_ACCESS_KEY", "bird": "BIRD_ACCESS_KEY"}
        missing = sorted({keys[providers.by_campaign[cid]] for cid in dry})
        print(f"antirelou: *** DRY RUN for {', '.join(dry)}: {' / '.join(missing)} not "
              "set; replies are journaled but NO SMS IS SENT ***", flush=True)
    if d.signing_key is None and providers.uses_messagebird:
        print("antirelou: *** INSECURE DEV MODE: webhooks are accepted unsigned ***",
              flush=True)
    if d.operators:
        print(f"antirelou: operators: {', '.join(sorted(d.operators))} (signed commands only)",
              flush=True)
    elif args.insecure_dev:
        print("antirelou: *** INSECURE DEV MODE: no [[operator]]: operator commands are "
              "accepted UNSIGNED, from anyone who reaches the broker ***", flush=True)
    else:
        print(f"antirelou: WARNING operator commands will be refused: {NO_OPERATORS}",
              flush=True)
