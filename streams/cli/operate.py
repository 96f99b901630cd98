"""Operating it live: ``antirelou policy show|set``, ``antirelou budget credit`` and
``antirelou operator new``. Changes and credits are commands through the log, like every
decision, signed with ANTIRELOU_OPERATOR_KEY; a worker answers with the event it applied or
the reason it refused.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infra.config import load_campaigns
from streams.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_REFUSED,
    Help,
    add_common,
    add_signing,
    env,
    eur,
    iso_ms,
    shown,
    talk,
    unknown_campaign,
)

# One line each, for `policy set --help` (README, "Operate it live", has the long form).
POLICY_KEY_HELP = {
    "price_per_segment_eur": "price of one SMS segment (EUR), costs each reply",
    "reserve_eur": "budget floor never spent (EUR)",
    "cooldown_days": "answer a sender again after this many days; never: once",
    "allowed_countries": "ISO codes of the countries answered, e.g. FR,BE",
    "blocked_prefixes": "number ranges never answered, e.g. 33-756,33-757; none",
    "sender_burst": "texts a sender may send at once before he is a flooder",
    "sender_period_minutes": "then one text per this many minutes",
    "filter_test_texts": "true: 'test' and the like are not answered",
    "pacing": "true: the allowance, a token bucket refilled until the end date",
    "allowance_burst_percent": "the bucket holds at most this % of the spendable balance",
    "prefix_burst": "first texts a number range may send at once (off: no limit)",
    "prefix_period_minutes": "then one first text per this many minutes",
    "reply_delay_minutes": "the safety delay: each request is judged this long after its text (30)",
    "surge_multiple": "a minute with this multiple of the baseline starts a surge (5; off)",
    "surge_min_rate": "and at least this many first texts a minute",
    "surge_expected_per_minute": "the baseline's prior: first texts a minute expected",
    "surge_quiet_minutes": "the surge ends after this many quiet minutes",
    "surge_queue": "requests waiting in the queue, at most",
    "surge_watch_minutes": "during a surge a request waits at least this long (flooders show)",
    "surge_ttl_minutes": "a waiting request expires after this long",
    "surge_release_per_minute": "a surge's held-back requests released a minute (0: no limit)",
    "surge_spend_percent": "a surge spends at most this % of the allowance on held-back requests",
}


# --- the command line -----------------------------------------------------------------


def add_budget_parser(sub: Any) -> None:
    p = sub.add_parser("budget", formatter_class=Help, help="credit a campaign's budget (live)")
    bsub = p.add_subparsers(dest="budget_command", required=True, metavar="credit")
    q = bsub.add_parser("credit", help="add AMOUNT EUR to CAMPAIGN's budget", formatter_class=Help)
    add_common(q)
    q.add_argument("campaign", help="campaign id")
    q.add_argument("amount", help="EUR, e.g. 250.00")
    q.add_argument("--source", required=True, help="where the money comes from, e.g. leetchi")
    add_signing(q)


def add_operator_parser(sub: Any) -> None:
    p = sub.add_parser("operator", formatter_class=Help, help="operator credentials")
    osub = p.add_subparsers(dest="operator_command", required=True, metavar="new")
    q = osub.add_parser("new", help="a new operator key pair and its [[operator]] table",
                        formatter_class=Help)
    q.add_argument("name", help="the operator's name")
    q.add_argument("--may", default="policy,budget",
                   help="rights, comma-separated: policy, budget")
    q.add_argument("--campaigns", default=None,
                   help="campaign ids, comma-separated (default: every campaign)")


def add_policy_parser(sub: Any) -> None:
    p = sub.add_parser("policy", formatter_class=Help, help="show or change campaign policies (live)")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="show|set")
    q = psub.add_parser("show", help="each campaign's policy and balance, from the journal",
                        formatter_class=Help)
    add_common(q)
    q.add_argument("campaign", nargs="?", help="only this campaign")
    q.add_argument("--json", action="store_true", help="print JSON")
    keys = "\n".join(f"  {k:<26} {v}" for k, v in POLICY_KEY_HELP.items())
    q = psub.add_parser("set", help="change policy keys of one campaign: key=value ...",
                        formatter_class=Help, epilog="policy keys:\n" + keys)
    add_common(q)
    q.add_argument("campaign", help="campaign id")
    q.add_argument("changes", nargs="+", metavar="key=value",
                   help="e.g. price_per_segment_eur=0.07 reserve_eur=50 cooldown_days=never")
    q.add_argument("--force", action="store_true",
                   help="apply a change that stops every reply (reserve above the balance)")
    add_signing(q)


# --- policy show -------------------------------------------------------------------------


async def _projection(kafka: str, names: dict[str, str], campaigns: list) -> Any:
    """Every campaign rebuilt from the journal with the core the workers use."""
    from infra.journal import iter_records
    from schemas import codec
    from streams.console.metrics import Projection

    projection = Projection(campaigns)
    async for _, _, _, value in iter_records(kafka, names["journal"]):
        try:
            event = codec.decode(value)
        except codec.CodecError:
            continue
        projection.apply(event, getattr(event, "occurred_at", 0))
    return projection


def _policy_lines(cid: str, projection: Any) -> list[str]:
    st = projection.status(cid)
    fig = projection.figures[cid]
    p = st["policy"]
    lines = [
        f"{cid}: policy v{p['version']} ({fig.policy_by}"
        + (f", {iso_ms(fig.policy_at)}" if fig.policy_at else "") + ")",
        f"  balance EUR {eur(st['balance_micros'])}, spent EUR {eur(st['spent_micros'])}, "
        f"credited EUR {eur(st['credited_micros'])}, refunded EUR {eur(st['refunded_micros'])}; "
        f"{st['approved']} replies, {st['denied']} denied; reply {st['reply_segments']} "
        f"{st['reply_encoding']} segment(s) = EUR {eur(st['reply_cost_micros'])}; surge "
        f"{'ON' if st['surge'] else 'off'}, {st['queued']} queued",
    ]
    width = max(len(k) for k in p)
    lines += [f"  {k:<{width}} = {shown(v)}" for k, v in p.items() if k != "version"]
    return lines


def _show_policies(args: argparse.Namespace, names: dict[str, str], campaigns: list) -> int:
    import orjson

    projection = talk(args, _projection(args.kafka, names, campaigns))
    ids = [args.campaign] if args.campaign else [c.id for c in campaigns]
    if args.json:
        status = {cid: {**projection.status(cid),
                        "policy_by": projection.figures[cid].policy_by,
                        "policy_at": projection.figures[cid].policy_at} for cid in ids}
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    for cid in ids:
        print("\n".join(_policy_lines(cid, projection)))
    return EXIT_OK


# --- policy set, budget credit -----------------------------------------------------------


def _stops_replies(cid: str, projection: Any, changes: dict[str, Any]) -> list[str]:
    """Why the policy after these changes answers nobody (empty: it does not)."""
    from actors.campaign import reply_cost
    from schemas.policy import apply_changes

    fig = projection.figures[cid]
    policy = apply_changes(fig.state.policy, changes, fig.state.policy.version + 1)
    balance = fig.state.balance_micros
    cost = reply_cost(fig.campaign, policy).cost_micros
    out = []
    if policy.reserve_micros >= balance:
        out.append(f"reserve EUR {eur(policy.reserve_micros)} is not below the balance EUR "
                   f"{eur(balance)}: no reply can be paid")
    elif balance - policy.reserve_micros < cost:
        out.append(f"balance EUR {eur(balance)} minus the reserve EUR "
                   f"{eur(policy.reserve_micros)} is less than one reply (EUR {eur(cost)})")
    if "allowed_countries" in changes and not policy.allowed_countries:
        out.append("allowed_countries is empty: no number is answered")
    queued = projection.status(cid)["queued"]
    if out and queued:
        ttl = policy.surge_ttl_ms // 60_000
        out.append(f"{queued:,} request(s) waiting in the queue are not paid while it holds, "
                   "and new texts are refused; none is expired by this change: those still "
                   f"waiting {ttl} minutes after their text (surge_ttl_minutes) expire")
    return out


def _same(before: Any, after: Any) -> bool:
    """Whether a change leaves every value as it was (then no new version is made)."""
    import dataclasses

    return dataclasses.replace(after, version=before.version) == before


def operate(args: argparse.Namespace) -> int:
    """``policy show|set`` and ``budget credit``: through the log, like every decision."""
    from schemas.policy import PolicyError, parse_changes, parse_eur
    from streams.app import topic_names
    from streams.cli import control

    names = topic_names(args.app_id)
    campaigns = load_campaigns(args.config)
    known = {c.id for c in campaigns}
    if getattr(args, "campaign", None) and args.campaign not in known:
        print(unknown_campaign(args.campaign, known), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "policy" and args.policy_command == "show":
        return _show_policies(args, names, campaigns)
    changes: dict[str, Any] = {}
    try:
        if args.command == "policy":
            changes = parse_changes(args.changes)
            command = control.new_change(args.campaign, changes, args.operator)
        else:
            amount = parse_eur(args.amount, "amount", positive=True)
            command = control.new_credit(args.campaign, amount, args.source, args.operator)
    except PolicyError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    before = None
    if args.command == "policy":
        from schemas.policy import apply_changes, policy_problem

        projection = talk(args, _projection(args.kafka, names, campaigns))
        before = projection.figures[args.campaign].state.policy
        after = apply_changes(before, changes, before.version + 1)
        problem = policy_problem(after)
        if problem is not None:
            print(f"antirelou: {args.campaign}: {problem}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if _same(before, after):
            print(f"{args.campaign}: nothing sent: policy v{before.version} already has "
                  + ", ".join(args.changes))
            return EXIT_OK
        problems = _stops_replies(args.campaign, projection, changes)
        for problem in problems:
            print(f"antirelou: {'warning: ' if args.force else ''}{args.campaign}: {problem}",
                  file=sys.stderr)
        if problems and not args.force:
            print("antirelou: not sent: this change stops every reply (pass --force to apply "
                  "it anyway)", file=sys.stderr)
            return EXIT_BAD_INPUT
    wire = sign_for(args, command, known)
    if wire is None:
        return EXIT_BAD_INPUT
    answer = talk(args, control.submit(args.kafka, names, command, wire=wire))
    if answer is not None and answer.TYPE == "PolicyChanged" and not talk(
            args, control.published(args.kafka, names, answer)):
        print(f"antirelou: {answer.campaign_id}: policy v{answer.version} is decided and "
              "journaled, but NOT in force yet: the workers' screening has not been given it "
              "(a worker repairs this from the journal; check /health policy_versions)",
              file=sys.stderr)
        return EXIT_NO_ANSWER
    return _say_answer(answer, before)


def _say_answer(answer: Any, before: Any) -> int:
    """The worker's answer to a command, in one line; the exit status it means."""
    from schemas.policy import apply_changes, describe

    if answer is None:
        print("antirelou: the command is stored but no worker answered within 15 s; it applies "
              "when a worker runs (check with `antirelou policy show`)", file=sys.stderr)
        return EXIT_NO_ANSWER
    if answer.TYPE == "ControlRefused":
        print(f"antirelou: refused (operator {answer.operator!r}): {answer.reason}",
              file=sys.stderr)
        return EXIT_REFUSED
    if answer.TYPE == "ControlRejected":
        print(f"antirelou: refused: {answer.reason}", file=sys.stderr)
        return EXIT_REFUSED
    if answer.TYPE == "PolicyChanged":
        old = describe(before) if before is not None else {}
        new = describe(apply_changes(before, answer.changes, answer.version)) if before else {}
        diff = ", ".join(f"{k} {shown(old[k])} -> {shown(new[k])}" for k in new
                         if k != "version" and old.get(k) != new[k])
        print(f"{answer.campaign_id}: policy v{answer.version} in force ({answer.operator})"
              + (f": {diff}" if diff else ": no value changed"))
    else:
        print(f"{answer.campaign_id}: credited EUR {eur(answer.amount_micros)} from "
              f"{answer.source}; balance EUR {eur(answer.balance_after_micros)}")
    return EXIT_OK


