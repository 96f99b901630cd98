"""Check an exported journal against the deployment's signed checkpoints (``antirelou
verify``): every checkpoint's signature, and that the export's records give, partition by
partition, the roots the checkpoints signed. With the notary's leaf hashes (the
``FILE.checkpoints`` that ``antirelou export`` writes beside the export) each record is
also compared with the hash notarised at its place, so the first one that differs is named
exactly; with signed notes alone (a deployment's public ``checkpoints.txt``) the place is
named to the checkpoint interval.

The export is JSON lines as ``antirelou export`` writes them: each partition's records in
offset order, exactly as stored, after a line ``{"partition":N}``. The hash of a record is
that of its line's bytes (without the newline): nothing is decoded or re-encoded.

Errors::

    BadExport (ValueError)   a file that is not such an export, or checkpoints that do not
                             parse (bad input: exit 2)
    Tampered (ValueError)    the journal or its checkpoints are not what was signed (exit 1):
                             one line saying where
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from infra.checkpoints import Checkpoint, NoteError, Verifier, log_origin, open_note, read_notes
from infra.journal import PARTITION_LINE as MARKER
from infra.merkle import Frontier, leaf_hash


class BadExport(ValueError):
    """Not an export of this version, or checkpoints that do not parse."""


class Tampered(ValueError):
    """The export or its checkpoints differ from what was signed (says where)."""


def marker(partition: int) -> bytes:
    return b'{"partition":%d}\n' % partition


@dataclass
class Notarised:
    """One partition's signed checkpoints (by size) and the leaf hashes known for it."""

    signed: dict[int, Checkpoint] = field(default_factory=dict)
    leaves: bytearray = field(default_factory=bytearray)

    def add_leaves(self, partition: int, first: int, leaves: bytes) -> None:
        have = len(self.leaves) // 32
        if first > have:
            raise Tampered(f"partition {partition}: the notary's leaf hashes jump from event "
                           f"#{have + 1} to #{first + 1}")
        overlap = self.leaves[first * 32:first * 32 + len(leaves)]
        if overlap != leaves[:len(overlap)]:
            raise Tampered(f"partition {partition}: two notary records disagree on event "
                           f"#{first + 1 + _first_diff(overlap, leaves) // 32}")
        self.leaves += leaves[len(overlap):]

    def leaf(self, i: int) -> bytes | None:
        return bytes(self.leaves[i * 32:i * 32 + 32]) if i * 32 < len(self.leaves) else None


def _first_diff(a: bytes | bytearray, b: bytes | bytearray) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


def parse_checkpoints(text: str) -> list[tuple[str, int | None, bytes]]:
    """(note, first leaf index or None, leaf hashes) of each checkpoint: JSON lines as the
    export writes them, or signed notes one after the other (a public checkpoints.txt)."""
    if not text.lstrip().startswith("{"):
        return [(note, None, b"") for note in read_notes(text)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            leaves = base64.b64decode(record.get("leaves", ""), validate=True)
            note, first = record["note"], record.get("first")
            if not isinstance(note, str) or not (first is None or isinstance(first, int)):
                raise TypeError
            out.append((note, first, leaves))
        except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError, AttributeError):
            raise BadExport(f"checkpoints line {n}: not a notary record") from None
    return out


