"""The audit's report: per campaign and UTC day tallies, JSON data and the text tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from actors.campaign import reply_cost
from schemas.campaign import Campaign
from schemas.events import (
    MICROS_PER_EUR,
    BudgetCredited,
    PolicyChanged,
    ReplyApproved,
    ReplyCostReconciled,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    ReplyRefunded,
)
from schemas.reasons import (
    ALREADY_ANSWERED,
    BUDGET_EXHAUSTED,
    DENIAL_REASONS,
    DUPLICATE,
    EXPIRED,
    EXPIRY_REASONS,
    SCREENING_REASONS,
)
from streams.audit.results import DAY_MS, AuditResult, CampaignReport, DayStats, Report, WhatIf

# The report's columns of suppressions: duplicates and answered senders first, then the
# campaign's denials and expiries (one column per reason: ``expired:ttl``...), then the other
# screening reasons by name (and any reason not known here, by name, after them).
_REASON_ORDER = {r: i for i, r in enumerate((
    DUPLICATE, ALREADY_ANSWERED, *DENIAL_REASONS, *(f"{EXPIRED}:{r}" for r in EXPIRY_REASONS),
    *sorted(set(SCREENING_REASONS) - {DUPLICATE, ALREADY_ANSWERED})))}


def count_suppressed(s: DayStats, reason: Any) -> None:
    """One more suppression of ``reason`` on a day: a recorded reason that is not a string (a
    tampered journal's "suppress" with no reason, already a mismatch) is counted under its
    repr in brackets, "(None)", so that the report still shows it and sorts its columns."""
    if reason.__class__ is not str:
        reason = f"({reason!r})"
    s.suppressed[reason] = s.suppressed.get(reason, 0) + 1


class Tally:
    """Per campaign, per UTC day counts, from the events given to it."""

    __slots__ = ("flat",)

    def __init__(self) -> None:
        # (campaign id, UTC day number) -> stats; the hot loop inlines the lookup.
        self.flat: dict[tuple[str, int], DayStats] = {}

    def day(self, campaign_id: str, at: int) -> DayStats:
        key = (campaign_id, at // DAY_MS)
        stats = self.flat.get(key)
        if stats is None:
            stats = self.flat[key] = DayStats()
        return stats

    def add(self, flat: dict[tuple[str, int], DayStats]) -> None:
        """Add another tally's counts (a campaign replayed apart) to this one's."""
        for key, other in flat.items():
            s = self.flat.get(key)
            if s is None:
                s = self.flat[key] = DayStats()
            s.texts_in += other.texts_in
            s.queued += other.queued
            s.approved += other.approved
            s.spent_micros += other.spent_micros
            s.credited_micros += other.credited_micros
            s.policy_changes += other.policy_changes
            s.sent += other.sent
            s.failed += other.failed
            for reason, n in other.suppressed.items():
                s.suppressed[reason] = s.suppressed.get(reason, 0) + n

    def add_screening(self, days: dict[tuple[str, int], tuple[int, dict[str, int], int]]) -> None:
        """Add the texts, suppressions and replies sent counted by another tally (the
        screening half of an audit): (campaign, day) -> (texts in, suppressed per reason,
        sent)."""
        for key, (texts_in, reasons, sent) in days.items():
            s = self.flat.get(key)
            if s is None:
                s = self.flat[key] = DayStats()
            s.texts_in += texts_in
            s.sent += sent
            for reason, n in reasons.items():
                s.suppressed[reason] = s.suppressed.get(reason, 0) + n

    def campaign_event(self, ev: Any) -> None:
        """One campaign event: a request's outcome on the day of its text (a release or an
        expiry takes it out of that day's queue), money on the day it moved."""
        t = type(ev)
        s = self.day(ev.campaign_id, ev.occurred_at)
        if t is ReplyApproved:
            s.spent_micros += ev.cost_micros
            if ev.deferred_at is None:
                s.approved += 1
            else:
                came = self.day(ev.campaign_id, ev.deferred_at)
                came.approved += 1
                came.queued -= 1
        elif t is ReplyDeferred:
            s.queued += 1
        elif t is ReplyRefunded:
            s.spent_micros -= ev.refund_micros
        elif t is ReplyCostReconciled:
            s.spent_micros += ev.actual_micros - ev.estimated_micros
        elif t is ReplyDenied:
            count_suppressed(s, ev.reason)
        elif t is ReplyExpired:
            came = self.day(ev.campaign_id, ev.deferred_at)
            came.queued -= 1
            count_suppressed(came, f"{EXPIRED}:{ev.reason}")
        elif t is BudgetCredited:
            s.credited_micros += ev.amount_micros
        elif t is PolicyChanged:
            s.policy_changes += 1

    def report(self, campaigns: dict[str, Campaign], pending: dict[str, int]) -> Report:
        by_campaign: dict[str, dict[int, DayStats]] = {}
        for (cid, d), stats in self.flat.items():
            by_campaign.setdefault(cid, {})[d] = stats
        out: dict[str, CampaignReport] = {}
        for cid in sorted(set(by_campaign) | set(campaigns)):
            c = campaigns.get(cid)
            cost = reply_cost(c) if c is not None else None
            out[cid] = CampaignReport(
                campaign_id=cid,
                budget_micros=c.budget_micros if c is not None else None,
                reply_cost_micros=cost.cost_micros if cost else None,
                reply_segments=cost.segments if cost else None,
                days=by_campaign.get(cid, {}),
                pending=pending.get(cid, 0),
            )
        return Report(out)



# --- rendering ----------------------------------------------------------------------------


def _day_iso(day: int) -> str:
    """ISO date of a day number since 1970-01-01 (proleptic Gregorian; no datetime: pure)."""
    z = day + 719_468  # days since 0000-03-01
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return f"{y:04d}-{m:02d}-{d:02d}"


def _eur(micros: int | None) -> str:
    """Exact EUR from micro-euros: at least 2 decimals, more only when needed."""
    if micros is None:
        return "-"
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_EUR)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"