def sign_for(args: argparse.Namespace, command, campaign_ids: set[str]) -> bytes | None:
    """The command's wire bytes, signed with ANTIRELOU_OPERATOR_KEY; None (said why) if not."""
    from infra.operators import NO_OPERATORS, OperatorKeyError, load_operators, sign_command
    from schemas import codec

    key = env("ANTIRELOU_OPERATOR_KEY")
    if key is None:
        if args.insecure_dev:
            print("antirelou: *** INSECURE DEV: sending the command UNSIGNED; only a worker "
                  "started with --insecure-dev and no [[operator]] applies it ***",
                  file=sys.stderr)
            return codec.encode(command)
        operators = load_operators(args.config, campaign_ids)
        if not operators:
            print(f"antirelou: {NO_OPERATORS} ({args.config} declares none; a development "
                  "deployment started with --insecure-dev takes unsigned commands with "
                  "--insecure-dev)", file=sys.stderr)
        else:
            print("antirelou: operator commands must be signed: set ANTIRELOU_OPERATOR_KEY to "
                  f"your operator private key (operators in {args.config}: "
                  f"{', '.join(sorted(operators))}) and --operator / ANTIRELOU_OPERATOR to "
                  "your name", file=sys.stderr)
        return None
    try:
        return codec.encode(sign_command(command, key, args.app_id))
    except OperatorKeyError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return None


