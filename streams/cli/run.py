"""Running it: ``antirelou up`` (everything on one machine), ``antirelou worker`` (one Faust
worker against a running broker), ``antirelou fake-messagebird`` and ``fake-bird``; the
composition root that starts the broker, Ray and the Faust app on what ``streams.cli.deployment`` read and
built (the deployment, its topics, the shards, the settings).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.cliparse import (
    non_negative_float,
    port,
    positive_float,
    positive_int,
)
from streams.cli.common import (
    Help,
    add_common,
    env,
    int_env,
)
from streams.cli.deployment import (
    announce_access,
    announce_campaigns,
    create_topics,
    key_matches,
    read_deployment,
    settings_for,
    start_shards,
)

log = logging.getLogger("antirelou")

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
            p.add_argument("--role", choices=("all", "web", "decide", "send"),
                           default=env("ANTIRELOU_ROLE", "all"),
                           help="all: the webhooks and every stage; web: the webhooks and "
                           "/health only (no Ray, no stage partitions), beside full workers "
                           "that screen what it stores; decide: every stage but the send "
                           "(a Ray node, no provider key); send: the send stage only (the "
                           "provider keys, no Ray) [ANTIRELOU_ROLE]")


def add_fake_parser(sub: Any) -> None:
    p = sub.add_parser("fake-messagebird", formatter_class=Help,
                       help="local MessageBird-compatible REST server")
    p.add_argument("--port", type=port, default=8089, help="port to listen on")
    p.add_argument("--access-key", default="test_key", help="the access key it accepts")
    from infra.bird_local import add_arguments

    b = sub.add_parser("fake-bird", formatter_class=Help,
                       help="local Bird Channels API server (idempotency keys as Bird "
                       "documents them; signed status events to --events-url)")
    add_arguments(b)


# Ticks closer than this would busy-loop the leader (0 did: 70 % of a core).
MIN_TICK_INTERVAL_S = 0.1
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def min_tick(text: str) -> float:
    value = positive_float(text)
    if value < MIN_TICK_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"{text} is too short: at least {MIN_TICK_INTERVAL_S} s")
    return value


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.lower()


def _optional_int_env(name: str) -> int | None:
    return int_env(name, "0") or None  # 0 or unset: the default decided later


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Where the broker and Ray run, and how topics and shards are laid out."""
    p.add_argument("--kafka-port", type=port, default=env("ANTIRELOU_KAFKA_PORT", "9092"),
                   help="port of the embedded broker (up only) [ANTIRELOU_KAFKA_PORT]")
    p.add_argument("--ray-address", default=env("RAY_ADDRESS"),
                   help="Ray cluster to join; default: a local Ray session [RAY_ADDRESS]")
    p.add_argument("--partitions", type=positive_int, default=env("ANTIRELOU_PARTITIONS", "4"),
                   help="partitions of the work topics (fixed once created) "
                        "[ANTIRELOU_PARTITIONS]")
    p.add_argument("--shards", type=positive_int, default=env("ANTIRELOU_SHARDS", "1"),
                   help="Ray actors holding the campaigns [ANTIRELOU_SHARDS]")
    p.add_argument("--shard-resource", default=env("ANTIRELOU_SHARD_RESOURCE"),
                   help="each shard needs one unit of this custom Ray resource: shards run "
                   "only on nodes started with it [ANTIRELOU_SHARD_RESOURCE]")
    p.add_argument("--shard-spread", action="store_true",
                   default=env("ANTIRELOU_SHARD_SPREAD") == "1",
                   help="spread the shards over the Ray nodes [ANTIRELOU_SHARD_SPREAD=1]")
    p.add_argument("--shard-memory-mb", type=positive_int,
                   default=_optional_int_env("ANTIRELOU_SHARD_MEMORY_MB"),
                   help="Ray memory reserved per shard, MiB [ANTIRELOU_SHARD_MEMORY_MB]")
    p.add_argument("--replication-factor", type=positive_int,
                   default=_optional_int_env("ANTIRELOU_REPLICATION_FACTOR"),
                   help="replicas of each topic created; default min(3, brokers) "
                   "[ANTIRELOU_REPLICATION_FACTOR]")
    p.add_argument("--min-insync-replicas", type=positive_int,
                   default=_optional_int_env("ANTIRELOU_MIN_INSYNC_REPLICAS"),
                   help="min.insync.replicas of the topics created; default 2 when "
                   "replicated 3 or more times, else the broker's [ANTIRELOU_MIN_INSYNC_REPLICAS]")


