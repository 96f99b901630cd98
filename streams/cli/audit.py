"""``antirelou audit``: replay the journal (a file, or the topic) through the pure core and
diff every decision (``streams.audit``); exit 0 clean, 1 on any mismatch, 2 unreadable. A
large file is read by two processes, one per half of the replay (``two_readers``), and a
campaign replay shared with a forked copy (``audit_result``); the result is the one of one
process in every case. ``--what-if`` replays the texts under another campaign file,
``--html`` writes the report as a page; a failed replay says what the broker may have lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from infra.config import load_campaigns
from infra.journal import BadLine, iter_journal, read_file, read_lines
from schemas.events import EVENT_TYPES
from streams.cli import common


def add_audit_parser(sub: Any) -> None:
    p = sub.add_parser("audit", formatter_class=common.Help,
                       help="replay the journal through the core, diff every decision")
    common.add_config(p, "the campaign file (TOML) the journal ran with")
    src = p.add_mutually_exclusive_group()
    common.add_kafka(src)
    src.add_argument("--file", help="read a JSON-lines export instead of the broker")
    common.add_app_id(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report with charts")
    p.add_argument("--what-if", metavar="OTHER.toml", help="also replay the texts under this config")
    p.add_argument("--key", default=common.env("ANTIRELOU_VERIFIER_KEY"),
                   help="with --file and FILE.checkpoints beside it: the verifier key the "
                   "export is checked with first (`antirelou verify`) [ANTIRELOU_VERIFIER_KEY; "
                   "default: derived from this deployment's secret]")


class Origins:
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


def _file_events(args: argparse.Namespace, origins: Origins,
                 pass_over: bytes | tuple[bytes, ...] | None = None,
                 noted: tuple[bytes, Callable[[dict], Any]] | None = None) -> Iterator[Any]:
    with open(args.file, "rb") as f:
        for n, event in read_lines(f, args.file, origins.blank, pass_over, noted):
            if n % common.PROGRESS_EVERY == 0 and n > origins.said:
                common.progress(args, n)
                origins.said = n  # a second reading of the file does not say it again
            yield event


# The events the screening half of the audit reads (``Audit(part="screening")``); the lines
# of every other type it passes over, when ``plainly`` of that type (the other half reads
# them, and so says what is wrong with a bad one).
SCREENING_TYPES = frozenset(("TextReceived", "SenderScreened", "SenderReopened",
                             "PolicyChanged", "ReplySent"))
NOT_SCREENING_LINES = tuple(sorted(f'{{"type":"{cls.TYPE}",'.encode() for cls in EVENT_TYPES
                                   if cls.TYPE not in SCREENING_TYPES))


def screening_events(f: Any, name: str = "journal") -> Iterator[Any]:
    """The journal's events for the screening half, as ``infra.journal.read_lines`` reads
    them: the events of ``SCREENING_TYPES``, None for each other event (its position is
    kept), blank lines skipped."""
    for _, event in read_lines(f, name, pass_over=NOT_SCREENING_LINES):
        yield event


async def _feed_from_kafka(args: argparse.Namespace, origins: Origins,
                           feed: Callable[[list], None]) -> None:
    chunk: list = []
    n = 0
    async for part, offset, event in iter_journal(args.kafka, common.journal_topic(args)):
        n += 1
        if n % common.PROGRESS_EVERY == 0:
            common.progress(args, n)
        origins.parts.append(part)
        origins.offsets.append(offset)
        chunk.append(event)
        if len(chunk) >= 10_000:
            feed(chunk)
            chunk = []
    feed(chunk)


def _replay(args: argparse.Namespace, run: Any, inputs: list | None,
            origins: Origins) -> Any:
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
            result = two_readers(args, run, feed, origins, texts_wanted=inputs is not None)
            if result is not None:
                return result
            if inputs is not None:  # read again from the start, in one process
                inputs.clear()
            origins.blank_before.clear()
            feed(_file_events(args, origins))  # one pass: the audit pulls lines as it goes
        else:
            common.talk(args, _feed_from_kafka(args, origins, feed))
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

# A journal file from this size on is read by two processes (``two_readers``).
TWO_READERS_FROM = 4 * 2**20


class _HalfFailed(Exception):
    """The screening half's process gave no result."""


