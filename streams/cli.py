"""The ``antirelou`` command.

    antirelou up --config campaigns.toml [--insecure-dev]
        everything on one machine: the embedded Kafka-protocol broker (unless
        --kafka/KAFKA_BOOTSTRAP_SERVERS names a real cluster), a local Ray session (unless
        --ray-address/RAY_ADDRESS), and the Faust worker with its web server. Ctrl-C stops
        all it started.
    antirelou worker --kafka HOST:PORT --config campaigns.toml
        one Faust worker against an existing broker (scale out by starting more).
    antirelou journal [--follow]        print the journal as JSON lines
    antirelou export --kafka HOST:PORT --out FILE     the journal to a JSON-lines file
    antirelou audit --config C.toml (--kafka HOST:PORT | --file FILE) [--json] [--what-if O.toml]
        replay the journal through the pure core; exit 1 on any mismatch (streams/audit/)
    antirelou policy show|set ..., antirelou budget credit ...
        operator commands; set and credit are signed with ANTIRELOU_OPERATOR_KEY
    antirelou operator new NAME         an operator key pair and its [[operator]] table
    antirelou fake-messagebird          a local MessageBird-compatible REST server

Settings come from flags, then environment variables (see README, "Configuration").
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import Any

from infra.broker import BrokerError
from infra.config import ConfigError, load_campaigns

log = logging.getLogger("antirelou")


# Exit status of every command (README, "Operate it live").
EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_NO_ANSWER, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
# What `bash infra/up.sh` runs: the example campaigns and the embedded broker on 9092.
UP_CONFIG = "infra/campaigns.example.toml"

# One line each, for `policy set --help` (README, "Operate it live", has the long form).
POLICY_KEY_HELP = {
    "price_per_segment_eur": "price of one SMS segment (EUR), costs each reply",
    "reserve_eur": "budget floor never spent (EUR)",
    "cooldown_days": "answer a sender again after this many days; never: once",
    "allowed_countries": "ISO codes of the countries answered, e.g. FR,BE",
    "blocked_prefixes": "number ranges never answered, e.g. 33-756,33-757; none",
    "sender_burst": "texts a sender may send at once before he is a flooder",
    "sender_period_minutes": "then one text per this many minutes",
    "filter_test_texts": "true: 'test' and the like are not answered",
    "pacing": "true: the allowance, a token bucket refilled until the end date",
    "allowance_burst_percent": "the bucket holds at most this % of the spendable balance",
    "prefix_burst": "first texts a number range may send at once (off: no limit)",
    "prefix_period_minutes": "then one first text per this many minutes",
    "reply_delay_minutes": "send each reply this long after its approval",
    "surge_multiple": "a minute with this multiple of the baseline starts a surge (5; off)",
    "surge_min_rate": "and at least this many first texts a minute",
    "surge_expected_per_minute": "the baseline's prior: first texts a minute expected",
    "surge_quiet_minutes": "the surge ends after this many quiet minutes",
    "surge_queue": "replies deferred during a surge, at most",
    "surge_watch_minutes": "a deferred reply is watched this long (a flooder's is withdrawn)",
    "surge_ttl_minutes": "a deferred reply expires after this long",
    "surge_release_per_minute": "first texts released a minute during a surge (0: at its end)",
    "surge_human_percent": "at the end, release first texts if this % texted again, else expire",
}


class Unreachable(Exception):
    """The broker did not answer."""


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _default_config() -> str:
    return _env("ANTIRELOU_CONFIG", UP_CONFIG)


def _default_kafka() -> str:
    return _env("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{_env('ANTIRELOU_KAFKA_PORT', '9092')}"


def _int_env(name: str, default: str) -> int:
    value = _env(name, default)
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"antirelou: {name}={value!r} is not a whole number") from None


def _float_env(name: str, default: str) -> float:
    value = _env(name, default)
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"antirelou: {name}={value!r} is not a number") from None


def _add_common(p: argparse.ArgumentParser, server: bool = False) -> None:
    p.add_argument("--config", default=_default_config(),
                   help="campaign file (TOML) [ANTIRELOU_CONFIG]")
    p.add_argument("--state-dir", default=_env("ANTIRELOU_STATE_DIR", ".state"),
                   help="where broker data, tables and the secret live [ANTIRELOU_STATE_DIR]")
    if server:
        p.add_argument("--kafka", default=_env("KAFKA_BOOTSTRAP_SERVERS"),
                       help="bootstrap servers of a Kafka cluster; up: none starts the "
                            "embedded broker [KAFKA_BOOTSTRAP_SERVERS]")
    else:
        _add_kafka(p)
    p.add_argument("--app-id", default=_env("ANTIRELOU_APP_ID", "antirelou"),
                   help="deployment name: topic prefix, consumer group, Ray namespace "
                        "[ANTIRELOU_APP_ID]")


def _add_kafka(p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    p.add_argument("--kafka", default=_default_kafka(),
                   help="bootstrap servers; default: the broker `up` starts "
                        "[KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:ANTIRELOU_KAFKA_PORT]")


def _add_signing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", default=_env("ANTIRELOU_OPERATOR") or getpass.getuser(),
                   help="your operator name, as in the campaign file [ANTIRELOU_OPERATOR, "
                        "else the login name]")
    p.add_argument("--insecure-dev", action="store_true",
                   default=_env("ANTIRELOU_INSECURE_DEV") == "1",
                   help="send the command unsigned (a development worker with no operators) "
                        "[ANTIRELOU_INSECURE_DEV=1]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antirelou", description=__doc__,
                                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"antirelou {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(*names: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(*names, formatter_class=_Help, **kwargs)

    for name in ("up", "worker"):
        p = command(name, help="start everything on this machine" if name == "up" else
                    "one Faust worker against a running broker",
                    description="start the embedded broker (unless --kafka), a local Ray "
                    "session and the worker" if name == "up" else "one Faust worker; "
                    "start more to scale out")
        _add_common(p, server=True)
        p.add_argument("--kafka-port", type=int, default=_int_env("ANTIRELOU_KAFKA_PORT", "9092"),
                       help="port of the embedded broker (up only) [ANTIRELOU_KAFKA_PORT]")
        p.add_argument("--ray-address", default=_env("RAY_ADDRESS"),
                       help="Ray cluster to join; default: a local Ray session [RAY_ADDRESS]")
        p.add_argument("--web-host", default=_env("ANTIRELOU_WEB_HOST", "127.0.0.1"),
                       help="address of the webhook and admin web server [ANTIRELOU_WEB_HOST]")
        p.add_argument("--web-port", type=int, default=_int_env("ANTIRELOU_WEB_PORT", "6066"),
                       help="its port [ANTIRELOU_WEB_PORT]")
        p.add_argument("--partitions", type=int, default=_int_env("ANTIRELOU_PARTITIONS", "4"),
                       help="partitions of the work topics (fixed once created) "
                            "[ANTIRELOU_PARTITIONS]")
        p.add_argument("--shards", type=int, default=_int_env("ANTIRELOU_SHARDS", "1"),
                       help="Ray actors holding the campaigns [ANTIRELOU_SHARDS]")
        p.add_argument("--shard-resource", default=_env("ANTIRELOU_SHARD_RESOURCE"),
                       help="each shard needs one unit of this custom Ray resource: shards run "
                       "only on nodes started with it [ANTIRELOU_SHARD_RESOURCE]")
        p.add_argument("--shard-spread", action="store_true",
                       default=_env("ANTIRELOU_SHARD_SPREAD") == "1",
                       help="spread the shards over the Ray nodes [ANTIRELOU_SHARD_SPREAD=1]")
        p.add_argument("--shard-memory-mb", type=int,
                       default=int(_env("ANTIRELOU_SHARD_MEMORY_MB", "0")) or None,
                       help="Ray memory reserved per shard, MiB [ANTIRELOU_SHARD_MEMORY_MB]")
        p.add_argument("--replication-factor", type=int,
                       default=int(_env("ANTIRELOU_REPLICATION_FACTOR", "0")) or None,
                       help="replicas of each topic created; default min(3, brokers) "
                       "[ANTIRELOU_REPLICATION_FACTOR]")
        p.add_argument("--min-insync-replicas", type=int,
                       default=int(_env("ANTIRELOU_MIN_INSYNC_REPLICAS", "0")) or None,
                       help="min.insync.replicas of the topics created; default 2 when "
                       "replicated 3 or more times, else the broker's [ANTIRELOU_MIN_INSYNC_REPLICAS]")
        p.add_argument("--public-url", default=_env("ANTIRELOU_PUBLIC_URL"),
                       help="base URL MessageBird calls (signature check behind a proxy); "
                            "default: the request URL [ANTIRELOU_PUBLIC_URL]")
        p.add_argument("--report-url", default=_env("ANTIRELOU_REPORT_URL"),
                       help="base URL for delivery reports; default: --public-url, else the "
                       "local web address [ANTIRELOU_REPORT_URL]")
        p.add_argument("--send-attempts", type=int,
                       default=_int_env("ANTIRELOU_SEND_ATTEMPTS", "6"),
                       help="calls per reply on 5xx/429/unreachable before it fails and is "
                       "refunded [ANTIRELOU_SEND_ATTEMPTS]")
        p.add_argument("--http-idle-timeout", type=float,
                       default=float(_env("ANTIRELOU_HTTP_IDLE_TIMEOUT_S", "15")),
                       help="close a connection without a complete request header or idle "
                            "for this long [ANTIRELOU_HTTP_IDLE_TIMEOUT_S]")
        p.add_argument("--event-skew-minutes", type=float,
                       default=float(_env("ANTIRELOU_EVENT_SKEW_MINUTES", "5")),
                       help="a text's createdDatetime is kept within its arrival time +- this "
                            "(a replay of past texts needs more) [ANTIRELOU_EVENT_SKEW_MINUTES]")
        p.add_argument("--http-body-timeout", type=float,
                       default=float(_env("ANTIRELOU_HTTP_BODY_TIMEOUT_S", "10")),
                       help="answer 408 to a request body not received within this long "
                            "[ANTIRELOU_HTTP_BODY_TIMEOUT_S]")
        p.add_argument("--breaker-cooldown", type=float,
                       default=_float_env("ANTIRELOU_BREAKER_COOLDOWN_S", "5"),
                       help="seconds sends wait once MessageBird failed 5 times in a row "
                       "[ANTIRELOU_BREAKER_COOLDOWN_S]")
        p.add_argument("--ack-timeout", type=float,
                       default=_float_env("ANTIRELOU_ACK_TIMEOUT_S", "10"),
                       help="seconds the webhook waits for the broker before answering 503 "
                       "[ANTIRELOU_ACK_TIMEOUT_S]")
        p.add_argument("--insecure-dev", action="store_true",
                       default=_env("ANTIRELOU_INSECURE_DEV") == "1",
                       help="accept unsigned webhooks when no signing key is set, unsigned "
                            "operator commands when no operator is declared, and leave the "
                            "admin pages open when ANTIRELOU_ADMIN_TOKEN is not set "
                            "(development) [ANTIRELOU_INSECURE_DEV=1]")
        p.add_argument("--loglevel", default=_env("ANTIRELOU_LOGLEVEL", "info"),
                       help="worker log level [ANTIRELOU_LOGLEVEL]")
        p.add_argument("--snapshot-interval", type=float,
                       default=_float_env("ANTIRELOU_SNAPSHOT_INTERVAL_S", "30"),
                       help="seconds between campaign snapshots [ANTIRELOU_SNAPSHOT_INTERVAL_S]")
        p.add_argument("--tick-interval", type=float,
                       default=_float_env("ANTIRELOU_TICK_INTERVAL_S", "5"),
                       help="seconds between clock ticks to the campaigns, which release and "
                            "expire deferred replies [ANTIRELOU_TICK_INTERVAL_S]")
        p.add_argument("--screen-batch", type=int,
                       default=_int_env("ANTIRELOU_SCREEN_BATCH", "200"),
                       help="texts screened per batch (one journal write each; 1: one by "
                            "one) [ANTIRELOU_SCREEN_BATCH]")

    p = command("check", help="validate a campaign file offline; print each reply's cost",
                description="read the campaign file as `up` would, without any broker; "
                "exit 0 when valid, 2 with the reason when not")
    p.add_argument("--config", default=_default_config(),
                   help="campaign file (TOML) [ANTIRELOU_CONFIG]")

    p = command("journal", help="print the journal (JSON lines, or --human)",
                description="print the journal from its beginning; filters combine")
    _add_common(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--human", "-H", action="store_true",
                   help="one readable line per event: ISO times, EUR")
    p.add_argument("--campaign", help="only this campaign's events")
    p.add_argument("--type", dest="types", metavar="TYPE[,TYPE]",
                   help="only these event types, e.g. ReplyApproved,ReplyDenied")
    p.add_argument("--since", help="only events at or after this time: 2026-12-01, "
                   "2026-12-01T20:00, or back from now: 30m, 2h, 7d")

    p = command("policy", help="show or change campaign policies (live)")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="show|set")
    q = psub.add_parser("show", help="each campaign's policy and balance, from the journal",
                        formatter_class=_Help)
    _add_common(q)
    q.add_argument("campaign", nargs="?", help="only this campaign")
    q.add_argument("--json", action="store_true", help="print JSON")
    keys = "\n".join(f"  {k:<26} {v}" for k, v in POLICY_KEY_HELP.items())
    q = psub.add_parser("set", help="change policy keys of one campaign: key=value ...",
                        formatter_class=_Help, epilog="policy keys:\n" + keys)
    _add_common(q)
    q.add_argument("campaign", help="campaign id")
    q.add_argument("changes", nargs="+", metavar="key=value",
                   help="e.g. price_per_segment_eur=0.07 reserve_eur=50 cooldown_days=never")
    q.add_argument("--force", action="store_true",
                   help="apply a change that stops every reply (reserve above the balance)")
    _add_signing(q)

    p = command("budget", help="credit a campaign's budget (live)")
    bsub = p.add_subparsers(dest="budget_command", required=True, metavar="credit")
    q = bsub.add_parser("credit", help="add AMOUNT EUR to CAMPAIGN's budget", formatter_class=_Help)
    _add_common(q)
    q.add_argument("campaign", help="campaign id")
    q.add_argument("amount", help="EUR, e.g. 250.00")
    q.add_argument("--source", required=True, help="where the money comes from, e.g. leetchi")
    _add_signing(q)

    p = command("operator", help="operator credentials")
    osub = p.add_subparsers(dest="operator_command", required=True, metavar="new")
    q = osub.add_parser("new", help="a new operator key pair and its [[operator]] table",
                        formatter_class=_Help)
    q.add_argument("name", help="the operator's name")
    q.add_argument("--may", default="policy,budget",
                   help="rights, comma-separated: policy, budget")
    q.add_argument("--campaigns", default=None,
                   help="campaign ids, comma-separated (default: every campaign)")

    p = command("export", help="write the journal to a JSON-lines file")
    _add_kafka(p)
    p.add_argument("--app-id", default=_env("ANTIRELOU_APP_ID", "antirelou"),
                   help="deployment name [ANTIRELOU_APP_ID]")
    p.add_argument("--out", required=True, help="the file to write (one event per line)")
    p = command("audit", help="replay the journal through the core, diff every decision")
    p.add_argument("--config", default=_default_config(),
                   help="the campaign file (TOML) the journal ran with [ANTIRELOU_CONFIG]")
    src = p.add_mutually_exclusive_group()
    _add_kafka(src)
    src.add_argument("--file", help="read a JSON-lines export instead of the broker")
    p.add_argument("--app-id", default=_env("ANTIRELOU_APP_ID", "antirelou"),
                   help="deployment name [ANTIRELOU_APP_ID]")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report with charts")
    p.add_argument("--what-if", metavar="OTHER.toml", help="also replay the texts under this config")

    command("simulate", help="replay the 2017 flood story: antirelou simulate --help",
            add_help=False)

    p = command("fake-messagebird", help="local MessageBird-compatible REST server")
    p.add_argument("--port", type=int, default=8089, help="port to listen on")
    p.add_argument("--access-key", default="test_key", help="the access key it accepts")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antirelou")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # its own options: see streams/simulate/command.py
        from streams import simulate

        return simulate.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.consumer.group_coordinator"):
        if args.command not in ("up", "worker"):
            logging.getLogger(name).setLevel(logging.CRITICAL)  # errors are said in one line
    try:
        if args.command in ("up", "worker"):
            return run(args, embedded=args.command == "up")
        if args.command == "check":
            return check_config(args)
        if args.command == "journal":
            return print_journal(args)
        if args.command in ("policy", "budget"):
            return operate(args)
        if args.command == "operator":
            return new_operator(args)
        if args.command in ("export", "audit"):
            return audit_journal(args)
        if args.command == "fake-messagebird":
            from infra import messagebird_local

            return messagebird_local.main(["--port", str(args.port),
                                           "--access-key", args.access_key]) or 0
    except ConfigError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokerError as exc:  # e.g. the state folder's broker belongs to a running `up`
        print(f"antirelou: {exc}", file=sys.stderr)
        return 1
    except Unreachable as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    return 0


def _unreachable(args: argparse.Namespace, exc: BaseException) -> Unreachable:
    up = " (is `bash infra/up.sh` running?)" if args.kafka == _default_kafka() else ""
    return Unreachable(f"cannot reach the broker at {args.kafka}{up}: {type(exc).__name__}; "
                       "set --kafka or KAFKA_BOOTSTRAP_SERVERS")


def talk(args: argparse.Namespace, coro: Any) -> Any:
    """Run a coroutine that talks to the broker; an unreachable broker is one line, exit 4."""
    from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    try:
        return asyncio.run(coro)
    except (KafkaConnectionError, KafkaTimeoutError, OSError, TimeoutError) as exc:
        raise _unreachable(args, exc) from None
    except KafkaError as exc:
        if "connect" in str(exc).lower() or "bootstrap" in str(exc).lower():
            raise _unreachable(args, exc) from None
        raise


def ucs2_warning(text: str) -> str | None:
    """Say which characters force UCS-2 and what GSM-7 would have cost, if any do."""
    from schemas.segments import segment_info

    info = segment_info(text)
    if not info.offending:
        return None
    chars = " ".join(repr(ch) for ch in info.offending)
    plain = segment_info("".join("'" if ch in "\u2018\u2019" else '"' if ch in "\u00ab\u00bb\u201c\u201d"
                                 else ch for ch in text))
    hint = (f"; with straight quotes it would be {plain.segments} GSM-7 segment(s)"
            if plain.encoding == "GSM-7" else "")
    return (f"the reply text uses UCS-2 because of {chars}: {info.segments} segment(s) "
            f"per reply{hint}")


def topic_layout(names: dict[str, str], partitions: int) -> dict[str, int]:
    # Policies are few and must be read in order by every worker; snapshots are one record
    # per campaign: one partition each.
    single = ("policies", "snapshots")
    return {name: 1 if role in single else partitions for role, name in names.items()}


# The work topics carry the sender's number (sealed): kept long enough for any restart or
# outage to be worked through (a surge's deferred replies wait in a table, not here), then
# deleted by the broker. The journal, without numbers, is kept for ever (the broker's
# default would drop it after 7 days).
WORK_TOPIC_RETENTION_MS = 7 * 24 * 3_600_000


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


def topic_configs(names: dict[str, str],
                  min_insync: int | None = None) -> dict[str, dict[str, str]]:
    from actors.snapshot import MAX_SNAPSHOT_BYTES

    work = {"cleanup.policy": "delete", "retention.ms": str(WORK_TOPIC_RETENTION_MS)}
    configs = {
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


# Ctrl-C/SIGTERM: seconds `up` and `worker` have to stop before they stop the broker and
# exit regardless (a reply in backoff or a hung MessageBird call must not hold them).
STOP_GRACE_S = 7.0


def supervised_broker(state_dir: Path, port: int):
    """The embedded broker under its supervisor (infra/supervisor.py): an orphan of a
    killed `up` stopped first (and said), restarted when it dies, dies with this process."""
    from infra.broker import EmbeddedBroker
    from infra.supervisor import BrokerSupervisor

    delay = float(_env("ANTIRELOU_BROKER_RESTART_DELAY_S", "0.5"))
    supervisor = BrokerSupervisor(EmbeddedBroker(state_dir / "kafka", port=port,
                                                 die_with_parent=True), state_dir,
                                  restart_delay_s=delay).start()
    if supervisor.orphan_note:
        print(f"antirelou: {supervisor.orphan_note}", flush=True)
    return supervisor


def run(args: argparse.Namespace, embedded: bool) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import faust
    import ray

    from actors.campaign import reply_cost
    from actors.remote import CampaignShards
    from infra.broker import (
        broker_count,
        default_replication,
        ensure_topics,
        wait_for_kafka,
    )
    from infra.kafka_compat import install_fetch_floor
    from infra.messagebird_gateway import DryRunGateway, gateway_from_env
    from infra.operators import NO_OPERATORS, load_operators
    from infra.providers import gateways_from_env, load_providers
    from infra.supervisor import bound_shutdown, persist_topology
    from schemas.events import MICROS_PER_EUR
    from streams.app import WEBHOOK_PATH, Settings, create_app, topic_names
    from streams.bird_webhook import BIRD_WEBHOOK_PATH
    from streams.ops import register_ops
    from streams.sending import RetryPolicy

    install_fetch_floor()  # noida-db answers empty fetches at once: do not spin on them
    campaigns = load_campaigns(args.config)
    operators = load_operators(args.config, [c.id for c in campaigns])
    providers = load_providers(args.config, campaigns)  # provider of each campaign, checked
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    signing_key = _env("MESSAGEBIRD_SIGNING_KEY")
    bird_signing_key = _env("BIRD_SIGNING_KEY")
    if signing_key is None and providers.uses_messagebird and not args.insecure_dev:
        print("antirelou: no webhook signing key. Set MESSAGEBIRD_SIGNING_KEY, or pass "
              "--insecure-dev to accept unsigned webhooks while developing.", file=sys.stderr)
        return 2
    if bird_signing_key is None and providers.uses_bird and not args.insecure_dev:
        print("antirelou: no Bird webhook signing key. Set BIRD_SIGNING_KEY (the signing key "
              "of the webhook subscription), or pass --insecure-dev.", file=sys.stderr)
        return 2
    from infra.keycheck import (
        KEYCHECK_CONFIG,
        SecretError,
        check_key,
        deployment_secret,
        keycheck_topic,
    )
    try:
        secret, secret_from = deployment_secret(state_dir, development=args.insecure_dev)
    except SecretError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return 2
    log.info("deployment secret from %s", secret_from)
    if not secret_from.startswith("ANTIRELOU"):
        log.warning("the deployment secret is kept in the state folder (%s): development "
                    "only, a backup of the folder opens every sealed number", secret_from)

    broker = None
    kafka = args.kafka
    if kafka is None:
        if not embedded:
            print("antirelou: worker needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
            return 2
        broker = supervised_broker(state_dir, args.kafka_port)
        kafka = broker.broker.bootstrap_servers
        log.info("embedded Kafka-protocol broker (noida-db) on %s, data in %s",
                 kafka, state_dir / "kafka")
    try:
        wait_for_kafka(kafka)
        names = topic_names(args.app_id)
        replication = args.replication_factor or default_replication(broker_count(kafka))
        min_insync = min_insync_for(replication, args.min_insync_replicas)
        created = ensure_topics(kafka, topic_layout(names, args.partitions),
                                config=topic_configs(names, min_insync), replication=replication)
        if created:
            log.info("created topics %s (replication factor %d, min.insync.replicas %s)",
                     ", ".join(created), replication, min_insync or "the broker's")
        ensure_topics(kafka, {keycheck_topic(args.app_id): 1},
                      config={keycheck_topic(args.app_id): KEYCHECK_CONFIG})
        try:
            value = asyncio.run(check_key(kafka, keycheck_topic(args.app_id), secret))
        except SecretError as exc:
            print(f"antirelou: {exc}", file=sys.stderr)
            return 2
        log.info("deployment key check value %s matches", value)

        ray.init(address=args.ray_address or "local", namespace=args.app_id, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        shards = CampaignShards(campaigns, kafka=kafka, journal_topic=names["journal"],
                                snapshot_topic=names["snapshots"], n_shards=args.shards,
                                namespace=args.app_id, resource=args.shard_resource,
                                spread=args.shard_spread, memory_mb=args.shard_memory_mb)
        # Synchronous on purpose: an event loop run here, before Faust's, would be the one
        # Ray's awaitable refs bind to, and the agents' awaits could then hang.
        infos = shards.info_now()
        log.info("campaign shards recovered %d campaign(s) from snapshots and %d journal "
                 "events after them", sum(i["from_snapshots"] for i in infos),
                 sum(i["recovered"] for i in infos))
        gateway = gateways_from_env(providers, gateway_from_env())
        settings = Settings(
            kafka=kafka, campaigns=campaigns, secret=secret, app_id=args.app_id,
            partitions=args.partitions, web_host=args.web_host, web_port=args.web_port,
            data_dir=state_dir / "faust", signing_key=signing_key,
            bird_signing_key=bird_signing_key, bird_channels=providers.bird_channels,
            allow_unsigned=args.insecure_dev, public_url=args.public_url,
            snapshot_interval_s=args.snapshot_interval, operators=operators,
            tick_interval_s=args.tick_interval, screen_batch_size=args.screen_batch,
            report_base_url=(args.report_url or args.public_url
                             or f"http://{args.web_host}:{args.web_port}"),
            # The hard cap on calls (probes included) is never below the attempts asked for.
            retry=RetryPolicy(max_attempts=args.send_attempts,
                              max_calls=max(RetryPolicy.max_calls, args.send_attempts)),
            breaker_cooldown_s=args.breaker_cooldown,
            ack_timeout_s=args.ack_timeout,
            replication_factor=replication,
            http_idle_timeout_s=args.http_idle_timeout,
            http_body_timeout_s=args.http_body_timeout,
            event_skew_ms=int(args.event_skew_minutes * 60_000),
            broker_status=broker.status if broker is not None else None,
        )
        app = create_app(settings, shards, gateway)
        persist_topology(app, broker, kafka)  # a broker killed now loses none of it
        admin_token = _env("ANTIRELOU_ADMIN_TOKEN")
        register_ops(app, settings, admin_token=admin_token, insecure_dev=args.insecure_dev)

        print(f"antirelou: webhook at http://{args.web_host}:{args.web_port}{WEBHOOK_PATH}",
              flush=True)
        live = shards.status_now()  # after the journal: the live balance and policy
        for c in campaigns:
            cost = reply_cost(c)
            st = live.get(c.id)
            now = ("" if st is None else
                   f" (policy v{st['policy']['version']}); balance EUR "
                   f"{eur(st['balance_micros'])}, spent EUR {eur(st['spent_micros'])}, reserve "
                   f"EUR {st['policy']['reserve_eur']}")
            print(f"antirelou: campaign {c.id} ({c.country}, {c.language}): budget "
                  f"EUR {c.budget_micros / MICROS_PER_EUR:.2f}, reply {cost.segments} "
                  f"{cost.encoding} segment(s) = EUR "
                  f"{(st['reply_cost_micros'] if st else cost.cost_micros) / MICROS_PER_EUR:.4f}"
                  + now, flush=True)
            warning = ucs2_warning(c.reply_text)
            if warning:
                print(f"antirelou: WARNING campaign {c.id}: {warning}", flush=True)
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
        if providers.uses_bird:
            print(f"antirelou: Bird webhook at http://{args.web_host}:{args.web_port}"
                  f"{BIRD_WEBHOOK_PATH} (campaigns "
                  f"{', '.join(sorted(providers.bird_channels.values()))})", flush=True)
        dry = sorted(c.id for c in campaigns
                     if isinstance(gateway.for_campaign(c.id), DryRunGateway))
        if dry:
            keys = {"messagebird": "MESSAGEBIRD_ACCESS_KEY", "bird": "BIRD_ACCESS_KEY"}
            missing = sorted({keys[providers.by_campaign[cid]] for cid in dry})
            print(f"antirelou: *** DRY RUN for {', '.join(dry)}: {' / '.join(missing)} not "
                  "set; replies are journaled but NO SMS IS SENT ***", flush=True)
        if signing_key is None and providers.uses_messagebird:
            print("antirelou: *** INSECURE DEV MODE: webhooks are accepted unsigned ***",
                  flush=True)
        if operators:
            print(f"antirelou: operators: {', '.join(sorted(operators))} (signed commands only)",
                  flush=True)
        elif args.insecure_dev:
            print("antirelou: *** INSECURE DEV MODE: no [[operator]]: operator commands are "
                  "accepted UNSIGNED, from anyone who reaches the broker ***", flush=True)
        else:
            print(f"antirelou: WARNING operator commands will be refused: {NO_OPERATORS}",
                  flush=True)
        worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
        bound_shutdown(worker, STOP_GRACE_S, cleanup=broker.stop if broker else lambda: None)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = int(exc.code or 0)
        else:
            code = 0
        if broker is not None and broker.gave_up:
            print(f"antirelou: {broker.gave_up}", file=sys.stderr, flush=True)
            return 1
        return code
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if broker is not None:
            broker.stop()


def iso_ms(ms: int | None) -> str:
    import datetime as dt

    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def eur(micros: int) -> str:
    from decimal import Decimal

    return f"{Decimal(micros) / 1_000_000:,.2f}"


async def _projection(kafka: str, names: dict[str, str], campaigns: list) -> Any:
    """Every campaign rebuilt from the journal with the core the workers use."""
    from infra.journal import iter_records
    from schemas import codec
    from streams.metrics import Projection

    projection = Projection(campaigns)
    async for _, _, _, value in iter_records(kafka, names["journal"]):
        try:
            event = codec.decode(value)
        except codec.CodecError:
            continue
        projection.apply(event, getattr(event, "occurred_at", 0))
    return projection


def _policy_lines(cid: str, projection: Any) -> list[str]:
    st = projection.status(cid)
    fig = projection.figures[cid]
    p = st["policy"]
    lines = [
        f"{cid}: policy v{p['version']} ({fig.policy_by}"
        + (f", {iso_ms(fig.policy_at)}" if fig.policy_at else "") + ")",
        f"  balance EUR {eur(st['balance_micros'])}, spent EUR {eur(st['spent_micros'])}, "
        f"credited EUR {eur(st['credited_micros'])}, refunded EUR {eur(st['refunded_micros'])}; "
        f"{st['approved']} replies, {st['denied']} denied; reply {st['reply_segments']} "
        f"{st['reply_encoding']} segment(s) = EUR {eur(st['reply_cost_micros'])}; surge "
        f"{'ON' if st['surge'] else 'off'}, {st['queued']} queued",
    ]
    width = max(len(k) for k in p)
    lines += [f"  {k:<{width}} = {_shown(v)}" for k, v in p.items() if k != "version"]
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _stops_replies(cid: str, projection: Any, changes: dict[str, Any]) -> list[str]:
    """Why the policy after these changes answers nobody (empty: it does not)."""
    from actors.campaign import reply_cost
    from schemas.policy import apply_changes

    fig = projection.figures[cid]
    policy = apply_changes(fig.state.policy, changes, fig.state.policy.version + 1)
    balance = fig.state.balance_micros
    cost = reply_cost(fig.campaign, policy).cost_micros
    out = []
    if policy.reserve_micros >= balance:
        out.append(f"reserve EUR {eur(policy.reserve_micros)} is not below the balance EUR "
                   f"{eur(balance)}: no reply can be paid")
    elif balance - policy.reserve_micros < cost:
        out.append(f"balance EUR {eur(balance)} minus the reserve EUR "
                   f"{eur(policy.reserve_micros)} is less than one reply (EUR {eur(cost)})")
    if "allowed_countries" in changes and not policy.allowed_countries:
        out.append("allowed_countries is empty: no number is answered")
    return out


def operate(args: argparse.Namespace) -> int:
    """``policy show|set`` and ``budget credit``: through the log, like every decision."""
    import orjson

    from schemas.policy import PolicyError, apply_changes, describe, parse_changes, parse_eur
    from streams import control
    from streams.app import topic_names

    names = topic_names(args.app_id)
    campaigns = load_campaigns(args.config)
    known = {c.id for c in campaigns}
    if getattr(args, "campaign", None) and args.campaign not in known:
        print(f"antirelou: unknown campaign {args.campaign!r}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "policy" and args.policy_command == "show":
        projection = talk(args, _projection(args.kafka, names, campaigns))
        shown = [args.campaign] if args.campaign else [c.id for c in campaigns]
        if args.json:
            status = {cid: {**projection.status(cid),
                            "policy_by": projection.figures[cid].policy_by,
                            "policy_at": projection.figures[cid].policy_at} for cid in shown}
            print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
            return EXIT_OK
        for cid in shown:
            print("\n".join(_policy_lines(cid, projection)))
        return EXIT_OK
    try:
        if args.command == "policy":
            changes = parse_changes(args.changes)
            command = control.new_change(args.campaign, changes, args.operator)
        else:
            amount = parse_eur(args.amount, "amount", positive=True)
            command = control.new_credit(args.campaign, amount, args.source, args.operator)
    except PolicyError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    before = None
    if args.command == "policy":
        projection = talk(args, _projection(args.kafka, names, campaigns))
        before = projection.figures[args.campaign].state.policy
        problems = _stops_replies(args.campaign, projection, changes)
        for problem in problems:
            print(f"antirelou: {'warning: ' if args.force else ''}{args.campaign}: {problem}",
                  file=sys.stderr)
        if problems and not args.force:
            print("antirelou: not sent: this change stops every reply (pass --force to apply "
                  "it anyway)", file=sys.stderr)
            return EXIT_BAD_INPUT
    wire = sign_for(args, command, known)
    if wire is None:
        return EXIT_BAD_INPUT
    answer = talk(args, control.submit(args.kafka, names, command, wire=wire))
    if answer is None:
        print("antirelou: the command is stored but no worker answered within 15 s; it applies "
              "when a worker runs (check with `antirelou policy show`)", file=sys.stderr)
        return EXIT_NO_ANSWER
    if answer.TYPE == "ControlRefused":
        print(f"antirelou: refused (operator {answer.operator!r}): {answer.reason}",
              file=sys.stderr)
        return EXIT_REFUSED
    if answer.TYPE == "ControlRejected":
        print(f"antirelou: refused: {answer.reason}", file=sys.stderr)
        return EXIT_REFUSED
    if answer.TYPE == "PolicyChanged":
        old = describe(before) if before is not None else {}
        new = describe(apply_changes(before, answer.changes, answer.version)) if before else {}
        diff = ", ".join(f"{k} {_shown(old[k])} -> {_shown(new[k])}" for k in new
                         if k != "version" and old.get(k) != new[k])
        print(f"{answer.campaign_id}: policy v{answer.version} in force ({answer.operator})"
              + (f": {diff}" if diff else ": no value changed"))
    else:
        print(f"{answer.campaign_id}: credited EUR {eur(answer.amount_micros)} from "
              f"{answer.source}; balance EUR {eur(answer.balance_after_micros)}")
    return EXIT_OK


def sign_for(args: argparse.Namespace, command, campaign_ids: set[str]) -> bytes | None:
    """The command's wire bytes, signed with ANTIRELOU_OPERATOR_KEY; None (said why) if not."""
    from infra.operators import NO_OPERATORS, OperatorKeyError, load_operators, sign_command
    from schemas import codec

    key = _env("ANTIRELOU_OPERATOR_KEY")
    if key is None:
        if args.insecure_dev:
            print("antirelou: *** INSECURE DEV: sending the command UNSIGNED; only a worker "
                  "started with --insecure-dev and no [[operator]] applies it ***",
                  file=sys.stderr)
            return codec.encode(command)
        operators = load_operators(args.config, campaign_ids)
        if not operators:
            print(f"antirelou: {NO_OPERATORS} ({args.config} declares none; a development "
                  "deployment started with --insecure-dev takes unsigned commands with "
                  "--insecure-dev)", file=sys.stderr)
        else:
            print("antirelou: operator commands must be signed: set ANTIRELOU_OPERATOR_KEY to "
                  f"your operator private key (operators in {args.config}: "
                  f"{', '.join(sorted(operators))}) and --operator / ANTIRELOU_OPERATOR to "
                  "your name", file=sys.stderr)
        return None
    try:
        return codec.encode(sign_command(command, key, args.app_id))
    except OperatorKeyError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return None


