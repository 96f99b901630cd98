"""Benchmark: audit replay of a large journal file against plain decoding of it.

    .venv/bin/python tests/benchmarks/bench_audit.py [--events N] [--keep DIR] [--profile]

Generates a journal of at least N events (default 1,000,000) with the real core (many
senders, a few campaigns, redelivered webhooks and requests, a policy change, a credit, one
budget running out midway), keyed and read like the real one (partition after partition),
written as JSON lines. The generation runs in a child process so that the peak RSS printed
is the measuring process's own. Then, in one run, ``--rounds`` times (3), one after the other:

  (a) decode: orjson.loads + codec.from_dict per line
  (b) audit:  ``antirelou audit --config ... --file ...`` (decode + replay + report; on two
      cores or more its two halves, screening and campaigns, run in two forked processes
      that each read the file, ``ANTIRELOU_AUDIT_PROCESSES=1``: one process)

and prints each round's ratio, the ratio of the fastest decode to the fastest audit, then
both rates of the round with the median ratio, their ratio, the CPU seconds of each and the
peak RSS. Nothing is asserted about timing. Not
collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson

from schemas import codec

PARIS_REPLY = (  # the 2017 reply: 229 GSM-7 characters, 2 segments
    "Bonjour. Ce numéro sert à tenir à distance les gens qui insistent. Par votre faute, une "
    "femme ne s'est pas sentie en sécurité. Non, c'est non : elle n'a pas à se justifier. Ne la "
    "contactez plus jamais. Ce message est automatique."
)
LYON_REPLY = (
    "Ce numéro est un numéro anti-relou. Une femme vous l'a donné pour que vous la laissiez "
    "tranquille. Non, c'est non."
)
TOML = """
[[campaign]]
id = "paris"
number = "+33644630001"
reply_text = "{paris_reply}"
language = "fr"
budget_eur = "{paris_eur}"
price_per_segment_eur = "0.08"
start = 2017-10-16
end = 2018-10-15
policy = {{ reply_delay_minutes = "0" }}  # decided as they come: the generator sends no ticks

[[campaign]]
id = "lyon"
number = "+33644630002"
reply_text = "{lyon_reply}"
language = "fr"
budget_eur = "100000.00"
price_per_segment_eur = "0.08"
start = 2017-10-16
end = 2018-10-15
cooldown_days = 3
policy = {{ reply_delay_minutes = "0" }}

