"""The ``antirelou`` command.

    antirelou up --config campaigns.toml [--insecure-dev]
        everything on one machine: the embedded Kafka-protocol broker (unless
        --kafka/KAFKA_BOOTSTRAP_SERVERS names a real cluster), a local Ray session (unless
        --ray-address/RAY_ADDRESS), and the Faust worker with its web server. Ctrl-C stops
        all it started.
    antirelou worker --kafka HOST:PORT --config campaigns.toml
        one Faust worker against an existing broker (scale out by starting more).
    antirelou worker --role web --kafka HOST:PORT --config campaigns.toml
        a web-only process of the same deployment: the webhooks and /health, no stage, no
        Ray, no partitions (a webhook front that scales apart from the workers).
    antirelou check [--config C.toml]   validate a campaign file offline, with each reply's cost
    antirelou journal [--human] [--campaign ID] [--type T,T] [--since 30m] [--follow]
        print the journal (JSON lines, or one readable line per event)
    antirelou export --out FILE         the journal to a JSON-lines file (and its checkpoints)
    antirelou verify FILE --key KEY     check an export against the signed checkpoints
    antirelou public --out DIR          the public transparency page as a static site
    antirelou why NUMBER [--campaign C] one sender's story, from the journal
    antirelou audit [--file FILE] [--json] [--html FILE] [--what-if O.toml]
        replay the journal through the pure core; exit 1 on any mismatch (streams/audit/)
    antirelou policy show|set ..., antirelou budget credit ...
        operator commands; set and credit are signed with ANTIRELOU_OPERATOR_KEY
    antirelou operator new NAME         an operator key pair and its [[operator]] table
    antirelou simulate [--scenario NAME] the flood simulator (antirelou simulate --help)
    antirelou fake-messagebird          a local MessageBird-compatible REST server
    antirelou fake-bird                 a local Bird Channels API server (and its events)

Read commands default to what `bash infra/up.sh` uses: infra/campaigns.example.toml and the
broker on 127.0.0.1:9092. Exit status: 0 done, 1 refused, 2 bad input, 3 no worker answered,
4 the broker cannot be reached.

Settings come from flags, then environment variables (see README, "Configuration").
"""

from __future__ import annotations

import argparse
import logging
import sys

from infra.broker import BrokerError
from infra.cliparse import Parser
from infra.config import ConfigError
from infra.kafka_auth import KafkaAuthError
from streams.cli import audit, inspect, operate, run, transparency
from streams.cli.common import EXIT_BAD_INPUT, EXIT_UNREACHABLE, Help, Unreachable, ucs2_warning
from streams.cli.deployment import min_insync_for, topic_configs, topic_layout
from streams.cli.operate import POLICY_KEY_HELP

__all__ = ["POLICY_KEY_HELP", "build_parser", "main", "min_insync_for", "topic_configs",
           "topic_layout", "ucs2_warning"]

# Each command and what runs it (the simulator, with options of its own, is run in main).
COMMANDS = {
    "up": lambda args: run.serve(args, embedded=True),
    "worker": lambda args: run.serve(args, embedded=False),
    "fake-messagebird": run.fake_messagebird,
    "fake-bird": run.fake_bird,
    "policy": operate.operate,
    "budget": operate.operate,
    "operator": operate.new_operator,
    "check": inspect.check_config,
    "journal": inspect.print_journal,
    "export": inspect.export_journal,
    "audit": audit.audit_journal,
    "verify": transparency.verify,
    "public": transparency.public,
    "why": transparency.why,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="antirelou", description=__doc__, formatter_class=Help)
    parser.add_argument("--version", action="version", version=f"antirelou {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `antirelou --help` lists them.
    run.add_up_parsers(sub)
    inspect.add_check_parser(sub)
    inspect.add_journal_parser(sub)
    operate.add_policy_parser(sub)
    operate.add_budget_parser(sub)
    operate.add_operator_parser(sub)
    inspect.add_export_parser(sub)
    audit.add_audit_parser(sub)
    transparency.add_parsers(sub)
    inspect.add_simulate_parser(sub)
    run.add_fake_parser(sub)
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
        return COMMANDS[args.command](args)
    except (ConfigError, KafkaAuthError) as exc:
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
    except BrokenPipeError:  # `antirelou policy show | head`: the reader has all it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
