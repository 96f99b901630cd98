"""Looking at it: ``antirelou check`` (the campaign file, offline), ``antirelou journal``
(print the journal) and ``antirelou export`` (the journal to a JSON-lines file).
``antirelou audit`` is ``streams.cli.audit``; ``antirelou simulate`` has its own options
(streams/simulate/command.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from infra.config import load_campaigns
from streams.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    PROGRESS_EVERY,
    Help,
    add_app_id,
    add_common,
    add_config,
    add_kafka,
    eur,
    event_line,
    iso_ms,
    journal_topic,
    progress,
    talk,
    ucs2_warning,
    unknown_campaign,
)

# --- the command line -----------------------------------------------------------------


def add_check_parser(sub: Any) -> None:
    p = sub.add_parser("check", formatter_class=Help,
                       help="validate a campaign file offline; print each reply's cost",
                       description="read the campaign file as `up` would, without any broker; "
                       "exit 0 when valid, 2 with the reason when not")
    add_config(p)


def add_journal_parser(sub: Any) -> None:
    p = sub.add_parser("journal", formatter_class=Help,
                       help="print the journal (JSON lines, or --human)",
                       description="print the journal from its beginning; filters combine")
    add_common(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--human", "-H", action="store_true",
                   help="one readable line per event: ISO times, EUR")
    p.add_argument("--campaign", help="only this campaign's events")
    p.add_argument("--type", dest="types", metavar="TYPE[,TYPE]",
                   help="only these event types, e.g. ReplyApproved,ReplyDenied")
    p.add_argument("--since", help="only events at or after this time: 2026-12-01, "
                   "2026-12-01T20:00, or back from now: 30m, 2h, 7d")


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser("export", formatter_class=Help,
                       help="write the journal to a JSON-lines file",
                       description="the journal, each text with its body while the campaign "
                       "file's body_retention_days keeps it, else what the decisions need of it")
    add_kafka(p)
    add_app_id(p)
    add_config(p)
    p.add_argument("--out", required=True, help="the file to write (one event per line)")


def add_simulate_parser(sub: Any) -> None:
    """Only for the list of commands: main runs ``simulate`` before parsing."""
    sub.add_parser("simulate", formatter_class=Help, add_help=False,
                   help="replay the 2017 flood story: antirelou simulate --help")


def check_config(args: argparse.Namespace) -> int:
    """``check``: the campaign file as ``up`` reads it, with what each reply costs; offline."""
    import datetime as dt
    import time

    from actors.campaign import reply_cost
    from infra.operators import load_operators
    from infra.providers import classic_warning, load_providers
    from streams.cli.checks import campaign_problems

    campaigns = load_campaigns(args.config)
    operators = load_operators(args.config, [c.id for c in campaigns])
    # an unknown provider, a Bird campaign's channel
    providers = load_providers(args.config, campaigns)
    problems = campaign_problems(campaigns, int(time.time() * 1000))
    errors = [p for p in problems if p.error]
    for p in errors:
        print(f"antirelou: {args.config}: campaign {p.campaign_id!r}: {p.text}", file=sys.stderr)
    if errors:
        return EXIT_BAD_INPUT
    warned = f" ({len(problems)} warning(s), below)" if problems else ""
    print(f"{args.config}: {len(campaigns)} campaign(s), {len(operators)} operator(s): OK{warned}")
    for c in campaigns:
        cost = reply_cost(c)
        replies = c.budget_micros // cost.cost_micros if cost.cost_micros else 0
        print(f"  {c.id} (+{c.number}, {c.country}, {c.language}): {iso_ms(c.starts_at)[:10]} to "
              f"{iso_ms(c.ends_at - 1)[:10]}, budget EUR {eur(c.budget_micros)}; reply "
              f"{cost.segments} {cost.encoding} segment(s) x EUR "
              f"{eur(c.price_per_segment_micros)} = EUR {cost.cost_micros / 1e6:.4f} "
              f"({replies:,} replies); " + (
                  f"on Bird, channel {providers.channel_of(c.id)} (sends as its number)"
                  if providers.by_campaign.get(c.id) == "bird"
                  else f"sender shown: {c.originator}"))
        warning = ucs2_warning(c.reply_text)
        if warning:
            print(f"  WARNING {c.id}: {warning}")
        for p in problems:
            if p.campaign_id == c.id:
                print(f"  WARNING {c.id}: {p.text}")
    classic = classic_warning(providers, dt.datetime.now(dt.UTC).date())
    if classic:
        print(f"  WARNING: {classic}")
    for name, op in sorted(operators.items()):
        where = ", ".join(sorted(op.campaigns)) if op.campaigns is not None else "every campaign"
        print(f"  operator {name}: may {', '.join(sorted(op.may))} on {where}")
    return EXIT_OK


# --- journal -----------------------------------------------------------------------------


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


def _human_field(key: str, value: Any) -> str:
    """``key value`` in a person's units: EUR for micro-euros, ISO for times (``*_at``),
    days or minutes for durations (``*_ms``, e.g. a policy change's ``cooldown_ms``)."""
    if key.endswith("_micros") and isinstance(value, int):
        return f"{key[:-7]} EUR {eur(value)}"
    if key.endswith("_at") and isinstance(value, int) and not isinstance(value, bool):
        return f"{key} {iso_ms(value)}"
    if key.endswith("_ms") and (value is None or isinstance(value, int)):
        if value is None:
            return f"{key[:-3]} never"
        days, rest = divmod(value, 86_400_000)
        return f"{key[:-3]} {days} d" if days and not rest else f"{key[:-3]} {value / 60_000:g} min"
    if key == "sender" and isinstance(value, str):
        return f"sender {value[:14]}"
    if isinstance(value, bool):
        return f"{key} {'true' if value else 'false'}"
    if isinstance(value, dict):
        return f"{key} {{" + ", ".join(_human_field(k, v) for k, v in value.items()) + "}"
    return f"{key} {value}"


def human_line(event: Any) -> str:
    """One readable line: ISO time, campaign, type, then the fields (EUR, ISO times)."""
    from schemas import codec

    data = codec.to_dict(event)
    kind = data.pop("type")
    data.pop("v", None)
    at = data.pop("occurred_at", None)
    campaign = data.pop("campaign_id", "-")
    parts = [_human_field(key, value) for key, value in data.items()
             if value is not None and value != ""]
    return f"{iso_ms(at)}  {campaign:<8}  {kind:<19}  " + ", ".join(parts)


def _journal_filter(args: argparse.Namespace) -> Callable[[Any], bool] | None:
    """The events ``journal`` prints (--type, --since, --campaign); None (said why) on bad
    input."""
    import time

    from schemas.events import EVENT_TYPES

    types = None
    if args.types:
        types = {t.strip() for t in args.types.split(",") if t.strip()}
        known = {t.TYPE for t in EVENT_TYPES}
        if not types or not types <= known:
            print(f"antirelou: --type: unknown event type(s) {', '.join(sorted(types - known))}"
                  f"; known: {', '.join(sorted(known))}", file=sys.stderr)
            return None
    since = None
    if args.since:
        try:
            since = parse_since(args.since, int(time.time() * 1000))
        except ValueError as exc:
            print(f"antirelou: {exc}", file=sys.stderr)
            return None
    if args.campaign:
        known_ids = {c.id for c in load_campaigns(args.config)}
        if args.campaign not in known_ids:
            print(unknown_campaign(args.campaign, known_ids), file=sys.stderr)
            return None

    def wanted(event: Any) -> bool:
        return ((types is None or event.TYPE in types)
                and (not args.campaign or getattr(event, "campaign_id", None) == args.campaign)
                and (since is None or getattr(event, "occurred_at", 0) >= since))

    return wanted


class _Bodies:
    """The texts' bodies the journal's readers show (``streams.rules.retention.shown``):
    those the bodies topic still keeps, for the retention of the campaign file."""

    def __init__(self, args: argparse.Namespace) -> None:
        from streams.app import topic_names

        self.config = args.config
        self.kafka, self.topic = args.kafka, topic_names(args.app_id)["bodies"]
        self.kept: dict[str, str] = {}
        self.retention_ms = 0
        self._follower: Any = None

    def _retention(self) -> int:
        """The campaign file's (its default when the file is not there: the broker deletes
        the bodies past the deployment's retention anyway). Read once the broker answered."""
        from pathlib import Path

        from infra.config import DEFAULT_BODY_RETENTION_DAYS, load_body_retention_days
        from streams.rules.retention import retention_ms

        if Path(self.config).is_file():
            return retention_ms(load_body_retention_days(self.config))
        print(f"antirelou: {self.config} not found: texts' bodies shown for "
              f"{DEFAULT_BODY_RETENTION_DAYS} days at most", file=sys.stderr)
        return retention_ms(DEFAULT_BODY_RETENTION_DAYS)

    async def read(self, follow: bool = False) -> None:
        import asyncio

        from infra.journal import follow_bodies, read_bodies

        if not follow:
            self.kept = await read_bodies(self.kafka, self.topic)
            self.retention_ms = self._retention()
            return
        self.retention_ms = self._retention()
        caught_up = asyncio.Event()
        self._follower = asyncio.create_task(
            follow_bodies(self.kafka, self.topic, self.kept, caught_up))
        await asyncio.wait([self._follower, asyncio.ensure_future(caught_up.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if self._follower.done():
            self._follower.result()  # its error, said like the journal's

    def body_of(self, value: bytes) -> tuple[str, str] | None:
        """(message id, body) of a journal record that is a text whose body is still kept
        and shown (``shown``); None for any other record."""
        from schemas import codec
        from schemas.events import TextReceived
        from streams.rules.retention import NOT_KEPT

        try:
            event = codec.decode(value)
        except codec.CodecError:
            return None
        if not isinstance(event, TextReceived):
            return None
        event = self.shown(event)
        if event.body in (None, NOT_KEPT) or event.test_text is not None:
            return None
        return event.message_id, event.body

    def shown(self, event: Any) -> Any:
        import time

        from streams.rules.retention import shown

        return shown(event, self.kept, int(time.time() * 1000), self.retention_ms)


def print_journal(args: argparse.Namespace) -> int:
    from infra.journal import iter_journal
    from streams.app import topic_names

    wanted = _journal_filter(args)
    if wanted is None:
        return EXIT_BAD_INPUT
    bodies = _Bodies(args)

    async def dump() -> None:
        topic = topic_names(args.app_id)["journal"]
        await bodies.read(follow=args.follow)
        async for _, _, event in iter_journal(args.kafka, topic, follow=args.follow):
            if not wanted(event):
                continue
            event = bodies.shown(event)
            line = human_line(event) + "\n" if args.human else event_line(event).decode()
            sys.stdout.write(line)
            sys.stdout.flush()

    try:
        talk(args, dump())
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `antirelou journal | head`
        pass
    return EXIT_OK


# --- export and audit --------------------------------------------------------------------


def export_journal(args: argparse.Namespace) -> int:
    """``export``: the journal topic to a JSON-lines file, partition after partition, each
    record exactly as stored after a line ``{"partition":N}``; beside it ``FILE.checkpoints``,
    the notary's signed checkpoints with their leaf hashes (what ``antirelou verify`` checks
    the file against), and ``FILE.bodies``, the texts' bodies the retention still keeps (one
    ``{"message_id", "body"}`` a line: the records themselves are never rewritten)."""
    import orjson

    from schemas import codec

    bodies = _Bodies(args)

    async def export() -> None:
        from infra.journal import iter_by_partition, iter_records
        from infra.verify import marker
        from streams.settings import topic_names

        await bodies.read()
        # The checkpoints first: read after the journal, one signed meanwhile would cover
        # records the export does not hold (and verify would call them missing).
        notary = [value async for _, _, _, value in
                  iter_records(args.kafka, topic_names(args.app_id)["notary"])]
        n, part, kept = 0, None, []
        with open(args.out, "wb") as out:
            async for p, _, _, value in iter_by_partition(args.kafka, journal_topic(args)):
                if p != part:
                    out.write(marker(p))
                    part = p
                n += 1
                if n % PROGRESS_EVERY == 0:
                    progress(args, n)
                out.write(value + b"\n")
                body = bodies.body_of(value)
                if body is not None:
                    kept.append(body)
        with open(f"{args.out}.checkpoints", "wb") as out:
            out.writelines(value.rstrip(b"\n") + b"\n" for value in notary)
        with open(f"{args.out}.bodies", "wb") as out:
            out.writelines(orjson.dumps({"message_id": mid, "body": body}) + b"\n"
                           for mid, body in kept)
        checkpoints = len(notary)
        print(f"antirelou: export: {n} events written to {args.out}, {checkpoints} signed "
              f"checkpoints to {args.out}.checkpoints, {len(kept)} bodies still kept to "
              f"{args.out}.bodies", file=sys.stderr)

    try:
        talk(args, export())
    except (OSError, codec.CodecError) as exc:
        print(f"antirelou: cannot read the journal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


