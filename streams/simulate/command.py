"""``python -m streams.simulate`` (and ``antirelou simulate``): the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.cliparse import (
    Parser,
    bootstrap_servers,
    non_negative_float,
    positive_float,
    positive_int,
)
from schemas.policy import PolicyError, parse_changes
from streams.simulate.drive import Progress, drive_webhook, webhook_problem
from streams.simulate.generation import MICROS_PER_EUR, Scenario, SimText, generate, ground_truth
from streams.simulate.outcomes import (
    FLOOD_RULES,
    Outcome,
    answer_every_text,
    answer_once_per_sender,
    campaign_2017,
    core_runner,
    run_policy,
)
from streams.simulate.report import render_report, write_plot_html

# The surge run's campaign events, as the report names them.
_SURGE_LABELS = {"SurgeStarted": "surges", "ReplyDeferred": "deferred", "released": "released",
                 "ReplyExpired:ttl": "expired (TTL)", "ReplyExpired:queue_full": "pushed out",
                 "ReplyDenied:queue_full": "refused (queue full)",
                 "ReplyDenied:prefix_flood": "prefix_flood"}


def _parser() -> argparse.ArgumentParser:
    import streams.simulate

    parser = Parser(prog="antirelou simulate",
                    description=streams.simulate.__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("launch", "flood-2017", "raid", "slow-drain"),
                        help="run a named scenario through the shipped defaults and the "
                             "baselines (streams/simulate/scenarios.py); without it: the 2017 "
                             "week report")
    parser.add_argument("--grid", action="store_true",
                        help="run the shipped defaults over the grid of traffic shapes "
                             "(streams/simulate/grid.py) beside the baselines")
    parser.add_argument("--seeds", type=positive_int, default=1,
                        help="with --grid: how many seeds per shape (from --seed on)")
    parser.add_argument("--frontier", action="store_true",
                        help="with --grid: also run the raid cells under surge_spend_percent 10, "
                             "25, 50, 75 and 100 and print the trade-off (five times longer)")
    parser.add_argument("--json", action="store_true",
                        help="with --scenario: print one JSON object (scenario, seed, runs); "
                             "with --grid: one JSON object per cell, one per line")
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                        type=bootstrap_servers,
                        help="with --scenario --webhook: read the live journal back from this "
                             "broker [KAFKA_BOOTSTRAP_SERVERS]")
    parser.add_argument("--app-id", default=os.environ.get("ANTIRELOU_APP_ID", "antirelou"),
                        help="the live deployment's app id (its journal: APP_ID.journal)")
    parser.add_argument("--settle-s", type=non_negative_float, default=30,
                        help="seconds to wait after the last text before reading the journal")
    parser.add_argument("--seed", type=int, default=Scenario.seed,
                        help="the random seed: the same seed, the same texts")
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="multiply every sender count (the 2017 week)")
    parser.add_argument("--budget-eur", type=non_negative_float, default=None,
                        help="default: EUR 3,700 x scale")
    parser.add_argument("--reply-cost-eur", type=positive_float, default=None,
                        help="what one reply costs; default: EUR 0.16")
    parser.add_argument("--html", type=Path,
                        help="write the charts to this HTML file (the 2017 week, or --grid)")
    parser.add_argument("--webhook", help="also POST every text to this webhook URL (your own)")
    parser.add_argument("--recipient", help="the campaign number the texts are sent to (digits)")
    parser.add_argument("--rate", type=positive_float, default=None,
                        help="webhook requests per second; default: as fast as it answers")
    parser.add_argument("--unsigned", action="store_true",
                        help="do not sign (default: sign with MESSAGEBIRD_SIGNING_KEY)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--no-policy", action="store_true",
                        help="only the two baselines, not the decision core")
    parser.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE",
                        help="also run the core with these policy changes (operator keys, as "
                             "for `antirelou policy set`, e.g. surge_multiple=5); repeatable")
    return parser


def _run_scenario(args: argparse.Namespace) -> int:
    from streams.simulate import live, scenarios

    if args.webhook:
        return live.main_live(args)
    result = scenarios.run_scenario(args.scenario, args.seed)
    print(scenarios.render(result, args.json))
    return 0


def _run_grid(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from streams.simulate import grid

    try:
        extra = parse_changes(args.policy) if args.policy else {}
    except PolicyError as exc:
        parser.error(str(exc))
    seed = args.seed if args.seed != Scenario.seed else 1
    cells = grid.grid_cells(range(seed, seed + args.seeds))
    progress = None if args.no_progress else sys.stderr
    rows = grid.run_grid(cells, sys.stdout, args.json, progress, extra)
    frontier = None
    if args.frontier:
        from streams.simulate.grid_report import frontier_points, frontier_text

        if progress is not None:
            print("frontier: the raid cells again under surge_spend_percent 10, 25, 50, 75, 100",
                  file=progress, flush=True)
        frontier = frontier_points(cells, lambda c, ch: grid.run_cell(c, {**extra, **ch}))
        print(frontier_text(frontier), file=sys.stderr if args.json else sys.stdout)
    if args.html:
        from streams.simulate.grid_report import write_grid_html

        write_grid_html(rows, args.html, frontier)
        if progress is not None:
            print(f"grid page written to {args.html}", file=progress)
    return 0


def _signing_key(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The webhook's signing key (None: unsigned); a usage error when it cannot be had."""
    if not args.webhook:
        return None
    if not args.recipient:
        parser.error("--webhook needs --recipient")
    key = None if args.unsigned else os.environ.get("MESSAGEBIRD_SIGNING_KEY") or None
    if key is None and not args.unsigned:
        parser.error("set MESSAGEBIRD_SIGNING_KEY or pass --unsigned")
    return key


