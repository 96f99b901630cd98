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
        replay the journal through the pure core; exit 1 on any mismatch (streams/audit.py)
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
import secrets
import sys
from pathlib import Path

from infra.broker import BrokerError
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


def _add_signing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", default=_env("ANTIRELOU_OPERATOR") or getpass.getuser(),
                   help="your operator name, as in the campaign file [ANTIRELOU_OPERATOR]")
    p.add_argument("--insecure-dev", action="store_true",
                   default=_env("ANTIRELOU_INSECURE_DEV") == "1",
                   help="send the command unsigned (a development worker with no operators)")


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
        p.add_argument("--report-url", default=_env("ANTIRELOU_REPORT_URL"),
                       help="base URL for delivery reports; default: --public-url, else the "
                       "local web address [ANTIRELOU_REPORT_URL]")
        p.add_argument("--send-attempts", type=int,
                       default=int(_env("ANTIRELOU_SEND_ATTEMPTS", "6")),
                       help="calls per reply on 5xx/429/unreachable before it fails and is "
                       "refunded [ANTIRELOU_SEND_ATTEMPTS]")
        p.add_argument("--breaker-cooldown", type=float,
                       default=float(_env("ANTIRELOU_BREAKER_COOLDOWN_S", "5")),
                       help="seconds sends wait once MessageBird failed 5 times in a row "
                       "[ANTIRELOU_BREAKER_COOLDOWN_S]")
        p.add_argument("--ack-timeout", type=float,
                       default=float(_env("ANTIRELOU_ACK_TIMEOUT_S", "10")),
                       help="seconds the webhook waits for the broker before answering 503 "
                       "[ANTIRELOU_ACK_TIMEOUT_S]")
        p.add_argument("--insecure-dev", action="store_true",
                       default=_env("ANTIRELOU_INSECURE_DEV") == "1",
                       help="accept unsigned webhooks when no signing key is set (development)")
        p.add_argument("--loglevel", default=_env("ANTIRELOU_LOGLEVEL", "info"))
        p.add_argument("--snapshot-interval", type=float,
                       default=float(_env("ANTIRELOU_SNAPSHOT_INTERVAL_S", "30")),
                       help="seconds between campaign snapshots [ANTIRELOU_SNAPSHOT_INTERVAL_S]")
        p.add_argument("--tick-interval", type=float,
                       default=float(_env("ANTIRELOU_TICK_INTERVAL_S", "5")),
                       help="seconds between clock ticks to the campaigns, which release and "
                            "expire deferred replies [ANTIRELOU_TICK_INTERVAL_S]")
        p.add_argument("--screen-batch", type=int,
                       default=int(_env("ANTIRELOU_SCREEN_BATCH", "200")),
                       help="texts screened per batch (one journal write each; 1: one by "
                            "one) [ANTIRELOU_SCREEN_BATCH]")

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
    _add_signing(q)

    p = sub.add_parser("budget", help="credit a campaign's budget (live)")
    bsub = p.add_subparsers(dest="budget_command", required=True)
    q = bsub.add_parser("credit", help="add AMOUNT EUR to CAMPAIGN's budget")
    _add_common(q)
    q.add_argument("campaign")
    q.add_argument("amount", help="EUR, e.g. 250.00")
    q.add_argument("--source", required=True, help="where the money comes from, e.g. leetchi")
    _add_signing(q)

    p = sub.add_parser("operator", help="operator credentials")
    osub = p.add_subparsers(dest="operator_command", required=True)
    q = osub.add_parser("new", help="a new operator key pair and its [[operator]] table")
    q.add_argument("name")
    q.add_argument("--may", default="policy,budget",
                   help="rights, comma-separated: policy, budget (default both)")
    q.add_argument("--campaigns", default=None,
                   help="campaign ids, comma-separated (default: every campaign)")

    p = sub.add_parser("export", help="write the journal to a JSON-lines file")
    p.add_argument("--kafka", default=_env("KAFKA_BOOTSTRAP_SERVERS"),
                   help="bootstrap servers [KAFKA_BOOTSTRAP_SERVERS]")
    p.add_argument("--app-id", default=_env("ANTIRELOU_APP_ID", "antirelou"))
    p.add_argument("--out", required=True, help="the file to write (one event per line)")
    p = sub.add_parser("audit", help="replay the journal through the core, diff every decision")
    p.add_argument("--config", required=True, help="the campaign file (TOML) the journal ran with")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--kafka", default=_env("KAFKA_BOOTSTRAP_SERVERS"),
                     help="read the journal topic [KAFKA_BOOTSTRAP_SERVERS]")
    src.add_argument("--file", help="read a JSON-lines export instead")
    p.add_argument("--app-id", default=_env("ANTIRELOU_APP_ID", "antirelou"))
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--what-if", metavar="OTHER.toml", help="also replay the texts under this config")

    sub.add_parser("simulate", help="replay the 2017 flood story: antirelou simulate --help")

    p = sub.add_parser("fake-messagebird", help="local MessageBird-compatible REST server")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--access-key", default="test_key")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # its own options: see streams/simulate.py
        from streams import simulate

        return simulate.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command in ("up", "worker"):
            return run(args, embedded=args.command == "up")
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
        return 2
    except BrokerError as exc:  # e.g. the state folder's broker belongs to a running `up`
        print(f"antirelou: {exc}", file=sys.stderr)
        return 1
    return 0


