"""Benchmark: ``antirelou verify`` of a large export against plain decoding of it.

    .venv/bin/python tests/benchmarks/bench_verify.py [--events N] [--rounds 3]

Generates a journal of at least N events (default 1,000,000) with the real core, as
``bench_audit.py`` does (in a child process), notarises it as the notary stage does (a
checkpoint each 16,384 records, with their leaf hashes), and writes it as ``antirelou
export`` does. Then, ``--rounds`` times, one after the other:

  (a) decode: orjson.loads + codec.from_dict per line (as bench_audit's)
  (b) verify: ``antirelou verify FILE --key KEY`` (every signature, every record's hash
      against the notarised one, every signed root)

and prints each round's ratio and the median round's rates. Nothing is asserted about
timing. Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from infra.checkpoints import CHUNK, Notary, notary_line, signing_key, verifier_key
from infra.verify import marker
from schemas import codec

SECRET = b"the benchmark's deployment secret"
ORIGIN = "antirelou/bench"


def notarise(journal: Path, export: Path) -> int:
    """The journal as one partition's export, with a checkpoint each CHUNK records."""
    notary = Notary(ORIGIN, signing_key(SECRET))
    n, now = 0, 1_764_633_600_000
    with open(journal, "rb") as src, open(export, "wb") as out, \
            open(f"{export}.checkpoints", "wb") as cps:
        out.write(marker(0))
        for line in src:
            out.write(line)
            if notary.add(0, n, line.rstrip(b"\n")):
                now += 60_000
                cps.write(notary_line(notary.sign(0, now)))
            n += 1
        if notary.log(0).pending:
            cps.write(notary_line(notary.sign(0, now + 60_000)))
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from streams import cli

    key = verifier_key(ORIGIN, signing_key(SECRET).public_key().public_bytes_raw())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, journal, export = (folder / "campaigns.toml", folder / "journal.jsonl",
                                   folder / "export.jsonl")
        bench_audit = Path(__file__).with_name("bench_audit.py")
        sys.path.insert(0, str(bench_audit.parent))
        from bench_audit import LYON_REPLY, PARIS_REPLY, TOML  # noqa: E402 - the same journal

        config.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                      paris_eur=f"{0.16 * 0.6 * args.events / 4 * 0.5:.2f}"))
        subprocess.run([sys.executable, str(bench_audit), "--events", str(args.events),
                        "--generate-only", str(config), str(journal)], check=True,
                       capture_output=True)
        t = time.perf_counter()
        n = notarise(journal, export)
        print(f"notarised {n:,} events ({n // CHUNK + 1} checkpoints) in "
              f"{time.perf_counter() - t:.1f} s (the notary's cost, for scale)")
        rounds = []
        for r in range(args.rounds):
            loads, from_dict = orjson.loads, codec.from_dict
            t, cpu = time.perf_counter(), time.process_time()
            with open(journal, "rb") as f:
                for line in f:
                    from_dict(loads(line))
            decode_s, decode_cpu = time.perf_counter() - t, time.process_time() - cpu
            out = io.StringIO()
            t, cpu = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(out):
                code = cli.main(["verify", str(export), "--key", key])
            verify_s, verify_cpu = time.perf_counter() - t, time.process_time() - cpu
            rounds.append((decode_s / verify_s, decode_s, verify_s, decode_cpu, verify_cpu, code,
                           out.getvalue().strip()))
            print(f"round {r + 1}: decode {n / decode_s:,.0f} events/s, verify "
                  f"{n / verify_s:,.0f} events/s, ratio {decode_s / verify_s:.2f}", flush=True)
        ratio, decode_s, verify_s, decode_cpu, verify_cpu, code, line = sorted(rounds)[len(rounds) // 2]
        print(line)
        print(f"verify exit status {code}")
        print(f"events:             {n:,}")
        print(f"(a) decode:         {n / decode_s:12,.0f} events/s  ({decode_s:.2f} s)")
        print(f"(b) verify:         {n / verify_s:12,.0f} events/s  ({verify_s:.2f} s)")
        print(f"ratio verify/decode: {ratio:.2f}")
        print(f"CPU:                decode {decode_cpu:.2f} s, verify {verify_cpu:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
