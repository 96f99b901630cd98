"""A journal as the broker holds it and as ``antirelou export`` writes it, notarised as the
notary stage notarises it: for the tests of ``verify``, ``why``, the public page and the
benchmark (written once)."""

from __future__ import annotations

import zlib
from pathlib import Path

from infra.checkpoints import Notary, notary_line, signing_key
from infra.verify import marker
from schemas import codec

SECRET = b"a deployment secret of the tests"
ORIGIN = "antirelou/test"
MINUTE = 60_000


def partitioned(events, partitions: int = 3) -> list[list[bytes]]:
    """The events' records, keyed like the real journal (sender, else campaign)."""
    parts: list[list[bytes]] = [[] for _ in range(partitions)]
    for e in events:
        key = getattr(e, "sender", None) or getattr(e, "campaign_id", None) or "-"
        parts[zlib.crc32(key.encode()) % partitions].append(codec.encode(e))
    return parts


def notarise(parts: list[list[bytes]], every: int = 7, secret: bytes = SECRET,
             origin: str = ORIGIN, start_ms: int = 1_764_633_600_000) -> list[bytes]:
    """The notary records of ``parts``: a checkpoint each ``every`` records of a partition
    (the notary's interval, in records), and one at the end of each."""
    notary = Notary(origin, signing_key(secret))
    lines = []
    now = start_ms
    for p, records in enumerate(parts):
        for offset, value in enumerate(records):
            notary.add(p, offset, value)
            if (offset + 1) % every == 0:
                now += MINUTE
                lines.append(notary_line(notary.sign(p, now)))
        if notary.log(p).pending:
            now += MINUTE
            lines.append(notary_line(notary.sign(p, now)))
    return lines


def write_export(directory: Path, parts: list[list[bytes]], notary_lines: list[bytes],
                 name: str = "journal.jsonl") -> Path:
    path = directory / name
    with open(path, "wb") as f:
        for p, records in enumerate(parts):
            f.write(marker(p))
            for value in records:
                f.write(value + b"\n")
    Path(f"{path}.checkpoints").write_bytes(b"".join(notary_lines))
    return path