def new_operator(args: argparse.Namespace) -> int:
    """``operator new NAME``: a key pair; the private key for the operator, the table for
    the campaign file."""
    import json

    from infra.operators import RIGHTS, new_key_pair

    may = [m.strip() for m in args.may.split(",") if m.strip()]
    if not may or not set(may) <= set(RIGHTS):
        print(f"antirelou: --may takes some of {', '.join(sorted(RIGHTS))}", file=sys.stderr)
        return 2
    if not args.name.strip() or not args.name.isprintable() or '"' in args.name:
        print("antirelou: the operator name must be printable, without quotes", file=sys.stderr)
        return 2
    private, public = new_key_pair()
    campaigns = ([c.strip() for c in args.campaigns.split(",") if c.strip()]
                 if args.campaigns else None)
    print(f"# Private key of operator {args.name}: give it to {args.name} only, who sets\n"
          f"#   export ANTIRELOU_OPERATOR_KEY={private}\n"
          f"#   export ANTIRELOU_OPERATOR={args.name}\n"
          "# Add this table to the campaign file, then restart the workers:\n"
          "[[operator]]\n"
          f'name = "{args.name}"\n'
          f'public_key = "{public}"\n'
          f"may = {json.dumps(may)}"
          + ("" if campaigns is None else
             f"\ncampaigns = {json.dumps(campaigns)}"))
    return 0


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: an ISO date or time (UTC unless it says), or ``30m`` / ``2h`` / ``7d`` back
    from now; epoch ms. ValueError with the reason."""
    import datetime as dt
    import re

    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        unit = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2)]
        return now_ms - int(m.group(1)) * unit
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a date (2026-12-01), a time "
                         "(2026-12-01T20:00) or a duration back from now (30m, 2h, 7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


_TIME_FIELDS = ("occurred_at", "send_at", "deferred_at")


def human_line(event: Any) -> str:
    """One readable line: ISO time, campaign, type, then the fields (EUR, ISO times)."""
    from schemas import codec

    data = codec.to_dict(event)
    kind = data.pop("type")
    data.pop("v", None)
    at = data.pop("occurred_at", None)
    campaign = data.pop("campaign_id", "-")
    parts = []
    for key, value in data.items():
        if value is None or value == "":
            continue
        if key.endswith("_micros") and isinstance(value, int):
            parts.append(f"{key[:-7]} EUR {eur(value)}")
        elif key in _TIME_FIELDS and isinstance(value, int):
            parts.append(f"{key} {iso_ms(value)}")
        elif key == "sender" and isinstance(value, str):
            parts.append(f"sender {value[:14]}")
        elif isinstance(value, bool):
            parts.append(f"{key} {'true' if value else 'false'}")
        else:
            parts.append(f"{key} {value}")
    return f"{iso_ms(at)}  {campaign:<8}  {kind:<19}  " + ", ".join(parts)


def print_journal(args: argparse.Namespace) -> int:
    import time

    import orjson

    from infra.journal import iter_journal
    from schemas import codec
    from schemas.events import EVENT_TYPES
    from streams.app import topic_names

    types = None
    if args.types:
        types = {t.strip() for t in args.types.split(",") if t.strip()}
        known = {t.TYPE for t in EVENT_TYPES}
        if not types or not types <= known:
            print(f"antirelou: --type: unknown event type(s) {', '.join(sorted(types - known))}"
                  f"; known: {', '.join(sorted(known))}", file=sys.stderr)
            return EXIT_BAD_INPUT
    since = None
    if args.since:
        try:
            since = parse_since(args.since, int(time.time() * 1000))
        except ValueError as exc:
            print(f"antirelou: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if args.campaign:
        known_ids = {c.id for c in load_campaigns(args.config)}
        if args.campaign not in known_ids:
            print(f"antirelou: unknown campaign {args.campaign!r}; known: "
                  f"{', '.join(sorted(known_ids))}", file=sys.stderr)
            return EXIT_BAD_INPUT

    async def dump() -> None:
        topic = topic_names(args.app_id)["journal"]
        async for _, _, event in iter_journal(args.kafka, topic, follow=args.follow):
            if types is not None and event.TYPE not in types:
                continue
            if args.campaign and getattr(event, "campaign_id", None) != args.campaign:
                continue
            if since is not None and getattr(event, "occurred_at", 0) < since:
                continue
            line = human_line(event) if args.human else orjson.dumps(codec.to_dict(event)).decode()
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    try:
        talk(args, dump())
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `antirelou journal | head`
        pass
    return EXIT_OK


def check_config(args: argparse.Namespace) -> int:
    """``check``: the campaign file as ``up`` reads it, with what each reply costs; offline."""
    from actors.campaign import reply_cost
    from infra.operators import load_operators

    campaigns = load_campaigns(args.config)
    operators = load_operators(args.config, [c.id for c in campaigns])
    print(f"{args.config}: {len(campaigns)} campaign(s), {len(operators)} operator(s): OK")
    for c in campaigns:
        cost = reply_cost(c)
        replies = c.budget_micros // cost.cost_micros if cost.cost_micros else 0
        print(f"  {c.id} (+{c.number}, {c.country}, {c.language}): {iso_ms(c.starts_at)[:10]} to "
              f"{iso_ms(c.ends_at - 1)[:10]}, budget EUR {eur(c.budget_micros)}; reply "
              f"{cost.segments} {cost.encoding} segment(s) x EUR "
              f"{eur(c.price_per_segment_micros)} = EUR {cost.cost_micros / 1e6:.4f} "
              f"({replies:,} replies); sender shown: {c.originator}")
        warning = ucs2_warning(c.reply_text)
        if warning:
            print(f"  WARNING {c.id}: {warning}")
    for name, op in sorted(operators.items()):
        where = ", ".join(sorted(op.campaigns)) if op.campaigns is not None else "every campaign"
        print(f"  operator {name}: may {', '.join(sorted(op.may))} on {where}")
    return EXIT_OK


def audit_journal(args: argparse.Namespace) -> int:
    """``export`` (journal -> JSON lines) and ``audit`` (journal -> replay -> report)."""
    import bisect
    from array import array

    import orjson

    from schemas import codec
    from schemas.events import BudgetCredited, PolicyChanged, TextReceived
    from streams import audit as au

    every = 100_000
    campaigns = load_campaigns(args.config) if args.command == "audit" else []
    other = load_campaigns(args.what_if) if args.command == "audit" and args.what_if else None
    from_file = args.command == "audit" and args.file is not None

    class BadLine(ValueError):
        pass

    def progress(n: int) -> None:
        print(f"antirelou: {args.command}: {n} events read", file=sys.stderr, flush=True)

    run = au.Audit(campaigns)
    inputs: list = []  # the what-if's inputs: texts and operator actions
    wanted = (TextReceived, PolicyChanged, BudgetCredited)
    # Where event #pos came from: its line (pos + 1 + blank lines before it), or Kafka's
    # partition and offset.
    blank_before: list[int] = []  # for each skipped blank line, the next event's position
    parts, offsets = array("i"), array("q")

    def keep_inputs(events):  # pass events through, keeping the what-if's inputs
        for e in events:
            if type(e) in wanted:
                inputs.append(e)
            yield e

    def feed(events) -> None:
        run.feed(keep_inputs(events) if other is not None else events)

    def file_events():  # decoded events, one per line; blank lines are skipped
        loads, from_dict = orjson.loads, codec.from_dict
        with open(args.file, "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    event = from_dict(loads(line))
                except orjson.JSONDecodeError as exc:
                    if not line.strip():
                        blank_before.append(n - 1 - len(blank_before))
                        continue
                    raise BadLine(f"{args.file}:{n}: not JSON: {exc}") from None
                except codec.CodecError as exc:
                    raise BadLine(f"{args.file}:{n}: {exc}") from None
                if n % every == 0:
                    progress(n)
                yield event

    async def from_kafka() -> None:
        from infra.journal import iter_journal
        from streams.app import topic_names  # Faust: imported only when reading Kafka

        topic = topic_names(args.app_id)["journal"]
        chunk: list = []
        n = 0
        out = open(args.out, "wb") if args.command == "export" else None
        try:
            async for part, offset, event in iter_journal(args.kafka, topic):
                n += 1
                if n % every == 0:
                    progress(n)
                if out is not None:
                    out.write(orjson.dumps(codec.to_dict(event)) + b"\n")
                    continue
                parts.append(part)
                offsets.append(offset)
                chunk.append(event)
                if len(chunk) >= 10_000:
                    feed(chunk)
                    chunk = []
            if out is None:
                feed(chunk)
            else:
                print(f"antirelou: export: {n} events written to {args.out}", file=sys.stderr)
        finally:
            if out is not None:
                out.close()

    def where(pos: int) -> dict:
        if from_file:
            return {"line": pos + 1 + bisect.bisect_right(blank_before, pos)} if pos >= 0 else {}
        return {"partition": parts[pos], "offset": offsets[pos]} if 0 <= pos < len(parts) else {}

    read_errors: tuple[type[Exception], ...] = (OSError, codec.CodecError)
    try:
        if from_file:
            feed(file_events())  # one pass: the audit pulls lines as it goes
        else:
            talk(args, from_kafka())
        if args.command == "export":
            return 0
        result = run.result()
    except BadLine as exc:
        print(f"antirelou: bad journal line: {exc}", file=sys.stderr)
        return 2
    except au.MalformedEvent as exc:
        print(f"antirelou: bad journal event {where(exc.position) or ''}: {exc}", file=sys.stderr)
        return 2
    except read_errors as exc:
        print(f"antirelou: cannot read the journal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    comparison = au.what_if(inputs, campaigns, other) if other is not None else None
    lost = None
    if not result.ok:  # a journal with a lost tail fails: say what it is missing
        from streams import lost_tail

        lost = lost_tail.account_journal(
            file=args.file, kafka=args.kafka,
            topic=None if from_file else f"{args.app_id}.journal")
    if args.json:
        data = au.to_json(result)
        for m, m_json in zip(result.mismatches, data["mismatches"], strict=True):
            m_json.update(where(m.position))
        if comparison is not None:
            data["what_if"] = au.to_json(comparison)
        if lost is not None:
            data["lost_tail"] = lost.to_json()
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(au.render_text(result))
        if comparison is not None:
            sys.stdout.write("\n" + au.render_text(comparison))
        if lost is not None:
            sys.stdout.write("\n" + lost_tail.render_text(lost))
    from streams.audit_html import field_diff, render_html

    first_line = None
    if not result.ok:
        m = result.mismatches[0]
        at = ", ".join(f"{k} {v}" for k, v in where(m.position).items()) or f"#{m.position}"
        first_line = (f"{m.kind} of message {m.message_id} ({at}): "
                      f"{field_diff(m.expected, m.recorded)}")
    if args.html:
        source = args.file or f"{args.kafka} topic {args.app_id}.journal"
        try:
            Path(args.html).write_text(render_html(au.to_json(result), source, first_line),
                                       encoding="utf-8")
        except OSError as exc:
            print(f"antirelou: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"antirelou: audit: HTML report written to {args.html}", file=sys.stderr)
    if result.ok:
        return 0
    print(f"antirelou: audit: {result.counters.mismatches} mismatch(es); the first: "
          f"{first_line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