def ucs2_warning(text: str) -> str | None:
    """Say which characters force UCS-2 and what GSM-7 would have cost, if any do."""
    from actors.segments import segment_info

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


def topic_configs(names: dict[str, str]) -> dict[str, dict[str, str]]:
    from actors.snapshot import MAX_SNAPSHOT_BYTES

    work = {"cleanup.policy": "delete", "retention.ms": str(WORK_TOPIC_RETENTION_MS)}
    return {
        # Snapshots: only the latest per campaign matters, and one may exceed Kafka's 1 MiB.
        names["snapshots"]: {"cleanup.policy": "compact",
                             "max.message.bytes": str(MAX_SNAPSHOT_BYTES)},
        names["journal"]: {"cleanup.policy": "delete", "retention.ms": "-1"},
        names["inbound"]: work, names["requests"]: work, names["outbound"]: work,
    }


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
    from infra.broker import ensure_topics, wait_for_kafka
    from infra.kafka_compat import install_fetch_floor
    from infra.messagebird_gateway import DryRunGateway, gateway_from_env
    from infra.operators import NO_OPERATORS, load_operators
    from infra.supervisor import bound_shutdown, persist_topology
    from schemas.events import MICROS_PER_EUR
    from streams.app import WEBHOOK_PATH, Settings, create_app, topic_names
    from streams.sending import RetryPolicy

    install_fetch_floor()  # noida-db answers empty fetches at once: do not spin on them
    campaigns = load_campaigns(args.config)
    operators = load_operators(args.config, [c.id for c in campaigns])
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
        broker = supervised_broker(state_dir, args.kafka_port)
        kafka = broker.broker.bootstrap_servers
        log.info("embedded Kafka-protocol broker (noida-db) on %s, data in %s",
                 kafka, state_dir / "kafka")
    try:
        wait_for_kafka(kafka)
        names = topic_names(args.app_id)
        created = ensure_topics(kafka, topic_layout(names, args.partitions),
                                config=topic_configs(names))
        if created:
            log.info("created topics %s", ", ".join(created))

        ray.init(address=args.ray_address or "local", namespace=args.app_id, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        shards = CampaignShards(campaigns, kafka=kafka, journal_topic=names["journal"],
                                snapshot_topic=names["snapshots"], n_shards=args.shards,
                                namespace=args.app_id)
        # Synchronous on purpose: an event loop run here, before Faust's, would be the one
        # Ray's awaitable refs bind to, and the agents' awaits could then hang.
        infos = shards.info_now()
        log.info("campaign shards recovered %d campaign(s) from snapshots and %d journal "
                 "events after them", sum(i["from_snapshots"] for i in infos),
                 sum(i["recovered"] for i in infos))
        gateway = gateway_from_env()
        settings = Settings(
            kafka=kafka, campaigns=campaigns, secret=secret, app_id=args.app_id,
            partitions=args.partitions, web_host=args.web_host, web_port=args.web_port,
            data_dir=state_dir / "faust", signing_key=signing_key,
            allow_unsigned=args.insecure_dev, public_url=args.public_url,
            snapshot_interval_s=args.snapshot_interval, operators=operators,
            tick_interval_s=args.tick_interval, screen_batch_size=args.screen_batch,
            report_base_url=(args.report_url or args.public_url
                             or f"http://{args.web_host}:{args.web_port}"),
            retry=RetryPolicy(max_attempts=args.send_attempts),
            breaker_cooldown_s=args.breaker_cooldown,
            ack_timeout_s=args.ack_timeout,
            broker_status=broker.status if broker is not None else None,
        )
        app = create_app(settings, shards, gateway)
        persist_topology(app, broker, kafka)  # a broker killed now loses none of it

        print(f"antirelou: webhook at http://{args.web_host}:{args.web_port}{WEBHOOK_PATH}",
              flush=True)
        for c in campaigns:
            cost = reply_cost(c)
            print(f"antirelou: campaign {c.id} ({c.country}, {c.language}): budget "
                  f"EUR {c.budget_micros / MICROS_PER_EUR:.2f}, reply {cost.segments} "
                  f"{cost.encoding} segment(s) = EUR {cost.cost_micros / MICROS_PER_EUR:.4f}",
                  flush=True)
            warning = ucs2_warning(c.reply_text)
            if warning:
                print(f"antirelou: WARNING campaign {c.id}: {warning}", flush=True)
        if isinstance(gateway, DryRunGateway):
            print("antirelou: *** DRY RUN: MESSAGEBIRD_ACCESS_KEY is not set; replies are "
                  "journaled but NO SMS IS SENT ***", flush=True)
        if signing_key is None:
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
    wire = sign_for(args, command, known)
    if wire is None:
        return 2
    answer = control.run(control.submit(args.kafka, names, command, wire=wire))
    if answer is None:
        print("antirelou: the command is stored but no worker answered within 15 s; it applies "
              "when a worker runs (check with `antirelou policy show`)", file=sys.stderr)
        return 3
    if answer.TYPE == "ControlRefused":
        print(f"antirelou: refused (operator {answer.operator!r}): {answer.reason}",
              file=sys.stderr)
        return 1
    if answer.TYPE == "ControlRejected":
        print(f"antirelou: refused: {answer.reason}", file=sys.stderr)
        return 1
    if answer.TYPE == "PolicyChanged":
        print(f"{answer.campaign_id}: policy v{answer.version} in force ({answer.operator})")
    else:
        print(f"{answer.campaign_id}: credited EUR {answer.amount_micros / 1e6:.2f} from "
              f"{answer.source}; balance EUR {answer.balance_after_micros / 1e6:.2f}")
    return 0


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


def audit_journal(args: argparse.Namespace) -> int:
    """``export`` (journal -> JSON lines) and ``audit`` (journal -> replay -> report)."""
    import bisect
    from array import array

    import orjson

    from schemas import codec
    from schemas.events import BudgetCredited, PolicyChanged, TextReceived
    from streams import audit as au

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    every = 100_000
    campaigns = load_campaigns(args.config) if args.command == "audit" else []
    other = load_campaigns(args.what_if) if args.command == "audit" and args.what_if else None
    from_file = args.command == "audit" and args.file is not None
    if not from_file and args.kafka is None:
        print(f"antirelou: {args.command} needs --kafka (or KAFKA_BOOTSTRAP_SERVERS)"
              + (" or --file" if args.command == "audit" else ""), file=sys.stderr)
        return 2

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
            from aiokafka.errors import KafkaError

            read_errors += (KafkaError,)
            asyncio.run(from_kafka())
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
    if result.ok:
        return 0
    first = {**result.mismatches[0].to_json(), **where(result.mismatches[0].position)}
    print(f"antirelou: audit: {result.counters.mismatches} mismatch(es); the first:\n"
          + orjson.dumps(first, option=orjson.OPT_INDENT_2).decode(), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
