"""What a Faust worker's log says of its consumer group (the scale-out tests and the
two-worker benchmark read it)."""

from __future__ import annotations

import re
from pathlib import Path


def read_standbys(log_path: Path) -> bool:
    """Whether the worker was given standby partitions of a table (Faust logs their offsets
    when it starts reading them)."""
    return "standby offsets at start of reading" in log_path.read_text(errors="replace")


def assignment(log_path: Path, topic: str) -> tuple[int, str]:
    """(generation, partitions of ``topic``) of the worker's last rebalance, from the table
    Faust logs after "Successfully synced group ... with generation N"."""
    generation, partitions = 0, ""
    lines = log_path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        found = re.search(r"Successfully synced group \S+ with generation (\d+)", line)
        if found:
            generation, partitions = int(found.group(1)), ""
            for row in lines[i + 1:i + 40]:
                if row.startswith("| ") and row.split("|")[1].strip() == topic:
                    partitions = row.split("|")[2].strip()
                if not row.startswith(("|", "+")) and "Setting newly" not in row:
                    break
    return generation, partitions
