"""The dashboard/metrics projection (streams/console/metrics.py) alone: decode + apply per journal
event, on the audit benchmark's generated journal. Prints events/s and µs per event: what
following the journal costs each worker (every worker follows all of it)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.config import load_campaigns  # noqa: E402
from schemas import codec  # noqa: E402
from streams.console.metrics import Projection  # noqa: E402
from tests.benchmarks.bench_audit import LYON_REPLY, PARIS_REPLY, TOML, generate  # noqa: E402


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory() as tmp:
        config, journal = Path(tmp) / "c.toml", Path(tmp) / "j.jsonl"
        config.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                      paris_eur=f"{0.16 * 0.6 * n / 4 * 0.5:.2f}"))
        generate(config, journal, n)
        lines = journal.read_bytes().splitlines()
        values = [orjson.dumps(orjson.loads(line)) for line in lines]
        campaigns = load_campaigns(config)
    t0 = time.perf_counter()
    decoded = [codec.decode(v) for v in values]
    t1 = time.perf_counter()
    p = Projection(campaigns)
    for e in decoded:
        p.apply(e, e.occurred_at)
    t2 = time.perf_counter()
    k = len(values)
    print(f"{k:,} events: decode {k / (t1 - t0):,.0f} events/s, projection apply "
          f"{k / (t2 - t1):,.0f} events/s; {1e6 * (t2 - t0) / k:.1f} µs per event in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
