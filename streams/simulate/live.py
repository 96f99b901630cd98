"""Live mode: a scenario on its real timeline, posted to a running webhook, then the live
journal read back beside the offline prediction (``simulate --scenario NAME --webhook URL``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from streams.simulate.drive import drive_webhook, webhook_problem
from streams.simulate.generation import MICROS_PER_EUR, SimText
from streams.simulate.scenarios import generate_plan, live_row, render, retimed, run_plan


def drive_timeline(texts: Sequence[SimText], url: str, recipient: str, signing_key: str | None,
                   *, wait: bool = True, clock: Callable[[], float] | None = None,
                   progress: Any = None) -> dict[str, int]:
    """POST each text to ``url`` as MessageBird would. ``wait``: at its own time on the wall
    clock (the scenario's real timeline; ``createdDatetime`` is that time), else as fast as
    the webhook answers. Returns the count of each HTTP status (``"error"``: no answer)."""
    now = clock or time.time
    counts: dict[str, int] = {}
    for text in texts:
        if wait:
            delay = text.at_ms / 1000 - now()
            if delay > 0:
                time.sleep(delay)
        for status, n in drive_webhook([text], url, recipient, signing_key).items():
            counts[status] = counts.get(status, 0) + n
        if progress is not None:
            progress.advance(1)
    return counts


def main_live(args: Any) -> int:
    """``simulate --scenario NAME --webhook URL``: the scenario on its real timeline from now,
    signed like MessageBird; non-zero when any answer is not 2xx; then (with ``--kafka``) the
    live system's decisions read back from the journal beside the offline prediction."""
    key = None if args.unsigned else os.environ.get("MESSAGEBIRD_SIGNING_KEY") or None
    if key is None and not args.unsigned:
        print("antirelou: simulate: set MESSAGEBIRD_SIGNING_KEY or pass --unsigned",
              file=sys.stderr)
        return 2
    problem = webhook_problem(args.webhook)
    if problem is not None:
        print(f"antirelou: simulate: {problem}", file=sys.stderr)
        return 1
    plan = generate_plan(args.scenario, args.seed)
    recipient = args.recipient or plan.campaign.number
    plan = retimed(plan, int(time.time() + 2) * 1000)
    span_min = (plan.texts[-1].at_ms - plan.texts[0].at_ms) / 60_000 if plan.texts else 0
    print(f"antirelou: simulate: {len(plan.texts):,} texts of scenario {plan.name} (seed "
          f"{plan.seed}) over {span_min:.0f} minutes from now to {args.webhook}",
          file=sys.stderr)
    predicted = run_plan(plan)
    counts = drive_timeline(plan.texts, args.webhook, recipient, key, wait=True)
    print("webhook answers: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())))
    rows = [predicted["runs"][0] | {"name": "offline prediction"}]
    if getattr(args, "kafka", None):
        from infra.journal import read_journal

        time.sleep(args.settle_s if getattr(args, "settle_s", None) else 30)
        journal = read_journal(args.kafka, f"{args.app_id}.journal")
        once = predicted["runs"][1]["troll_spend_eur"]
        rows.append(live_row(plan, journal, int(once * MICROS_PER_EUR)))
    print(render({**predicted, "runs": rows}, args.json))
    bad = sum(n for k, n in counts.items() if not k.startswith("2"))
    if bad:
        print(f"antirelou: simulate: {bad:,} webhook answer(s) were not 2xx", file=sys.stderr)
        return 1
    return 0