def open_checkpoints(records: Iterable[tuple[str, int | None, bytes]],
                     verifier: Verifier) -> dict[int, Notarised]:
    """Every checkpoint's signature and origin checked; by partition."""
    logs: dict[int, Notarised] = {}
    for i, (note, first, leaves) in enumerate(records, 1):
        try:
            cp = Checkpoint.parse(open_note(note, verifier))
        except NoteError as exc:
            raise Tampered(f"checkpoint #{i}: {exc}") from None
        if cp.origin != log_origin(verifier.name, cp.partition):
            raise Tampered(f"checkpoint #{i}: of the log {cp.origin!r}, not of this "
                           f"deployment's journal ({verifier.name}/journal/N)")
        log = logs.setdefault(cp.partition, Notarised())
        other = log.signed.get(cp.size)
        if other is not None and other.root != cp.root:
            raise Tampered(f"checkpoint #{i}: partition {cp.partition} signed twice at size "
                           f"{cp.size} with two roots ({other.at} and {cp.at})")
        log.signed.setdefault(cp.size, cp)
        if first is not None and leaves:
            if len(leaves) % 32:
                raise BadExport(f"checkpoint #{i}: leaf hashes not a multiple of 32 bytes")
            log.add_leaves(cp.partition, first, leaves)
    for p, log in logs.items():  # the notarised leaves give the signed roots
        frontier, sizes = Frontier(), sorted(log.signed)
        for size in sizes:
            if size * 32 > len(log.leaves):
                break
            frontier.extend(bytes(log.leaves[j * 32:j * 32 + 32])
                            for j in range(frontier.size, size))
            if frontier.root() != log.signed[size].root:
                raise Tampered(f"partition {p}: the notary's leaf hashes do not give the root "
                               f"signed at {log.signed[size].at} (size {size})")
    return logs


@dataclass
class Summary:
    events: int = 0
    partitions: int = 0
    checkpoints: int = 0
    latest: str = ""
    unsigned: int = 0  # events after their partition's latest checkpoint

    def line(self) -> str:
        tail = (f"; {self.unsigned:,} newer events not yet in a checkpoint"
                if self.unsigned else "")
        return (f"verified: {self.events - self.unsigned:,} events in {self.partitions} "
                f"partition(s) match "
                f"{self.checkpoints:,} signed checkpoint(s), the latest signed "
                f"{self.latest or '-'}{tail}")


class _Partition:
    """One partition of the export being read against what was signed of it."""

    def __init__(self, p: int, log: Notarised | None) -> None:
        self.p, self.log = p, log or Notarised()
        self.frontier = Frontier()
        self.sizes = sorted(self.log.signed)
        self.next_size = 0  # index in sizes of the next checkpoint to meet
        self.matched = 0  # events proved by the last checkpoint met

    def take(self, record: bytes, line_no: int) -> None:
        i = self.frontier.size
        leaf = leaf_hash(record)
        known = self.log.leaf(i)
        if known is not None and known != leaf:
            raise Tampered(f"line {line_no} (partition {self.p}, event #{i + 1}): "
                           f"{self._what(leaf, i)}")
        self.frontier.append(leaf)
        sizes = self.sizes
        if self.next_size < len(sizes) and sizes[self.next_size] == i + 1:
            cp = self.log.signed[i + 1]
            if self.frontier.root() != cp.root:
                raise Tampered(f"line {line_no} (partition {self.p}): events #{self.matched + 1}"
                               f"..#{i + 1} are not those signed at {cp.at}: one of them was "
                               "changed, removed, added or moved")
            self.matched = i + 1
            self.next_size += 1

    def _what(self, leaf: bytes, i: int) -> str:
        if self.log.leaf(i + 1) == leaf:
            return "the event notarised before it here is missing (deleted)"
        ahead = [j for j in range(i + 2, i + 1000) if self.log.leaf(j) == leaf]
        if ahead:
            return f"notarised as event #{ahead[0] + 1}: moved (reordered) or events deleted"
        return "not the event notarised at this place (changed)"

    def end(self) -> None:
        if self.sizes and self.sizes[-1] > self.frontier.size:
            cp = self.log.signed[self.sizes[-1]]
            raise Tampered(f"partition {self.p}: the export ends after event "
                           f"#{self.frontier.size}, but the checkpoint signed at {cp.at} covers "
                           f"{cp.size}: the last {cp.size - self.frontier.size} are missing")


