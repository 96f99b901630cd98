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


def number(i: int) -> str:
    return f"336120000{i:02d}"


def stories_journal():
    """Paris with its shipped policy (a 30-minute safety delay, surges on): quiet pests an
    hour apart (held for the delay, then released and answered), a raid of 60 first texts
    in two minutes pasting one text, and a flooder (12 texts in 12 seconds). Senders are the
    pseudonyms of ``number(i)`` under SECRET: 0-5 quiet, 10-69 raid, 90 the flooder."""
    from infra.privacy import Privacy
    from schemas.commands import Tick
    from tests.factories import T0, campaign, journal_of

    c = campaign("paris", budget_micros=50_000_000,
                 policy=(("surge_spend_percent", 1), ("surge_ttl_ms", 90 * MINUTE)))
    pseudonym = Privacy(SECRET).pseudonym
    words = ["tu es belle", "on se revoit quand", "je pense a toi", "reponds stp",
             "t'es ou ce soir", "salut ma belle"]
    steps: list = [(f"q{i}", c.id, pseudonym(number(i)), T0 + i * 60 * MINUTE, "33-612", words[i])
                   for i in range(6)]
    raid_at = T0 + 7 * 60 * MINUTE
    steps += [(f"r{i}", c.id, pseudonym(number(10 + i)), raid_at + i * 2_000, "33-756",
               "ce numero est un fake lol") for i in range(60)]
    steps += [(f"f{k}", c.id, pseudonym(number(90)), raid_at + 3 * MINUTE + k * 1_000, "33-699",
               f"allo {k}") for k in range(12)]
    steps += [Tick(campaign_id=c.id, occurred_at=T0 + k * MINUTE) for k in range(0, 10 * 60, 1)]
    steps.sort(key=lambda s: s.occurred_at if isinstance(s, Tick) else s[3])
    return c, journal_of(steps, [c], batch=1)