def _reasons(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=lambda r: (_REASON_ORDER.get(r, len(_REASON_ORDER)), r))


def _campaign_rows(cr: CampaignReport) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    spent = credited = 0
    totals: dict[str, Any] = {"texts_in": 0, "replies_approved": 0, "suppressed": {}, "queued": 0,
                              "policy_changes": 0, "replies_sent": 0, "replies_failed": 0}
    for d in sorted(cr.days):
        s = cr.days[d]
        spent += s.spent_micros
        credited += s.credited_micros
        balance = None if cr.budget_micros is None else cr.budget_micros + credited - spent
        rows.append({
            "day": _day_iso(d),
            "texts_in": s.texts_in,
            "replies_approved": s.approved,
            "suppressed": {r: s.suppressed[r] for r in _reasons(s.suppressed)},
            "queued": s.queued,
            "spent_micros": s.spent_micros,
            "spent_eur": _eur(s.spent_micros),
            "credited_micros": s.credited_micros,
            "policy_changes": s.policy_changes,
            "balance_end_micros": balance,
            "balance_end_eur": _eur(balance),
            "replies_sent": s.sent,
            "replies_failed": s.failed,
        })
        totals["texts_in"] += s.texts_in
        totals["replies_approved"] += s.approved
        totals["queued"] += s.queued
        totals["policy_changes"] += s.policy_changes
        totals["replies_sent"] += s.sent
        totals["replies_failed"] += s.failed
        for r, n in s.suppressed.items():
            totals["suppressed"][r] = totals["suppressed"].get(r, 0) + n
    totals["suppressed"] = {r: totals["suppressed"][r] for r in _reasons(totals["suppressed"])}
    balance = None if cr.budget_micros is None else cr.budget_micros + credited - spent
    totals.update(spent_micros=spent, spent_eur=_eur(spent), credited_micros=credited,
                  balance_end_micros=balance, balance_end_eur=_eur(balance))
    return rows, totals


def _campaign_json(cr: CampaignReport) -> dict[str, Any]:
    rows, totals = _campaign_rows(cr)
    ran_out = next((r["day"] for r in rows if r["suppressed"].get(BUDGET_EXHAUSTED)), None)
    return {
        "budget_micros": cr.budget_micros,
        "budget_eur": _eur(cr.budget_micros),
        "reply_cost_micros": cr.reply_cost_micros,
        "reply_segments": cr.reply_segments,
        "pending": cr.pending,
        "budget_ran_out": ran_out,
        "totals": totals,
        "days": rows,
    }


def _report_json(report: Report) -> dict[str, Any]:
    return {cid: _campaign_json(cr) for cid, cr in sorted(report.campaigns.items())}


def _summary(report: Report) -> dict[str, dict[str, Any]]:
    out = {}
    for cid, data in _report_json(report).items():
        t = data["totals"]
        out[cid] = {
            "texts": t["texts_in"],
            "replies": t["replies_approved"],
            "spent_micros": t["spent_micros"],
            "spent_eur": t["spent_eur"],
            "budget_left_micros": t["balance_end_micros"],
            "budget_left_eur": t["balance_end_eur"],
            "budget_ran_out": data["budget_ran_out"],
        }
    return out


