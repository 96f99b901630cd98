"""Accountable to donors and victims: ``antirelou verify`` (an export against the signed
checkpoints), ``antirelou public --out DIR`` (the transparency page as a static site) and
``antirelou why NUMBER`` (one sender's story from the journal).

    antirelou verify FILE [--checkpoints FILE.checkpoints] --key NAME+ID+KEY
    antirelou public --out DIR
    antirelou why +33612345678 [--campaign paris] [--file EXPORT]

Exit status: 0 verified / done, 1 the journal is not what was signed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.cli import common


def add_parsers(sub: Any) -> None:
    def parser(name: str, what: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=common.Help, help=what,
                              description=description)

    p = parser("verify", "check an export against the deployment's signed checkpoints",
               "every checkpoint's signature, and every event of the export against the trees "
               "they signed; the first event that differs named in one line (exit 1); exit 0 "
               "and one summary line when all match")
    p.add_argument("file", help="the export (`antirelou export --out FILE`), or an inclusion "
                   "proof that --prove wrote")
    p.add_argument("--prove", type=int, metavar="LINE",
                   help="print the inclusion proof of the export's event on this line (JSON: "
                   "the record, its place, the sibling hashes, the signed checkpoint), which "
                   "`verify PROOF --key KEY` checks without the rest of the journal")
    p.add_argument("--checkpoints", help="the signed checkpoints: FILE.checkpoints (written by "
                   "export, with leaf hashes) or a deployment's published checkpoints.txt "
                   "[default: FILE.checkpoints]")
    add_key(p)
    p = parser("public", "write the public transparency page as a static site",
               "the page /public serves, from the journal: index.html, checkpoints.txt (the "
               "latest signed notes) and key.txt")
    common.add_common(p)
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--file", help="read an export (and FILE.checkpoints) instead of the broker")
    p = parser("why", "one sender's story: each text, verdict, wait and reply, and why",
               "the number is pseudonymised here with the deployment secret (ANTIRELOU_SECRET, "
               "or the state folder's in development) and never sent anywhere; only the "
               "journal is read")
    p.add_argument("number", help="the sender's phone number, e.g. +33612345678")
    common.add_common(p)
    p.add_argument("--campaign", help="only this campaign")
    p.add_argument("--file", help="read an export instead of the broker")


def add_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", default=common.env("ANTIRELOU_VERIFIER_KEY"),
                   help="the deployment's verifier key, as `up` and the public page print it "
                   "[ANTIRELOU_VERIFIER_KEY; default: derived from this deployment's secret]")
    p.add_argument("--state-dir", default=common.env("ANTIRELOU_STATE_DIR", ".state"),
                   help=argparse.SUPPRESS)
    common.add_app_id(p)


def local_secret(state_dir: str) -> bytes | None:
    """The deployment secret if this machine has one (never created here)."""
    from infra.keycheck import SecretError, deployment_secret

    if not (os.environ.get("ANTIRELOU_SECRET") or os.environ.get("ANTIRELOU_SECRET_FILE")
            or (Path(state_dir) / "secret").exists()):
        return None
    try:
        return deployment_secret(Path(state_dir), development=True)[0]
    except SecretError:
        return None


def verifier_text(args: argparse.Namespace) -> str | None:
    from streams.cli.deployment import verifier_of

    if args.key:
        return args.key
    secret = local_secret(args.state_dir)
    return verifier_of(args, secret) if secret is not None else None


NO_KEY = ("antirelou: verify: no key: pass --key (the deployment's verifier key, printed by "
          "`antirelou up` and on its public page)")


def said_in_one_line(args: argparse.Namespace, run: Callable[[Any], str]) -> int:
    """``run(verifier)`` with the deployment's key: its line printed, exit 0; else the
    reason in one line: 1 not what was signed, 2 bad input (no key, a file that is not)."""
    import orjson

    from infra.checkpoints import NoteError, Verifier
    from infra.verify import BadExport, Tampered

    key = verifier_text(args)
    if key is None:
        print(NO_KEY, file=sys.stderr)
        return common.EXIT_BAD_INPUT
    try:
        line = run(Verifier.parse(key))
    except (OSError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"antirelou: verify: {where}{getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        return common.EXIT_BAD_INPUT
    except (BadExport, NoteError) as exc:
        print(f"antirelou: verify: {exc}", file=sys.stderr)
        return common.EXIT_BAD_INPUT
    except Tampered as exc:
        print(f"antirelou: verify: NOT VERIFIED: {exc}", file=sys.stderr)
        return 1
    print(line)
    return common.EXIT_OK


def check_export(args: argparse.Namespace, path: str, checkpoints: str | None) -> int:
    """Verify ``path``: said in one line; 0 verified, 1 not what was signed, 2 bad input."""
    from infra.verify import parse_checkpoints, verify_export

    def run(verifier: Any) -> str:
        text = Path(checkpoints or f"{path}.checkpoints").read_text()
        return f"antirelou: {verify_export(path, parse_checkpoints(text), verifier).line()}"

    return said_in_one_line(args, run)


def verify(args: argparse.Namespace) -> int:
    if args.prove is not None or _is_proof(args.file):
        return inclusion(args)
    return check_export(args, args.file, args.checkpoints)


def _is_proof(path: str) -> bool:
    from infra.verify import PROOF_KEY

    try:
        with open(path, "rb") as f:
            return f.read(len(PROOF_KEY) + 2) == b'{"' + PROOF_KEY.encode()
    except OSError:
        return False


def inclusion(args: argparse.Namespace) -> int:
    """``verify FILE --prove LINE`` (print a proof) or ``verify PROOF`` (check one)."""
    import orjson

    from infra.verify import check_proof, parse_checkpoints, prove

    def run(verifier: Any) -> str:
        if args.prove is None:
            return f"antirelou: {check_proof(orjson.loads(Path(args.file).read_bytes()), verifier)}"
        text = Path(args.checkpoints or f"{args.file}.checkpoints").read_text()
        return orjson.dumps(prove(args.file, args.prove, parse_checkpoints(text), verifier)).decode()

    return said_in_one_line(args, run)


def why(args: argparse.Namespace) -> int:
    from infra.config import load_campaigns
    from infra.privacy import Privacy
    from streams.console.story import sender_story
    from streams.intake.errors import BadRequest
    from streams.intake.fields import msisdn

    try:
        number = msisdn(args.number, "NUMBER")
    except BadRequest:
        print("antirelou: why: NUMBER is not a phone number (digits, e.g. +33612345678)",
              file=sys.stderr)
        return common.EXIT_BAD_INPUT
    if args.campaign and args.campaign not in {c.id for c in load_campaigns(args.config)}:
        known = {c.id for c in load_campaigns(args.config)}
        print(common.unknown_campaign(args.campaign, known), file=sys.stderr)
        return common.EXIT_BAD_INPUT
    secret = local_secret(args.state_dir)
    if secret is None:
        print("antirelou: why: no deployment secret here: set ANTIRELOU_SECRET (or "
              "ANTIRELOU_SECRET_FILE) as on the workers", file=sys.stderr)
        return common.EXIT_BAD_INPUT
    sender = Privacy(secret).pseudonym(number)
    del number  # from here on, the pseudonym only
    events = read_events(args)
    if events is None:
        return common.EXIT_BAD_INPUT
    lines = sender_story(events, sender, args.campaign)
    if not lines:
        print(f"antirelou: why: no event of this number ({sender}) in the journal"
              + (f" of {args.campaign}" if args.campaign else ""))
        return common.EXIT_OK
    print(f"sender {sender}")
    print("\n".join(lines))
    return common.EXIT_OK


def read_events(args: argparse.Namespace) -> list | None:
    """Every journal event, from ``--file`` or the broker; None (said why) if unreadable."""
    from infra.journal import BadLine, read_file, read_journal_async

    if getattr(args, "file", None):
        try:
            return list(read_file(args.file))
        except (OSError, BadLine) as exc:
            print(f"antirelou: {args.command}: {exc}", file=sys.stderr)
            return None
    return common.talk(args, read_journal_async(args.kafka, common.journal_topic(args)))


def public(args: argparse.Namespace) -> int:
    import time

    from infra.config import load_campaigns
    from infra.journal import latest_by_key
    from streams.console.public import PublicFigures, latest_notes, render
    from streams.settings import topic_names

    campaigns = load_campaigns(args.config)
    events = read_events(args)
    if events is None:
        return common.EXIT_BAD_INPUT
    figures = PublicFigures(campaigns)
    for e in events:
        figures.apply(e)
    if args.file:
        notes = exported_notes(f"{args.file}.checkpoints")
    else:
        states = common.talk(args, latest_by_key(args.kafka,
                                                 topic_names(args.app_id)["checkpoints"]))
        notes = latest_notes(states)
    key = verifier_text(argparse.Namespace(key=None, state_dir=args.state_dir,
                                           app_id=args.app_id)) or "(no key: set ANTIRELOU_SECRET)"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(render(figures, notes, key, int(time.time() * 1000)))
    (out / "checkpoints.txt").write_text("".join(notes))
    (out / "key.txt").write_text(key + "\n")
    print(f"antirelou: public: {out}/index.html, checkpoints.txt ({len(notes)} signed "
          "checkpoint(s)) and key.txt written")
    return common.EXIT_OK


def exported_notes(path: str) -> list[str]:
    """The latest signed note of each partition in an export's checkpoints (none if absent)."""
    from infra.checkpoints import Checkpoint
    from infra.verify import parse_checkpoints

    try:
        text = Path(path).read_text()
    except OSError:
        return []
    latest: dict[int, str] = {}
    for note, _, _ in parse_checkpoints(text):
        latest[Checkpoint.parse(note.partition("\n\n")[0] + "\n").partition] = note
    return [latest[p] for p in sorted(latest)]