# --- operator new ------------------------------------------------------------------------


def _stdout_private() -> None:
    """The private key is printed: when the output goes to a file (``operator new alice >
    alice.txt``, as the README does), that file is made 0600 before the key is written (the
    shell created it 0644). Said on stderr when it cannot be."""
    import io
    import os
    import stat

    try:
        fd = sys.stdout.fileno()
    except (io.UnsupportedOperation, ValueError):  # not a file at all (a test's capture)
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
    except OSError as exc:  # a file of another user's
        print(f"antirelou: WARNING the output holds a private key and could not be made "
              f"private ({type(exc).__name__}): chmod 600 it", file=sys.stderr)


def new_operator(args: argparse.Namespace) -> int:
    """``operator new NAME``: a key pair; the private key for the operator, the table for
    the campaign file."""
    import json

    from infra.operators import RIGHTS, new_key_pair

    may = [m.strip() for m in args.may.split(",") if m.strip()]
    if not may or not set(may) <= set(RIGHTS):
        print(f"antirelou: --may takes some of {', '.join(sorted(RIGHTS))}", file=sys.stderr)
        return 2
    if not args.name.strip() or not args.name.isprintable() or '"' in args.name:
        print("antirelou: the operator name must be printable, without quotes", file=sys.stderr)
        return 2
    _stdout_private()
    private, public = new_key_pair()
    campaigns = ([c.strip() for c in args.campaigns.split(",") if c.strip()]
                 if args.campaigns else None)
    print(f"# Private key of operator {args.name}: give it to {args.name} only, who sets\n"
          f"#   export ANTIRELOU_OPERATOR_KEY={private}\n"
          f"#   export ANTIRELOU_OPERATOR={args.name}\n"
          "# Add this table to the campaign file, then restart the workers:\n"
          "[[operator]]\n"
          f'name = "{args.name}"\n'
          f'public_key = "{public}"\n'
          f"may = {json.dumps(may)}"
          + ("" if campaigns is None else
             f"\ncampaigns = {json.dumps(campaigns)}"))
    return 0