[[campaign]]
id = "marseille"
number = "+33644630003"
reply_text = "Non, c'est non."
language = "fr"
budget_eur = "100000.00"
price_per_segment_eur = "0.08"
start = 2017-10-20
end = 2018-10-15
policy = {{ reply_delay_minutes = "0" }}
"""

T0 = 1_508_112_000_000  # 2017-10-16 00:00 UTC
PARTITIONS = 8


def generate(config: Path, out: Path, n_events: int, seed: int = 7) -> dict[str, int]:
    """Drive the core like the shells do until the journal holds >= n_events events."""
    from actors.campaign import initial_policy
    from actors.shard import CampaignShard
    from infra.config import load_campaigns
    from schemas.commands import ChangePolicy, CreditBudget, ScreenText
    from schemas.events import PolicyChanged, ReplyApproved, ReplyFailed, ReplySent, TextReceived
    from schemas.policy import apply_changes
    from streams.rules.pipeline import request_for
    from streams.rules.screening import SenderState, decide_screening, evolve_sender

    rng = random.Random(seed)
    campaigns = load_campaigns(config)
    shard = CampaignShard(campaigns)
    live = {c.id: initial_policy(c) for c in campaigns}
    senders: dict[str, SenderState] = {}
    files = [open(out.with_suffix(f".p{p}"), "wb") for p in range(PARTITIONS)]  # noqa: SIM115
    written = 0
    stats = {"texts": 0, "redelivered_webhooks": 0, "redelivered_requests": 0}
    weights = [0.6, 0.3, 0.1]
    n_senders = max(1000, n_events // 6)
    pending: list = []
    recent: list = []

    def record(events) -> None:
        nonlocal written
        for e in events:
            key = getattr(e, "sender", None) or e.campaign_id
            files[zlib.crc32(key.encode()) % PARTITIONS].write(orjson.dumps(codec.to_dict(e)) + b"\n")
            written += 1

    def flush() -> None:
        decisions = shard.decide(pending)
        record(decisions)
        seen = set()
        for d in decisions:
            if isinstance(d, ReplyApproved) and d.message_id not in seen:
                seen.add(d.message_id)
                if rng.random() < 0.02:
                    record([ReplyFailed(message_id=d.message_id, campaign_id=d.campaign_id, sender=d.sender,
                                        error="GatewayUnavailable", retryable=True,
                                        occurred_at=d.occurred_at + 2_000, attempts=1,
                                        reason="provider_unavailable")])
                else:
                    record([ReplySent(message_id=d.message_id, campaign_id=d.campaign_id, sender=d.sender,
                                      provider_message_id="mb" + d.message_id, price_micros=160_000,
                                      dry_run=False, occurred_at=d.occurred_at + 2_000)])
        pending.clear()

    def control(command) -> None:
        flush()
        outcomes = shard.control([command])
        record(outcomes)
        for e in outcomes:
            if isinstance(e, PolicyChanged):
                live[e.campaign_id] = apply_changes(live[e.campaign_id], e.changes, e.version)

    at = T0
    n = 0
    changed = credited = False
    while written < n_events:
        n += 1
        at += rng.randint(0, 6_000)  # ~ 20 texts a minute on average: days of traffic
        if not changed and written > n_events // 3:
            control(ChangePolicy(command_id="bench-1", campaign_id="lyon",
                                 changes={"cooldown_ms": 86_400_000}, operator="ops", occurred_at=at))
            changed = True
        if not credited and written > (2 * n_events) // 3:
            control(CreditBudget(command_id="bench-2", campaign_id="marseille", amount_micros=50_000_000,
                                 source="donors", operator="ops", occurred_at=at))
            credited = True
        if recent and rng.random() < 0.03:
            text = rng.choice(recent)  # a redelivered webhook: the very same text
            stats["redelivered_webhooks"] += 1
        else:
            # A few loud senders and a long tail: many texts are "already answered".
            sender = f"s{int(n_senders * rng.random() ** 2):07d}"
            # Each sender texts one campaign (one who texts two is taken for a raider).
            cid = random.Random(sender).choices(("paris", "lyon", "marseille"), weights)[0]
            text = TextReceived(message_id=f"mb{n:09d}", campaign_id=cid, sender=sender, body="t'es qui ?",
                                occurred_at=at, number_kind="mobile", country="FR",
                                prefix=f"33-6{int(sender[1:]) % 100:02d}")
            recent.append(text)
            if len(recent) > 500:
                del recent[:250]
        stats["texts"] += 1
        policy = live[text.campaign_id]
        state = senders.get(text.sender)
        if state is None:
            state = senders[text.sender] = SenderState()
        screened = decide_screening(
            state, ScreenText(message_id=text.message_id, campaign_id=text.campaign_id, sender=text.sender,
                              body=text.body, occurred_at=text.occurred_at, reply_to="sealed",
                              number_kind=text.number_kind, country=text.country, prefix=text.prefix), policy)
        for e in screened:
            evolve_sender(state, e, policy)
        record([text, *screened])
        if screened[0].verdict == "forward":
            # As screen_senders makes it: the number range and the sender's text count
            # travel with the request (the audit rebuilds both from the journal).
            request = request_for(screened[0], text.prefix, "sealed")
            pending.append(request)
            if rng.random() < 0.01:
                pending.append(request)  # the request delivered twice
                stats["redelivered_requests"] += 1
            if len(pending) >= 200:
                flush()
    flush()
    for f in files:
        f.close()
    with open(out, "wb") as journal:
        for p in range(PARTITIONS):
            part = out.with_suffix(f".p{p}")
            journal.write(part.read_bytes())
            part.unlink()
    stats["events"] = written
    stats["days"] = (at - T0) // 86_400_000 + 1
    return stats


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", help="write the journal and config into this folder and keep them")
    parser.add_argument("--rounds", type=int, default=3,
                        help="decode then audit this many times; the median round is reported")
    parser.add_argument("--profile", action="store_true", help="cProfile the first audit run (slower)")
    parser.add_argument("--generate-only", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate_only:
        stats = generate(Path(args.generate_only[0]), Path(args.generate_only[1]), args.events)
        print(orjson.dumps(stats).decode())
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config, journal = folder / "campaigns.toml", folder / "journal.jsonl"
        # Paris's budget covers about half of its forwarded texts: it runs out midway.
        config.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                      paris_eur=f"{0.16 * 0.6 * args.events / 4 * 0.5:.2f}"))

        t = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--events", str(args.events),
             "--generate-only", str(config), str(journal)],
            check=True, capture_output=True, text=True,
        )
        stats = orjson.loads(child.stdout)
        size = os.path.getsize(journal)
        print(f"generated {stats['events']:,} events ({stats['texts']:,} texts over "
              f"{stats['days']} days, {stats['redelivered_webhooks']:,} redelivered webhooks, "
              f"{stats['redelivered_requests']:,} redelivered requests), "
              f"{size / 2**20:.0f} MiB, in {time.perf_counter() - t:.1f} s "
              f"(child peak RSS {peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB)")

        # (a) then (b), ``--rounds`` times: each round's ratio is of two runs side by side
        # (a shared machine's load moves within seconds); the round of the median ratio is
        # the one reported below.
        from streams import cli

        rounds = []
        profiler = cProfile.Profile() if args.profile else None  # the first round's audit
        for r in range(args.rounds):
            # (a) plain decoding
            loads, from_dict = orjson.loads, codec.from_dict
            t, cpu = time.perf_counter(), time.process_time()
            n = 0
            with open(journal, "rb") as f:
                for line in f:
                    from_dict(loads(line))
                    n += 1
            decode_s, decode_cpu = time.perf_counter() - t, time.process_time() - cpu
            if r == 0:
                rss_decode = peak_rss_mib()

            # (b) the full audit, as an operator runs it
            out, err = io.StringIO(), io.StringIO()
            profiling = profiler is not None and r == 0
            children_before = _children_cpu()
            t, cpu = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if profiling:
                    profiler.enable()
                code = cli.main(["audit", "--config", str(config), "--file", str(journal)])
                if profiling:
                    profiler.disable()
            audit_s, audit_cpu = time.perf_counter() - t, time.process_time() - cpu
            child_cpu = _children_cpu() - children_before
            rss_audit = peak_rss_mib()
            rounds.append((decode_s / audit_s, decode_s, decode_cpu, audit_s, audit_cpu,
                           child_cpu, code, out.getvalue()))
            if args.rounds > 1:
                print(f"round {r + 1}: decode {n / decode_s:,.0f} events/s, audit "
                      f"{n / audit_s:,.0f} events/s, ratio {decode_s / audit_s:.2f}", flush=True)
        ranked = sorted(rounds, key=lambda row: row[0])
        _, decode_s, decode_cpu, audit_s, audit_cpu, child_cpu, code, report = ranked[
            len(ranked) // 2]
        if args.rounds > 1:
            print(f"ratios of the {args.rounds} rounds: "
                  + " / ".join(f"{row[0]:.2f}" for row in rounds) + " (the median one below)")
            # On a shared machine each round's pair is slowed by whatever ran meanwhile; the
            # fastest time of each side is the least disturbed measure of it (as timeit's).
            best_decode, best_audit = min(row[1] for row in rounds), min(row[3] for row in rounds)
            print(f"fastest of the {args.rounds} rounds: decode {best_decode:.2f} s, audit "
                  f"{best_audit:.2f} s, ratio {best_decode / best_audit:.2f}")

        print(report.split("\n\n")[0])
        print(f"audit exit status {code}")
        if code != 0:
            # The generator drives the same core as the workers: a mismatch is a bug in one
            # of them (or in the audit), and the rate below would not be a clean audit's.
            print("WARNING: the audit of the generated journal is not clean; see above")
        print(f"events:            {n:,}")
        print(f"(a) decode:        {n / decode_s:12,.0f} events/s  ({decode_s:.2f} s)")
        print(f"(b) audit:         {n / audit_s:12,.0f} events/s  ({audit_s:.2f} s)")
        print(f"ratio audit/decode: {decode_s / audit_s:.2f}")
        # CPU seconds move less than wall seconds on a shared machine; the audit's forked
        # processes (its two halves, on two cores) are counted apart.
        print(f"CPU:               decode {decode_cpu:.2f} s, audit {audit_cpu:.2f} s "
              f"+ {child_cpu:.2f} s in its forked processes")
        print(f"peak RSS:          {rss_decode:.0f} MiB after decode, {rss_audit:.0f} MiB after audit"
              f" (this process; the largest child so far, generator or audit half: "
              f"{peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB)")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        if args.keep:
            print(f"kept {journal} and {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