def to_json(x: AuditResult | Report | WhatIf) -> dict[str, Any]:
    """Plain JSON-ready data, deterministic (sorted campaigns, days and reasons)."""
    if isinstance(x, AuditResult):
        return {
            "ok": x.ok,
            "counters": asdict(x.counters),
            "mismatches": [m.to_json() for m in x.mismatches],
            "campaigns": _report_json(x.report),
        }
    if isinstance(x, WhatIf):
        base, other = _summary(x.baseline), _summary(x.alternative)
        return {
            "summary": {cid: {"baseline": base.get(cid), "what_if": other.get(cid)}
                        for cid in sorted(set(base) | set(other))},
            "baseline": _report_json(x.baseline),
            "what_if": _report_json(x.alternative),
        }
    return {"campaigns": _report_json(x)}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _render_report(report: Report) -> list[str]:
    lines: list[str] = []
    for cid, data in _report_json(report).items():
        rows, totals = data["days"], data["totals"]
        head = f"campaign {cid}: "
        if data["budget_micros"] is None:
            head += "not in the config"
        else:
            head += (f"budget EUR {data['budget_eur']}, reply EUR "
                     f"{_eur(data['reply_cost_micros'])} ({data['reply_segments']} segment(s))")
        if data["pending"]:
            head += f", {data['pending']} pending"
        if data["budget_ran_out"]:
            head += f", budget ran out on {data['budget_ran_out']}"
        lines.append(head)
        reasons = list(totals["suppressed"])
        credits = totals["credited_micros"] != 0
        # Each row adds up: its texts are its replies, its suppressions and what is queued.
        header = ["day", "texts", "replies", *reasons, "queued", "spent EUR"]
        header += ["credited EUR"] if credits else []
        outcomes = totals["replies_sent"] + totals["replies_failed"] != 0  # none in a what-if
        header += ["balance EUR"] + (["sent", "failed"] if outcomes else [])
        table = []
        for r in [*rows, {**totals, "day": "total"}]:
            cells = [r["day"], str(r["texts_in"]), str(r["replies_approved"])]
            cells += [str(r["suppressed"].get(reason, 0)) for reason in reasons]
            cells += [str(r["queued"]), r["spent_eur"]]
            cells += [_eur(r["credited_micros"])] if credits else []
            cells += [r["balance_end_eur"]]
            cells += [str(r["replies_sent"]), str(r["replies_failed"])] if outcomes else []
            table.append(cells)
        lines += ["  " + line for line in _table(header, table)]
        lines.append("")
    return lines


def render_text(x: AuditResult | Report | WhatIf) -> str:
    """An aligned, human-readable table (no phone numbers: events hold pseudonyms only)."""
    if isinstance(x, Report):
        return "\n".join(_render_report(x)).rstrip() + "\n"
    if isinstance(x, WhatIf):
        data = to_json(x)["summary"]
        header = ["campaign", "texts", "replies", "what-if", "EUR spent", "what-if",
                  "EUR left", "what-if", "ran out", "what-if"]
        rows = []
        for cid, pair in data.items():
            b = pair["baseline"] or {}
            o = pair["what_if"] or {}
            rows.append([
                cid, str(b.get("texts", o.get("texts", 0))),
                str(b.get("replies", "-")), str(o.get("replies", "-")),
                b.get("spent_eur", "-"), o.get("spent_eur", "-"),
                b.get("budget_left_eur", "-"), o.get("budget_left_eur", "-"),
                b.get("budget_ran_out") or "never", o.get("budget_ran_out") or "never",
            ])
        lines = ["what-if: the journal's texts decided afresh (event-time order), "
                 "config vs other config",
                 "  (both columns replay the texts, the operator commands and a clock tick a "
                 "minute; not the live run's ticks, outages, sends or refunds: with the same "
                 "config they may differ from what the journal holds)",
                 *_table(header, rows), ""]
        lines += ["what-if per day:", *_render_report(x.alternative)]
        return "\n".join(lines).rstrip() + "\n"
    c = x.counters
    verdict = "OK: every decision reproduced" if x.ok else f"FAILED: {c.mismatches} mismatch(es)"
    lines = [
        f"audit {verdict}",
        f"  {c.events} events: {c.texts} texts, {c.screenings} screenings "
        f"({c.restated} restated) and "
        f"{c.campaign_events} campaign events decided again; {c.redelivered} redelivered, "
        f"{c.unknown_campaign} unknown-campaign, {c.pending} pending, "
        f"{c.replies_sent} replies sent, {c.replies_failed} failed",
        *([f"  WARNING: {c.unattempted} approved (paid) replies were never attempted: "
           "a hole in sms-outbound?"] if c.unattempted else []),
        "",
        *_render_report(x.report),
    ]
    if x.mismatches:
        lines.append("mismatches (first 10):")
        for m in x.mismatches[:10]:
            lines.append(f"  #{m.position} {m.kind} {m.message_id}")
    return "\n".join(lines).rstrip() + "\n"