def _add_web_options(p: argparse.ArgumentParser) -> None:
    """The web server: webhooks, delivery reports, admin pages."""
    p.add_argument("--web-host", default=env("ANTIRELOU_WEB_HOST", "127.0.0.1"),
                   help="address of the webhook and admin web server [ANTIRELOU_WEB_HOST]")
    p.add_argument("--web-port", type=port, default=env("ANTIRELOU_WEB_PORT", "6066"),
                   help="its port [ANTIRELOU_WEB_PORT]")
    p.add_argument("--public-url", default=env("ANTIRELOU_PUBLIC_URL"),
                   help="base URL MessageBird (and Bird) call, which their signatures "
                        "cover; required unless --insecure-dev (then default: the request's "
                        "URL) [ANTIRELOU_PUBLIC_URL]")
    p.add_argument("--report-url", default=env("ANTIRELOU_REPORT_URL"),
                   help="base URL for delivery reports; default: --public-url, else the "
                   "local web address [ANTIRELOU_REPORT_URL]")
    p.add_argument("--http-idle-timeout", type=positive_float,
                   default=env("ANTIRELOU_HTTP_IDLE_TIMEOUT_S", "15"),
                   help="close a connection without a complete request header or idle "
                        "for this long [ANTIRELOU_HTTP_IDLE_TIMEOUT_S]")
    p.add_argument("--event-skew-minutes", type=non_negative_float,
                   default=env("ANTIRELOU_EVENT_SKEW_MINUTES", "5"),
                   help="a text's createdDatetime is kept within its arrival time +- this "
                        "(a replay of past texts needs more) [ANTIRELOU_EVENT_SKEW_MINUTES]")
    p.add_argument("--http-body-timeout", type=positive_float,
                   default=env("ANTIRELOU_HTTP_BODY_TIMEOUT_S", "10"),
                   help="answer 408 to a request body not received within this long "
                        "[ANTIRELOU_HTTP_BODY_TIMEOUT_S]")
    p.add_argument("--webhook-concurrency", type=positive_int,
                   default=env("ANTIRELOU_WEBHOOK_CONCURRENCY", "256"),
                   help="webhook requests under way at once in this process; the next is "
                   "answered 503 with Retry-After at once [ANTIRELOU_WEBHOOK_CONCURRENCY]")
    p.add_argument("--ack-timeout", type=positive_float,
                   default=env("ANTIRELOU_ACK_TIMEOUT_S", "10"),
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
    p.add_argument("--send-attempts", type=positive_int,
                   default=env("ANTIRELOU_SEND_ATTEMPTS", "6"),
                   help="calls per reply on 429/503/unreachable (not taken by the "
                   "provider) before it fails and is refunded [ANTIRELOU_SEND_ATTEMPTS]")
    p.add_argument("--breaker-cooldown", type=positive_float,
                   default=env("ANTIRELOU_BREAKER_COOLDOWN_S", "5"),
                   help="seconds sends wait once MessageBird failed 5 times in a row "
                   "[ANTIRELOU_BREAKER_COOLDOWN_S]")
    p.add_argument("--loglevel", default=env("ANTIRELOU_LOGLEVEL", "info"), type=log_level,
                   help="worker log level [ANTIRELOU_LOGLEVEL]")
    p.add_argument("--snapshot-interval", type=positive_float,
                   default=env("ANTIRELOU_SNAPSHOT_INTERVAL_S", "30"),
                   help="seconds between campaign snapshots [ANTIRELOU_SNAPSHOT_INTERVAL_S]")
    p.add_argument("--checkpoint-minutes", type=positive_float,
                   default=env("ANTIRELOU_CHECKPOINT_MINUTES", "5"),
                   help="journal records wait at most this long for a signed checkpoint "
                   "(and one at every UTC day's end) [ANTIRELOU_CHECKPOINT_MINUTES]")
    p.add_argument("--tick-interval", type=min_tick,
                   default=env("ANTIRELOU_TICK_INTERVAL_S", "5"),
                   help="seconds between clock ticks to the campaigns, which release and "
                        "expire deferred replies [ANTIRELOU_TICK_INTERVAL_S]")
    p.add_argument("--no-dashboard", action="store_true", default=no_dashboard_default(),
                   help="do not follow the journal: no /dashboard, and /metrics holds only "
                        "this worker's own consumer lag; in a deployment of several workers "
                        "one of them serves the dashboard and the deployment's figures "
                        "[ANTIRELOU_NO_DASHBOARD=1; or ANTIRELOU_DASHBOARD_HOST=NAME: on every "
                        "host but NAME, e.g. all pods of a StatefulSet but antirelou-worker-0]")
    p.add_argument("--screen-batch", type=positive_int,
                   default=env("ANTIRELOU_SCREEN_BATCH", "200"),
                   help="texts screened per batch (one journal write each; 1: one by "
                        "one) [ANTIRELOU_SCREEN_BATCH]")


def fake_messagebird(args: argparse.Namespace) -> int:
    from infra import messagebird_local

    return messagebird_local.main(["--port", str(args.port),
                                   "--access-key", args.access_key]) or 0


# --- up and worker -----------------------------------------------------------------------


def fake_bird(args: argparse.Namespace) -> int:
    from infra import bird_local

    bird_local.serve(args)
    return 0


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


def web_port_free(args: argparse.Namespace) -> bool:
    """The web server's address can be listened on (else said in one line): checked before
    anything starts or any banner says the webhook is there."""
    import socket

    try:
        infos = socket.getaddrinfo(args.web_host, args.web_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        print(f"antirelou: --web-host {args.web_host!r}: not an address here ({exc})",
              file=sys.stderr)
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp listens
        try:
            probe.bind(address)
        except OSError as exc:
            busy = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            print(f"antirelou: the web port {args.web_host}:{args.web_port} {busy}: stop what "
                  "listens there or choose another --web-port / ANTIRELOU_WEB_PORT",
                  file=sys.stderr)
            return False
    return True


def checked_deployment(args: argparse.Namespace, needs_kafka: bool) -> Any:
    """What a user can get wrong, said in one line before anything starts or is announced:
    the broker's address, the web port, the campaign file, keys and state folder. The
    deployment read, or None (said why)."""
    if needs_kafka and args.kafka is None:
        print("antirelou: worker needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return None
    if not web_port_free(args):
        return None
    return read_deployment(args)


def serve(args: argparse.Namespace, embedded: bool) -> int:
    """``up`` (``embedded``: starts the broker unless --kafka) and ``worker``."""
    from infra.kafka_auth import KafkaAuth

    KafkaAuth.from_env()  # how this process reaches Kafka: said in one line if it does not fit
    role = getattr(args, "role", "all")
    if role == "web":
        return serve_web(args)
    refusal, warning = ray_exposure(role, args.ray_address, os.environ)
    if refusal:
        print(f"antirelou: {refusal}", file=sys.stderr)
        return 2
    if warning:
        log.warning("%s", warning)
    deployment = checked_deployment(args, needs_kafka=not embedded)
    if deployment is None:
        return 2
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
    broker = None
    kafka = args.kafka
    if kafka is None:
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


PROVIDER_KEYS = ("MESSAGEBIRD_ACCESS_KEY", "BIRD_ACCESS_KEY")  # what sends SMS (and costs)


def ray_exposure(role: str, ray_address: str | None, environ: Any) -> tuple[str | None, str | None]:
    """(why this process must not start, a warning to log) about the Ray cluster it joins.

    Joining a cluster (an address, not a local session) needs Ray's token authentication
    (``RAY_AUTH_MODE=token`` and the cluster's token), or an explicit
    ``RAY_AUTH_MODE=disabled``: anyone who reaches an open cluster runs code on every node
    of it. A process that joins Ray (roles ``all`` and ``decide``) is such a node: the
    ``decide`` role refuses the provider keys (the ``send`` role holds them, no Ray), and
    ``all`` on a cluster with them is warned."""
    joins = role in ("all", "decide")
    keys = [k for k in PROVIDER_KEYS if (environ.get(k) or "").strip()]
    if role == "decide" and keys:
        return (f"worker --role decide is a node of the Ray cluster, where whoever runs a task "
                f"could read {' and '.join(keys)}: unset it here, the send role (--role send, "
                "no Ray) holds the provider keys"), None
    remote = joins and ray_address not in (None, "", "local", "auto")
    if not remote:
        return None, None
    mode = (environ.get("RAY_AUTH_MODE") or "").strip().lower()
    if mode == "token":
        if not ((environ.get("RAY_AUTH_TOKEN") or "").strip()
                or (environ.get("RAY_AUTH_TOKEN_PATH") or "").strip()
                or (Path.home() / ".ray" / "auth_token").is_file()):
            return ("RAY_AUTH_MODE=token but no token: set RAY_AUTH_TOKEN (or "
                    "RAY_AUTH_TOKEN_PATH) to the Ray cluster's token"), None
    elif mode == "disabled":
        pass  # asked for: said below
    else:
        return (f"joining the Ray cluster at {ray_address} needs token authentication: set "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (the cluster's token), or "
                "RAY_AUTH_MODE=disabled to join an open cluster knowingly"), None
    notes = []
    if mode == "disabled":
        notes.append(f"the Ray cluster at {ray_address} is joined without authentication "
                     "(RAY_AUTH_MODE=disabled): whoever reaches it runs code on its nodes")
    if keys:
        notes.append(f"this worker holds {' and '.join(keys)} and is a node of the Ray cluster "
                     "at " + str(ray_address) + ": on a cluster run --role decide and --role "
                     "send apart (README, Security)")
    return None, "; ".join(notes) or None


def serve_web(args: argparse.Namespace) -> int:
    """``worker --role web``: the webhooks and /health, on the deployment's broker and
    topics, with its secret (checked against the journal's key), no Ray and no stage: a
    front that scales apart from the workers that screen, decide and send."""
    from infra.broker import wait_for_kafka
    from infra.faust.aiokafka_patches import install_fetch_floor
    from streams.app import create_app
    from streams.console.ops import register_guard

    deployment = checked_deployment(args, needs_kafka=True)
    if deployment is None:
        return 2
    log.info("event loop: %s", install_event_loop())
    install_fetch_floor()
    wait_for_kafka(args.kafka)
    _, replication = create_topics(args, args.kafka, deployment.body_retention_ms)
    if not key_matches(args, args.kafka, deployment.secret):
        return 2
    settings = settings_for(args, deployment, args.kafka, replication, None)
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


def _serve_on(args: argparse.Namespace, d: Any, kafka: str, broker: Any) -> int:
    """Topics, key check, Ray shards (not for the send role), the gateway (not for the
    decide role), the app; then the Faust worker until it stops."""
    import ray

    from infra.broker import wait_for_kafka
    from infra.messagebird_gateway import gateway_from_env
    from infra.providers import gateways_from_env
    from infra.supervisor import persist_topology
    from streams.app import create_app
    from streams.console.ops import register_ops

    role = getattr(args, "role", "all")
    wait_for_kafka(kafka)
    names, replication = create_topics(args, kafka, d.body_retention_ms)
    if not key_matches(args, kafka, d.secret):
        return 2
    shards = None
    if role != "send":  # the send role holds the provider keys: never a Ray node
        ray.init(address=args.ray_address or "local", namespace=args.app_id,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
        from actors.remote import ShardLayoutError

        try:
            shards = start_shards(args, d, kafka, names)
        except ShardLayoutError as exc:
            print(f"antirelou: {exc}", file=sys.stderr, flush=True)
            return 2
    gateway = (None if role == "decide"
               else gateways_from_env(d.providers, gateway_from_env()))
    settings = settings_for(args, d, kafka, replication, broker)
    settings.role = role
    app = create_app(settings, shards, gateway)
    persist_topology(app, broker, kafka)  # a broker killed now loses none of it
    admin_token = env("ANTIRELOU_ADMIN_TOKEN")
    register_ops(app, settings, admin_token=admin_token, insecure_dev=args.insecure_dev,
                 follow_journal=not getattr(args, "no_dashboard", False) and role != "send")
    if shards is not None:
        announce_campaigns(args, d, shards)
    else:
        print(f"antirelou: send-only process (--role send): the replies the deciding workers "
              f"of app {args.app_id} approve, sent from here; no Ray, no other stage",
              flush=True)
    announce_access(args, d, gateway, admin_token)
    code = _run_faust_worker(app, args, cleanup=broker.stop if broker else lambda: None)
    if broker is not None and broker.gave_up:
        print(f"antirelou: {broker.gave_up}", file=sys.stderr, flush=True)
        return 1
    return code
