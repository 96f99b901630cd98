"""What every ``antirelou`` command shares: settings from the environment, the common
options, exit statuses and the one-line errors, JSON-lines event I/O, how amounts and times
are shown.

Errors::

    Unreachable      the broker did not answer (exit 4)
    BadLine          a JSON-lines journal file holds a line that is not an event (exit 2;
                     infra.journal, the one reader of a journal file)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from infra import cliparse

# Exit status of every command (README, "Operate it live").
EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_NO_ANSWER, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
# What `bash infra/up.sh` runs: the example campaigns and the embedded broker on 9092.
UP_CONFIG = "infra/campaigns.example.toml"


class Unreachable(Exception):
    """The broker did not answer."""


Help = cliparse.Help  # the help formatter of every command (infra/cliparse.py)


# --- settings from the environment ----------------------------------------------------


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _number_env(name: str, default: str, kind: Callable[[str], Any], what: str) -> Any:
    value = env(name, default)
    try:
        return kind(value)
    except ValueError:
        raise SystemExit(f"antirelou: {name}={value!r} is not {what}") from None


def int_env(name: str, default: str) -> int:
    return _number_env(name, default, int, "a whole number")


def float_env(name: str, default: str) -> float:
    return _number_env(name, default, float, "a number")


def default_config() -> str:
    return env("ANTIRELOU_CONFIG", UP_CONFIG)


def default_kafka() -> str:
    return env("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{env('ANTIRELOU_KAFKA_PORT', '9092')}"


# --- options several commands take ----------------------------------------------------


def add_config(p: argparse.ArgumentParser, what: str = "campaign file (TOML)") -> None:
    p.add_argument("--config", default=default_config(), help=f"{what} [ANTIRELOU_CONFIG]")


def add_app_id(p: argparse.ArgumentParser, what: str = "deployment name") -> None:
    p.add_argument("--app-id", default=env("ANTIRELOU_APP_ID", "antirelou"),
                   help=f"{what} [ANTIRELOU_APP_ID]")


def add_common(p: argparse.ArgumentParser, server: bool = False) -> None:
    add_config(p)
    p.add_argument("--state-dir", default=env("ANTIRELOU_STATE_DIR", ".state"),
                   help="where broker data, tables and the secret live [ANTIRELOU_STATE_DIR]")
    if server:
        p.add_argument("--kafka", default=env("KAFKA_BOOTSTRAP_SERVERS"),
                       type=cliparse.bootstrap_servers,
                       help="bootstrap servers of a Kafka cluster; up: none starts the "
                            "embedded broker [KAFKA_BOOTSTRAP_SERVERS]")
    else:
        add_kafka(p)
    add_app_id(p, "deployment name: topic prefix, consumer group, Ray namespace")


def add_kafka(p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    p.add_argument("--kafka", default=default_kafka(), type=cliparse.bootstrap_servers,
                   help="bootstrap servers; default: the broker `up` starts "
                        "[KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:ANTIRELOU_KAFKA_PORT]")


def add_signing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", default=env("ANTIRELOU_OPERATOR") or getpass.getuser(),
                   help="your operator name, as in the campaign file [ANTIRELOU_OPERATOR, "
                        "else the login name]")
    p.add_argument("--insecure-dev", action="store_true",
                   default=env("ANTIRELOU_INSECURE_DEV") == "1",
                   help="send the command unsigned (a development worker with no operators) "
                        "[ANTIRELOU_INSECURE_DEV=1]")


# --- the broker ------------------------------------------------------------------------


def _unreachable(args: argparse.Namespace, exc: BaseException) -> Unreachable:
    up = " (is `bash infra/up.sh` running?)" if args.kafka == default_kafka() else ""
    return Unreachable(f"cannot reach the broker at {args.kafka}{up}: {type(exc).__name__}; "
                       "set --kafka or KAFKA_BOOTSTRAP_SERVERS")


def talk(args: argparse.Namespace, coro: Any) -> Any:
    """Run a coroutine that talks to the broker; an unreachable broker is one line, exit 4."""
    from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    try:
        return asyncio.run(coro)
    except BrokenPipeError:  # `antirelou journal | head`: the reader, not the broker
        raise
    except (KafkaConnectionError, KafkaTimeoutError, OSError, TimeoutError) as exc:
        raise _unreachable(args, exc) from None
    except KafkaError as exc:
        if "connect" in str(exc).lower() or "bootstrap" in str(exc).lower():
            raise _unreachable(args, exc) from None
        raise


def unknown_campaign(campaign: str, known: set[str]) -> str:
    return f"antirelou: unknown campaign {campaign!r}; known: {', '.join(sorted(known))}"


# --- JSON lines: one event a line, as `journal` prints and `export` writes -------------


# Progress is said on stderr every this many events read (export, audit).
PROGRESS_EVERY = 100_000


def progress(args: argparse.Namespace, n: int) -> None:
    print(f"antirelou: {args.command}: {n} events read", file=sys.stderr, flush=True)


def journal_topic(args: argparse.Namespace) -> str:
    from streams.settings import topic_names

    return topic_names(args.app_id)["journal"]


def event_line(event: Any) -> bytes:
    """One journal event as a JSON line (its wire form, newline-terminated)."""
    from schemas import codec

    return codec.encode(event) + b"\n"


# --- how values are shown --------------------------------------------------------------


def iso_ms(ms: int | None) -> str:
    import datetime as dt

    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def eur(micros: int) -> str:
    from decimal import Decimal

    return f"{Decimal(micros) / 1_000_000:,.2f}"


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