def two_readers(args: argparse.Namespace, run: Any, feed: Callable[..., None],
                 origins: Origins, texts_wanted: bool = False) -> Any:
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
    if not (forking_pays() and _big_enough(args.file)):
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
        child = Forked(screening_half)

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

    forked = Forked(result_and_origins)
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


def forking_pays() -> bool:
    """Whether to share an audit with a forked copy of this process: it can fork, has two
    cores or more, and ``ANTIRELOU_AUDIT_PROCESSES`` is not 1."""
    import os

    return (hasattr(os, "fork") and (os.cpu_count() or 1) >= 2
            and os.environ.get("ANTIRELOU_AUDIT_PROCESSES") != "1")


def _big_enough(path: str) -> bool:
    import os

    try:
        return os.path.getsize(path) >= TWO_READERS_FROM
    except OSError:
        return False


class Forked:
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
    if not forking_pays():
        return run.result()
    deferred, campaign_events = run.campaign_work()
    apart = share_replay(deferred, campaign_events, apart_from)
    if not apart:
        return run.result()
    child = Forked(lambda: run.replay_apart(apart))

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
    verified = _verify_first(args)
    if verified:
        return verified
    origins = Origins(from_file=args.file is not None)
    inputs: list | None = [] if other is not None else None
    with au.gc_paused():
        result = _replay(args, au.Audit(campaigns), inputs, origins)
        if isinstance(result, int):
            return result
        comparison = au.what_if(inputs, campaigns, other) if other is not None else None
    lost = None
    if not result.ok:  # a journal with a lost tail fails: say what it is missing
        lost = account_journal(args)
    _print_report(args, result, comparison, lost, origins)
    first_line = _first_mismatch(result, origins)
    if args.html and not _write_html(args, result, first_line):
        return common.EXIT_BAD_INPUT
    if result.ok:
        return 0
    print(f"antirelou: audit: {result.counters.mismatches} mismatch(es); the first: "
          f"{first_line}", file=sys.stderr)
    return 1


def _verify_first(args: argparse.Namespace) -> int:
    """An export with its checkpoints beside it is verified before it is replayed: 0 when
    verified (or nothing to verify, said), else verify's exit status."""
    import os

    from streams.cli.transparency import check_export, verifier_text

    if not args.file or not os.path.exists(f"{args.file}.checkpoints"):
        return 0
    key_args = argparse.Namespace(key=args.key, app_id=args.app_id,
                                  state_dir=common.env("ANTIRELOU_STATE_DIR", ".state"))
    if verifier_text(key_args) is None:
        print("antirelou: audit: not verified against its checkpoints: no key (--key)",
              file=sys.stderr)
        return 0
    return check_export(key_args, args.file, None)


def _print_report(args: argparse.Namespace, result: Any, comparison: Any, lost: Any,
                  origins: Origins) -> None:
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
        from streams.audit.losses import render_text

        sys.stdout.write("\n" + render_text(lost))


def _first_mismatch(result: Any, origins: Origins) -> str | None:
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


def account_journal(args: argparse.Namespace) -> Any:
    """The account of what a broker lost (``streams.audit.losses``) of the journal read again
    (the file, or the topic): done only when the replay failed."""
    from streams.audit.losses import Accountant, account

    if args.file is not None:
        return account(read_file(args.file))
    accountant = Accountant()

    async def read() -> None:
        async for _, _, event in iter_journal(args.kafka, common.journal_topic(args)):
            accountant.feed(event)

    asyncio.run(read())
    return accountant.result()
