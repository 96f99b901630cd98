"""The ``antirelou`` command.

    antirelou up --config campaigns.toml [--insecure-dev]
        everything on one machine: the embedded Kafka-protocol broker (unless
        --kafka/KAFKA_BOOTSTRAP_SERVERS names a real cluster), a local Ray session (unless
        --ray-address/RAY_ADDRESS), and the Faust worker with its web server. Ctrl-C stops
        all it started.
    antirelou worker --kafka HOST:PORT --config campaigns.toml
        one Faust worker against an existing broker (scale out by starting more).
    antirelou journal [--follow]        print the journal as JSON lines
    antirelou fake-messagebird          a local MessageBird-compatible REST server

Settings come from flags, then environment variables (see README, "Configuration").
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import sys
from pathlib import Path

from infra.config import ConfigError, load_campaigns

log = logging.getLogger("antirelou")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=_env("ANTIRELOU_CONFIG", "campaigns.toml"),
                   help="campaign file (TOML) [ANTIRELOU_CONFIG, default campaigns.toml]")
    p.add_argument("--state-dir", default=_env("ANTIRELOU_STATE_DIR", ".state"),
                   help="where broker data, tables and the secret live [ANTIRELOU_STATE_DIR]")
    p.add_argument("--kafka", default=_env("KAFKA_BOOTSTRAP_SERVERS"),
                   help="bootstrap servers of a Kafka cluster [KAFKA_BOOTSTRAP_SERVERS]")
    p.add_argument("--app-id", default=_env("ANTIRELOU_APP_ID", "antirelou"),
                   help="deployment name: topic prefix, consumer group, Ray namespace")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antirelou", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    for name in ("up", "worker"):
        p = sub.add_parser(name, help="start everything" if name == "up" else "one Faust worker")
        _add_common(p)
        p.add_argument("--kafka-port", type=int, default=int(_env("ANTIRELOU_KAFKA_PORT", "9092")),
                       help="port of the embedded broker (up only) [ANTIRELOU_KAFKA_PORT]")
        p.add_argument("--ray-address", default=_env("RAY_ADDRESS"),
                       help="Ray cluster to join; default: a local Ray session [RAY_ADDRESS]")
        p.add_argument("--web-host", default=_env("ANTIRELOU_WEB_HOST", "127.0.0.1"))
        p.add_argument("--web-port", type=int, default=int(_env("ANTIRELOU_WEB_PORT", "6066")))
        p.add_argument("--partitions", type=int, default=int(_env("ANTIRELOU_PARTITIONS", "4")),
                       help="partitions of the work topics (fixed once created)")
        p.add_argument("--shards", type=int, default=int(_env("ANTIRELOU_SHARDS", "1")),
                       help="Ray actors holding the campaigns")
        p.add_argument("--public-url", default=_env("ANTIRELOU_PUBLIC_URL"),
                       help="base URL MessageBird calls (signature check behind a proxy)")
        p.add_argument("--insecure-dev", action="store_true",
                       default=_env("ANTIRELOU_INSECURE_DEV") == "1",
                       help="accept unsigned webhooks when no signing key is set (development)")
        p.add_argument("--loglevel", default=_env("ANTIRELOU_LOGLEVEL", "info"))

    p = sub.add_parser("journal", help="print the journal as JSON lines")
    _add_common(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")

    p = sub.add_parser("policy", help="show or change campaign policies (live)")
    psub = p.add_subparsers(dest="policy_command", required=True)
    q = psub.add_parser("show", help="each campaign's policy and balance, from the journal")
    _add_common(q)
    q.add_argument("campaign", nargs="?", help="only this campaign")
    q.add_argument("--json", action="store_true")
    q = psub.add_parser("set", help="change policy keys of one campaign: key=value ...")
    _add_common(q)
    q.add_argument("campaign")
    q.add_argument("changes", nargs="+", metavar="key=value",
                   help="price_per_segment_eur=0.07 reserve_eur=50 cooldown_days=30|never")
    q.add_argument("--operator", default=_env("ANTIRELOU_OPERATOR") or getpass.getuser())

    p = sub.add_parser("budget", help="credit a campaign's budget (live)")
    bsub = p.add_subparsers(dest="budget_command", required=True)
    q = bsub.add_parser("credit", help="add AMOUNT EUR to CAMPAIGN's budget")
    _add_common(q)
    q.add_argument("campaign")
    q.add_argument("amount", help="EUR, e.g. 250.00")
    q.add_argument("--source", required=True, help="where the money comes from, e.g. leetchi")
    q.add_argument("--operator", default=_env("ANTIRELOU_OPERATOR") or getpass.getuser())

    p = sub.add_parser("fake-messagebird", help="local MessageBird-compatible REST server")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--access-key", default="test_key")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command in ("up", "worker"):
            return run(args, embedded=args.command == "up")
        if args.command == "journal":
            return print_journal(args)
        if args.command in ("policy", "budget"):
            return operate(args)
        if args.command == "fake-messagebird":
            from infra import messagebird_local

            return messagebird_local.main(["--port", str(args.port),
                                           "--access-key", args.access_key]) or 0
    except ConfigError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return 2
    return 0


def topic_layout(names: dict[str, str], partitions: int) -> dict[str, int]:
    # Policies are few and must be read in order by every worker: one partition.
    return {name: 1 if role == "policies" else partitions for role, name in names.items()}


def deployment_secret(state_dir: Path) -> bytes:
    """ANTIRELOU_SECRET, or a random secret kept in the state folder (created once)."""
    env = _env("ANTIRELOU_SECRET")
    if env:
        return env.encode()
    path = state_dir / "secret"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        log.warning("created a new deployment secret in %s (set ANTIRELOU_SECRET to share "
                    "one between machines)", path)
    return path.read_text().strip().encode()


def run(args: argparse.Namespace, embedded: bool) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import faust
    import ray

    from actors.campaign import reply_cost
    from actors.remote import CampaignShards
    from infra.broker import EmbeddedBroker, ensure_topics, wait_for_kafka
    from infra.messagebird_gateway import DryRunGateway, gateway_from_env
    from schemas.events import MICROS_PER_EUR
    from streams.app import WEBHOOK_PATH, Settings, create_app, topic_names

    campaigns = load_campaigns(args.config)
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    signing_key = _env("MESSAGEBIRD_SIGNING_KEY")
    if signing_key is None and not args.insecure_dev:
        print("antirelou: no webhook signing key. Set MESSAGEBIRD_SIGNING_KEY, or pass "
              "--insecure-dev to accept unsigned webhooks while developing.", file=sys.stderr)
        return 2
    secret = deployment_secret(state_dir)

    broker = None
    kafka = args.kafka
    if kafka is None:
        if not embedded:
            print("antirelou: worker needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
            return 2
        broker = EmbeddedBroker(state_dir / "kafka", port=args.kafka_port).start()
        kafka = broker.bootstrap_servers
        log.info("embedded Kafka-protocol broker (noida-db) on %s, data in %s",
                 kafka, state_dir / "kafka")
    try:
        wait_for_kafka(kafka)
        names = topic_names(args.app_id)
        created = ensure_topics(kafka, topic_layout(names, args.partitions))
        if created:
            log.info("created topics %s", ", ".join(created))

        ray.init(address=args.ray_address, namespace=args.app_id, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        shards = CampaignShards(campaigns, kafka=kafka, journal_topic=names["journal"],
                                n_shards=args.shards, namespace=args.app_id)
        recovered = sum(i["recovered"] for i in asyncio.run(shards.info()))
        log.info("campaign shards recovered %d events from the journal", recovered)
        gateway = gateway_from_env()
        settings = Settings(
            kafka=kafka, campaigns=campaigns, secret=secret, app_id=args.app_id,
            partitions=args.partitions, web_host=args.web_host, web_port=args.web_port,
            data_dir=state_dir / "faust", signing_key=signing_key,
            allow_unsigned=args.insecure_dev, public_url=args.public_url,
        )
        app = create_app(settings, shards, gateway)

        print(f"antirelou: webhook at http://{args.web_host}:{args.web_port}{WEBHOOK_PATH}",
              flush=True)
        for c in campaigns:
            cost = reply_cost(c)
            print(f"antirelou: campaign {c.id} ({c.country}, {c.language}): budget "
                  f"EUR {c.budget_micros / MICROS_PER_EUR:.2f}, reply {cost.segments} "
                  f"{cost.encoding} segment(s) = EUR {cost.cost_micros / MICROS_PER_EUR:.4f}",
                  flush=True)
        if isinstance(gateway, DryRunGateway):
            print("antirelou: *** DRY RUN: MESSAGEBIRD_ACCESS_KEY is not set; replies are "
                  "journaled but NO SMS IS SENT ***", flush=True)
        if signing_key is None:
            print("antirelou: *** INSECURE DEV MODE: webhooks are accepted unsigned ***",
                  flush=True)
        worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if broker is not None:
            broker.stop()


def operate(args: argparse.Namespace) -> int:
    """``policy show|set`` and ``budget credit``: through the log, like every decision."""
    import orjson

    from schemas.policy import PolicyError, parse_changes, parse_eur
    from streams import control
    from streams.app import topic_names

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if args.kafka is None:
        print("antirelou: needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    names = topic_names(args.app_id)
    campaigns = load_campaigns(args.config)
    known = {c.id for c in campaigns}
    if getattr(args, "campaign", None) and args.campaign not in known:
        print(f"antirelou: unknown campaign {args.campaign!r}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    if args.command == "policy" and args.policy_command == "show":
        status = control.run(control.current_status(args.kafka, names, campaigns))
        if args.campaign:
            status = {args.campaign: status[args.campaign]}
        if args.json:
            print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
            return 0
        for cid, st in status.items():
            p = st["policy"]
            print(f"{cid}: policy v{p['version']} price/segment EUR {p['price_per_segment_eur']}"
                  f" reserve EUR {p['reserve_eur']} cooldown {p['cooldown_days']} day(s); balance "
                  f"EUR {st['balance_micros'] / 1e6:.2f}, spent EUR {st['spent_micros'] / 1e6:.2f}, "
                  f"{st['approved']} replies")
        return 0
    try:
        if args.command == "policy":
            command = control.new_change(args.campaign, parse_changes(args.changes), args.operator)
        else:
            amount = parse_eur(args.amount, "amount", positive=True)
            command = control.new_credit(args.campaign, amount, args.source, args.operator)
    except PolicyError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return 2
    answer = control.run(control.submit(args.kafka, names, command))
    if answer is None:
        print("antirelou: the command is stored but no worker answered within 15 s; it applies "
              "when a worker runs (check with `antirelou policy show`)", file=sys.stderr)
        return 3
    if answer.TYPE == "ControlRejected":
        print(f"antirelou: refused: {answer.reason}", file=sys.stderr)
        return 1
    if answer.TYPE == "PolicyChanged":
        print(f"{answer.campaign_id}: policy v{answer.version} in force ({answer.operator})")
    else:
        print(f"{answer.campaign_id}: credited EUR {answer.amount_micros / 1e6:.2f} from "
              f"{answer.source}; balance EUR {answer.balance_after_micros / 1e6:.2f}")
    return 0


def print_journal(args: argparse.Namespace) -> int:
    import orjson

    from infra.journal import iter_journal
    from schemas import codec
    from streams.app import topic_names

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if args.kafka is None:
        print("antirelou: journal needs --kafka or KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2

    async def dump() -> None:
        topic = topic_names(args.app_id)["journal"]
        async for _, _, event in iter_journal(args.kafka, topic, follow=args.follow):
            sys.stdout.write(orjson.dumps(codec.to_dict(event)).decode() + "\n")
            sys.stdout.flush()

    try:
        asyncio.run(dump())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
