"""Looking at it: ``antirelou check`` (the campaign file, offline), ``antirelou journal``
(print the journal), ``antirelou export`` (the journal to a JSON-lines file) and
``antirelou audit`` (replay the journal through the pure core, diff every decision; exit 1
on any mismatch). ``antirelou simulate`` has its own options (streams/simulate/command.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from infra.config import load_campaigns
from streams.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    BadLine,
    Help,
    add_app_id,
    add_common,
    add_config,
    add_kafka,
    eur,
    event_line,
    iso_ms,
    plainly,
    read_event_lines,
    talk,
    ucs2_warning,
    unknown_campaign,
)

# Progress is said on stderr every this many events read.
PROGRESS_EVERY = 100_000


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


def add_audit_parser(sub: Any) -> None:
    p = sub.add_parser("audit", formatter_class=Help,
                       help="replay the journal through the core, diff every decision")
    add_config(p, "the campaign file (TOML) the journal ran with")
    src = p.add_mutually_exclusive_group()
    add_kafka(src)
    src.add_argument("--file", help="read a JSON-lines export instead of the broker")
    add_app_id(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report with charts")
    p.add_argument("--what-if", metavar="OTHER.toml", help="also replay the texts under this config")


# --- check -------------------------------------------------------------------------------


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


def _progress(args: argparse.Namespace, n: int) -> None:
    print(f"antirelou: {args.command}: {n} events read", file=sys.stderr, flush=True)


def _journal_topic(args: argparse.Namespace) -> str:
    from streams.app import topic_names  # Faust: imported only when reading Kafka

    return topic_names(args.app_id)["journal"]


def export_journal(args: argparse.Namespace) -> int:
    """``export``: the journal topic to a JSON-lines file, one event a line; a text with
    its body while the retention keeps it (``_Bodies``)."""
    from schemas import codec

    bodies = _Bodies(args)

    async def export() -> None:
        from infra.journal import iter_journal

        n = 0
        await bodies.read()
        with open(args.out, "wb") as out:
            async for _, _, event in iter_journal(args.kafka, _journal_topic(args)):
                n += 1
                if n % PROGRESS_EVERY == 0:
                    _progress(args, n)
                out.write(event_line(bodies.shown(event)))
        print(f"antirelou: export: {n} events written to {args.out}", file=sys.stderr)

    try:
        talk(args, export())
    except (OSError, codec.CodecError) as exc:
        print(f"antirelou: cannot read the journal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


class _Origins:
    """Where event #pos of the journal read came from: its line in the file (pos + 1 +
    the blank lines before it), or its Kafka partition and offset."""

    def __init__(self, from_file: bool) -> None:
        self.from_file = from_file
        self.blank_before: list[int] = []  # for each skipped blank line, the next event's position
        self.said = 0  # progress said up to this many events
        self.parts, self.offsets = array("i"), array("q")

    def blank(self, line: int) -> None:
        self.blank_before.append(line - 1 - len(self.blank_before))

    def where(self, pos: int) -> dict:
        import bisect

        if self.from_file:
            return {"line": pos + 1 + bisect.bisect_right(self.blank_before, pos)} if pos >= 0 else {}
        if 0 <= pos < len(self.parts):
            return {"partition": self.parts[pos], "offset": self.offsets[pos]}
        return {}


def _file_events(args: argparse.Namespace, origins: _Origins,
                 pass_over: bytes | tuple[bytes, ...] | None = None,
                 noted: tuple[bytes, Callable[[dict], Any]] | None = None) -> Iterator[Any]:
    with open(args.file, "rb") as f:
        for n, event in read_event_lines(f, args.file, origins.blank, pass_over, noted):
            if n % PROGRESS_EVERY == 0 and n > origins.said:
                _progress(args, n)
                origins.said = n  # a second reading of the file does not say it again
            yield event


# The events the screening half of the audit reads (``Audit(part="screening")``).
SCREENING_TYPES = frozenset((b"TextReceived", b"SenderScreened", b"SenderReopened",
                             b"PolicyChanged", b"ReplySent"))


def screening_events(f: Any) -> Iterator[Any]:
    """The journal's events for the screening half: the events of ``SCREENING_TYPES``, None
    for each other event (its position is kept), blank lines skipped, as
    ``read_event_lines`` reads them. A line is passed over without decoding only when its
    bytes show its type for sure: it begins with ``{"type":"`` and is ``plainly`` of that
    type; any other line is decoded. A bad line passed over is not noticed here: the other
    half reads every line but the texts, and this one the texts."""
    import orjson

    from schemas import codec

    loads, from_dict = orjson.loads, codec.fast_from_dict
    for line in f:
        if line.startswith(b'{"type":"'):
            name = line[9:line.find(b'"', 9)]
            if name not in SCREENING_TYPES and plainly(line):
                yield None
                continue
        try:
            event = from_dict(loads(line))
        except orjson.JSONDecodeError:
            if not line.strip():
                continue
            raise
        yield event


async def _feed_from_kafka(args: argparse.Namespace, origins: _Origins,
                           feed: Callable[[list], None]) -> None:
    from infra.journal import iter_journal

    chunk: list = []
    n = 0
    async for part, offset, event in iter_journal(args.kafka, _journal_topic(args)):
        n += 1
        if n % PROGRESS_EVERY == 0:
            _progress(args, n)
        origins.parts.append(part)
        origins.offsets.append(offset)
        chunk.append(event)
        if len(chunk) >= 10_000:
            feed(chunk)
            chunk = []
    feed(chunk)


def _replay(args: argparse.Namespace, run: Any, inputs: list | None,
            origins: _Origins) -> Any:
    """The journal (file or topic) through the audit; its result, or the exit status of a
    journal that cannot be read (said why). ``inputs`` (if not None) collects the what-if's
    inputs: texts and operator actions."""
    from schemas import codec
    from schemas.events import BudgetCredited, PolicyChanged, TextReceived
    from streams import audit as au

    wanted = (TextReceived, PolicyChanged, BudgetCredited)

    def keep_inputs(events):  # pass events through, keeping the what-if's inputs
        for e in events:
            if type(e) in wanted:
                inputs.append(e)
            yield e

    def feed(events, into: Any = run) -> None:
        into.feed(keep_inputs(events) if inputs is not None else events)

    try:
        if origins.from_file:
            result = _two_readers(args, run, feed, origins, texts_wanted=inputs is not None)
            if result is not None:
                return result
            if inputs is not None:  # read again from the start, in one process
                inputs.clear()
            origins.blank_before.clear()
            feed(_file_events(args, origins))  # one pass: the audit pulls lines as it goes
        else:
            talk(args, _feed_from_kafka(args, origins, feed))
        return audit_result(run)
    except BadLine as exc:
        print(f"antirelou: bad journal line: {exc}", file=sys.stderr)
    except au.MalformedEvent as exc:
        print(f"antirelou: bad journal event {origins.where(exc.position) or ''}: {exc}",
              file=sys.stderr)
    except (OSError, codec.CodecError) as exc:
        print(f"antirelou: cannot read the journal: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 2


# How a text's journal line begins (``codec.to_dict`` writes the type first): the campaigns
# half passes such a line over when it is ``plainly`` a text.
TEXT_LINE = b'{"type":"TextReceived",'
# And a reply sent's: the screening half counts them (``SCREENING_TYPES``).
SENT_LINE = b'{"type":"ReplySent",'
# And a verdict's: the campaigns half reads them as ``VerdictNote`` (``verdict_note``).
VERDICT_LINE = b'{"type":"SenderScreened",'

# A journal file from this size on is read by two processes (``_two_readers``).
TWO_READERS_FROM = 4 * 2**20


class _HalfFailed(Exception):
    """The screening half's process gave no result."""


def _two_readers(args: argparse.Namespace, run: Any, feed: Callable[..., None],
                 origins: _Origins, texts_wanted: bool = False) -> Any:
    """The audit of a journal file in two processes that each read it, on a machine of two
    cores or more: the screening replay (``Audit(part="screening")``, fed
    ``screening_events``: it decodes only the texts, verdicts, reopenings, policy changes
    and replies sent) in a forked child of the process doing everything else
    (``part="campaigns"``: it passes over the replies sent, ``SENT_LINE``, and the text
    lines, ``TEXT_LINE``, unless ``texts_wanted``, e.g. by the what-if, and reads the
    verdicts as notes), the screening part sent back pickled through a pipe. That second
    process is a forked child of this one too (unless ``texts_wanted``: the what-if's
    inputs are collected here), which sends back the result: neither frees its half. None (nothing
    said, nothing kept) when not worth it or when anything went wrong on either side: the
    caller then audits in one process, which reports a bad journal as it always did, so the
    outcome is the one-process one in every case (the audit's tests compare them).
    ``ANTIRELOU_AUDIT_PROCESSES=1``: one process."""
    import os

    if (not hasattr(os, "fork") or (os.cpu_count() or 1) < 2
            or os.environ.get("ANTIRELOU_AUDIT_PROCESSES") == "1"):
        return None
    try:
        if os.path.getsize(args.file) < TWO_READERS_FROM:
            return None
    except OSError:
        return None
    from streams import audit as au

    campaigns, keep = list(run.campaigns.values()), run.keep
    halves: list = []  # each child's half, kept: a child exits at once, without freeing it

    def screening_half() -> Any:
        half = au.Audit(campaigns, keep, part="screening")
        halves.append(half)
        with open(args.file, "rb") as f:
            half.feed(screening_events(f))
        return half.screening_part()

    # The campaigns half's reader passes over the replies sent and (but for the what-if)
    # the texts, and reads the verdicts as notes.
    pass_over = SENT_LINE if texts_wanted else (TEXT_LINE, SENT_LINE)

    def campaigns_half() -> Any:
        """The audit's result, the screening half forked meanwhile; None (nothing said) if
        anything went wrong on either side: the one-process audit says what is wrong."""
        child = _Forked(screening_half)

        def screening() -> Any:
            part = child.result()
            if part is None:
                raise _HalfFailed
            return part

        try:
            half = au.Audit(campaigns, keep, part="campaigns")
            halves.append(half)
            feed(_file_events(args, origins, pass_over, (VERDICT_LINE, au.verdict_note)), half)
            return half.result(screening=screening)
        except Exception:  # noqa: BLE001 - see the docstring
            return None
        finally:
            child.end()

    if texts_wanted:  # the what-if's inputs are collected as the events are read: here
        return campaigns_half()
    # Else this half too runs in a child, which leaves without freeing it either (a tenth
    # of a second on 200k events); what reading the file told ``origins`` comes back with
    # the result, and the progress said without it (not said again by the one-process audit).
    def result_and_origins() -> tuple[Any, list[int], int]:
        return campaigns_half(), origins.blank_before, origins.said

    forked = _Forked(result_and_origins)
    try:
        answer = forked.result()
    finally:
        forked.end()  # interrupted while waiting
    if answer is None:
        return None
    result, blank_before, origins.said = answer
    if result is not None:
        origins.blank_before = blank_before
    return result


class _Forked:
    """``work()`` run in a forked copy of this process, its answer sent back pickled through
    a pipe: ``result()`` waits for it (None if the child failed); ``end()`` kills a child
    whose answer was never asked for. The child leaves at once (no cleanup, no stdio
    flush)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        import os
        import pickle

        self._read_fd, write_fd = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            code = 1
            try:
                os.close(self._read_fd)
                data = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self._reaped = False

    def result(self) -> Any:
        import os
        import pickle

        with os.fdopen(self._read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        self._reaped = True
        return pickle.loads(data) if status == 0 else None

    def end(self) -> None:
        import os
        import signal

        if not self._reaped:
            os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(OSError):  # closed already if the read began
                os.close(self._read_fd)
            os.waitpid(self._pid, 0)
            self._reaped = True


# The campaign replay is shared with a second process from this much work on each side, in
# a campaign's seq'd events: a deferred sender's event costs DEFERRED_WEIGHT of one (measured
# on the bench journal: 5.6 against 9 us), and the parent's own end of the audit (merging,
# pending, the report) PARENT_SHARE of every campaign event.
APART_FROM = 5_000
DEFERRED_WEIGHT = 0.6
PARENT_SHARE = 0.25


def share_replay(deferred: int, campaign_events: dict[str, int],
                 apart_from: int = APART_FROM) -> list[str]:
    """The campaigns to replay in a second process (none: not worth one). This process
    keeps the deferred senders; the largest campaigns go, one by one, to the side with
    less work."""
    here = deferred * DEFERRED_WEIGHT + sum(campaign_events.values()) * PARENT_SHARE
    there = 0.0
    apart: list[str] = []
    for cid, n in sorted(campaign_events.items(), key=lambda item: (-item[1], item[0])):
        if there < here or (there == here and apart == []):
            apart.append(cid)
            there += n
        else:
            here += n
    return sorted(apart) if min(here, there) >= apart_from else []


def audit_result(run: Any, apart_from: int = APART_FROM) -> Any:
    """``run.result()`` of a fed ``Audit``, its campaign replay shared with a forked copy
    of this process on a machine of two cores or more (``share_replay``): the child
    replays its campaigns (``replay_apart``) while this one replays the deferred senders
    and the other campaigns, and sends them back pickled through a pipe. The result is the
    same as without it (the audit's tests compare them); if the child fails, its campaigns
    are replayed here. ``ANTIRELOU_AUDIT_PROCESSES=1``: one process."""
    import os

    if (not hasattr(os, "fork") or (os.cpu_count() or 1) < 2
            or os.environ.get("ANTIRELOU_AUDIT_PROCESSES") == "1"):
        return run.result()
    deferred, campaign_events = run.campaign_work()
    apart = share_replay(deferred, campaign_events, apart_from)
    if not apart:
        return run.result()
    child = _Forked(lambda: run.replay_apart(apart))

    def given() -> dict:
        replays = child.result()
        return {} if replays is None else replays  # None: replayed here instead

    try:
        return run.result(apart=given, apart_ids=apart)
    finally:
        child.end()  # result() raised before it needed the child's replays


def audit_journal(args: argparse.Namespace) -> int:
    """``audit``: journal -> replay -> report; 0 clean, 1 on any mismatch, 2 unreadable."""
    from streams import audit as au

    campaigns = load_campaigns(args.config)
    other = load_campaigns(args.what_if) if args.what_if else None
    origins = _Origins(from_file=args.file is not None)
    inputs: list | None = [] if other is not None else None
    with au.gc_paused():
        result = _replay(args, au.Audit(campaigns), inputs, origins)
        if isinstance(result, int):
            return result
        comparison = au.what_if(inputs, campaigns, other) if other is not None else None
    lost = None
    if not result.ok:  # a journal with a lost tail fails: say what it is missing
        from infra.faust import lost_tail

        lost = lost_tail.account_journal(
            file=args.file, kafka=args.kafka,
            topic=None if origins.from_file else f"{args.app_id}.journal")
    _print_report(args, result, comparison, lost, origins)
    first_line = _first_mismatch(result, origins)
    if args.html and not _write_html(args, result, first_line):
        return EXIT_BAD_INPUT
    if result.ok:
        return 0
    print(f"antirelou: audit: {result.counters.mismatches} mismatch(es); the first: "
          f"{first_line}", file=sys.stderr)
    return 1


def _print_report(args: argparse.Namespace, result: Any, comparison: Any, lost: Any,
                  origins: _Origins) -> None:
    import orjson

    from streams import audit as au

    if args.json:
        data = au.to_json(result)
        for m, m_json in zip(result.mismatches, data["mismatches"], strict=True):
            m_json.update(origins.where(m.position))
        if comparison is not None:
            data["what_if"] = au.to_json(comparison)
        if lost is not None:
            data["lost_tail"] = lost.to_json()
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    sys.stdout.write(au.render_text(result))
    if comparison is not None:
        sys.stdout.write("\n" + au.render_text(comparison))
    if lost is not None:
        from infra.faust import lost_tail

        sys.stdout.write("\n" + lost_tail.render_text(lost))


def _first_mismatch(result: Any, origins: _Origins) -> str | None:
    from streams.console.audit_html import field_diff

    if result.ok:
        return None
    m = result.mismatches[0]
    at = ", ".join(f"{k} {v}" for k, v in origins.where(m.position).items()) or f"#{m.position}"
    return f"{m.kind} of message {m.message_id} ({at}): {field_diff(m.expected, m.recorded)}"


def _write_html(args: argparse.Namespace, result: Any, first_line: str | None) -> bool:
    from streams import audit as au
    from streams.console.audit_html import render_html

    source = args.file or f"{args.kafka} topic {args.app_id}.journal"
    try:
        Path(args.html).write_text(render_html(au.to_json(result), source, first_line),
                                   encoding="utf-8")
    except OSError as exc:
        print(f"antirelou: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
        return False
    print(f"antirelou: audit: HTML report written to {args.html}", file=sys.stderr)
    return True