def _core_outcomes(texts: Sequence[SimText], scenario: Scenario, budget: int, cost: int,
                   extra: Mapping[str, object], surge_stats: dict[str, int]) -> list[Outcome]:
    """The real core's runs: the configured policy, pacing off, the flood rules, --policy."""
    campaign = campaign_2017(scenario, budget)
    began = time.perf_counter()
    outcomes = [run_policy("configured policy", core_runner(campaign), texts, budget,
                           reply_cost_micros=cost)]
    # The same screening without pacing: what the flood rules alone save.
    outcomes.append(run_policy("policy, pacing off", core_runner(campaign, {"pacing": False}),
                               texts, budget, reply_cost_micros=cost))
    # Without pacing, with surge mode and the per-prefix limit (FLOOD_RULES).
    outcomes.append(run_policy(
        "pacing off, surge+prefix",
        core_runner(campaign, {"pacing": False, **FLOOD_RULES}, surge_stats),
        texts, budget, reply_cost_micros=cost))
    if extra:
        outcomes.append(run_policy("--policy", core_runner(campaign, extra), texts, budget,
                                   reply_cost_micros=cost))
    print(f"configured policy: {len(texts):,} texts through the core in "
          f"{time.perf_counter() - began:.2f} s", file=sys.stderr)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.grid:
        return _run_grid(parser, args)
    if args.scenario:
        if args.html:
            parser.error("--html writes the 2017 week's charts or the grid's page; a scenario "
                         "has none (--json gives its numbers)")
        return _run_scenario(args)
    try:
        extra = parse_changes(args.policy) if args.policy else {}
    except PolicyError as exc:
        parser.error(str(exc))
    key = _signing_key(parser, args)
    problem = webhook_problem(args.webhook) if args.webhook else None
    if problem is not None:
        print(f"antirelou: simulate: {problem}", file=sys.stderr)
        return 1

    scenario = Scenario(seed=args.seed, scale=args.scale)
    began = time.perf_counter()
    texts = generate(scenario)
    took = time.perf_counter() - began
    print(f"generated {len(texts):,} texts in {took:.2f} s", file=sys.stderr)
    truth = ground_truth(texts)
    cost = (scenario.reply_cost_micros if args.reply_cost_eur is None
            else round(args.reply_cost_eur * MICROS_PER_EUR))
    budget = round(scenario.budget_micros * args.scale if args.budget_eur is None
                   else args.budget_eur * MICROS_PER_EUR)
    outcomes = [answer_every_text(texts, cost, budget), answer_once_per_sender(texts, cost, budget)]
    surge_stats: dict[str, int] = {}
    if not args.no_policy:
        outcomes += _core_outcomes(texts, scenario, budget, cost, extra, surge_stats)
    report = render_report(outcomes, truth)
    print(report)
    if not args.no_policy:
        print("pacing off, surge+prefix: " + ", ".join(
            f"{label} {surge_stats.get(k, 0):,}" for k, label in _SURGE_LABELS.items()))
    if args.html:
        write_plot_html(outcomes, args.html, flood_window_ms=scenario.flood_window_ms, report=report)
        print(f"charts written to {args.html}", file=sys.stderr)
    if args.webhook:
        with Progress(len(texts), enabled=not args.no_progress) as bar:
            counts = drive_webhook(texts, args.webhook, args.recipient, key, rate_per_s=args.rate,
                                   progress=bar)
        print("webhook answers: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())))
        bad = sum(n for k, n in counts.items() if not k.startswith("2"))
        if bad:
            print(f"antirelou: simulate: {bad:,} webhook answer(s) were not 2xx", file=sys.stderr)
            return 1
    return 0