def verify_export(path: str, checkpoints: list[tuple[str, int | None, bytes]],
                  verifier: Verifier) -> Summary:
    logs = open_checkpoints(checkpoints, verifier)
    summary = Summary(checkpoints=sum(len(log.signed) for log in logs.values()))
    summary.latest = max((cp.at for log in logs.values() for cp in log.signed.values()),
                         default="")
    seen: set[int] = set()
    part: _Partition | None = None
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BadExport(f"{path}: {exc.strerror or type(exc).__name__}") from None
    with f:
        for n, raw in enumerate(f, 1):
            record = raw[:-1] if raw.endswith(b"\n") else raw
            if record.startswith(MARKER):
                try:
                    p = int(orjson.loads(record)["partition"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise BadExport(f"{path}:{n}: a bad partition line") from None
                if p in seen:
                    raise Tampered(f"line {n}: partition {p} appears twice in the export")
                if part is not None:
                    part.end()
                    summary.unsigned += part.frontier.size - part.matched
                seen.add(p)
                part = _Partition(p, logs.get(p))
                continue
            if part is None:
                raise BadExport(f"{path}:{n}: no partition line before the first event: not "
                                "an export that can be verified (write it with `antirelou "
                                "export`)")
            part.take(record, n)
            summary.events += 1
    if part is not None:
        part.end()
        summary.unsigned += part.frontier.size - part.matched
    for p in sorted(set(logs) - seen):
        signed = max(logs[p].signed)
        if signed:
            raise Tampered(f"partition {p}: not in the export, but checkpoints cover "
                           f"{signed} of its events")
    summary.partitions = len(seen)
    return summary


# --- one event proved included, without the rest of the log -------------------------------

PROOF_KEY = "antirelou_inclusion_proof"


def prove(path: str, line_no: int, checkpoints: list[tuple[str, int | None, bytes]],
          verifier: Verifier) -> dict:
    """The inclusion proof of the event on line ``line_no`` of an export, in the tree of the
    first checkpoint that covers it (RFC 6962 PATH): the record itself, its place, the
    sibling hashes and the signed note; checked by ``check_proof`` with the key alone."""
    from infra.merkle import inclusion_proof

    logs = open_checkpoints(checkpoints, verifier)
    part, leaves, index, record = None, [], -1, b""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.startswith(MARKER):
                if index >= 0:
                    break  # the partition of the event is read
                part, leaves = int(orjson.loads(line)["partition"]), []
                continue
            if part is None:
                raise BadExport(f"{path}:{n}: no partition line before the first event")
            leaves.append(leaf_hash(line))
            if n == line_no:
                index, record = len(leaves) - 1, line
    if index < 0:
        raise BadExport(f"{path}: line {line_no} is not an event of the export")
    signed = logs.get(part, Notarised()).signed
    size = min((s for s in signed if s > index), default=None)
    if size is None:
        raise BadExport(f"line {line_no} (partition {part}, event #{index + 1}) is not yet in "
                        "a signed checkpoint")
    if len(leaves) < size:
        raise Tampered(f"partition {part}: the export ends before the checkpoint's {size} events")
    note = next(note for note, _, _ in checkpoints
                if Checkpoint.parse(open_note(note, verifier)) == signed[size])
    return {PROOF_KEY: 1, "record": record.decode(), "partition": part, "index": index,
            "size": size, "proof": [base64.b64encode(h).decode()
                                    for h in inclusion_proof(leaves, index, size)],
            "note": note}


def check_proof(data: dict, verifier: Verifier) -> str:
    """One line saying what ``data`` (``prove``'s) proves; Tampered if it does not."""
    from infra.merkle import verify_inclusion

    try:
        cp = Checkpoint.parse(open_note(data["note"], verifier))
        record, index, size = data["record"].encode(), int(data["index"]), int(data["size"])
        proof = [base64.b64decode(h, validate=True) for h in data["proof"]]
    except NoteError as exc:
        raise Tampered(f"the proof's checkpoint: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadExport("not an inclusion proof (antirelou verify FILE --prove LINE)") from None
    if cp.origin != log_origin(verifier.name, cp.partition) or cp.size != size:
        raise Tampered(f"the proof's checkpoint is of {cp.origin!r} at size {cp.size}, not of "
                       f"this deployment's journal at size {size}")
    if not verify_inclusion(leaf_hash(record), index, size, proof, cp.root):
        raise Tampered(f"the record is not event #{index + 1} of partition {cp.partition} as "
                       f"signed at {cp.at}")
    return (f"proved: the record is event #{index + 1} of the {size:,} of journal partition "
            f"{cp.partition} signed at {cp.at}")
