"""``antirelou audit --html FILE``: the audit for an auditor, as one self-contained HTML page.

Per campaign: the verdict of the replay, then per UTC day the texts, replies, spend, credits,
the reasons texts were not answered, and the balance at the end of the day, as tables and
inline SVG charts (no script, no external file: it can be mailed or archived as is). Built
from ``streams.audit.to_json`` data: the same figures as the text report.
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

from streams.console.board import color_of


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(eur: str) -> float:
    return float(Decimal(eur)) if eur not in ("-", None) else 0.0


def _bars(title: str, days: list[str], series: dict[str, list[float]], unit: str) -> str:
    """Stacked bars, one per day."""
    w, h, left = 720, 180, 50
    n = max(1, len(days))
    bw = (w - left) / n
    totals = [sum(s[i] for s in series.values()) for i in range(len(days))]
    top = max(totals, default=0) or 1.0
    out = [f'<svg class="chart" viewBox="0 0 {w} {h + 40}" width="{w}" height="{h + 40}" '
           f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
           f'<text x="{left}" y="12" font-size="12">{_e(title)} (max {_amount(top, unit)})</text>']
    for i, day in enumerate(days):
        y = h + 20
        for name, values in series.items():
            v = values[i]
            if v <= 0:
                continue
            bh = v / top * h
            y -= bh
            out.append(f'<rect x="{left + i * bw + 1:.1f}" y="{y:.1f}" width="{max(1, bw - 2):.1f}" '
                       f'height="{bh:.1f}" fill="{color_of(name)}">'
                       f"<title>{_e(day)} {_e(name)}: {_amount(v, unit)}</title></rect>")
    step = max(1, len(days) // 8)
    for i in range(0, len(days), step):
        out.append(f'<text x="{left + i * bw:.1f}" y="{h + 36}" font-size="10">{_e(days[i])}</text>')
    out.append("</svg>")
    legend = " ".join(f'<span><i style="background:{color_of(name)}"></i>{_e(name)}</span>'
                      for name in series)
    return "".join(out) + f'<div class="legend">{legend}</div>'


def _line(title: str, days: list[str], values: list[float]) -> str:
    w, h, left = 720, 160, 50
    top, low = max(values, default=0), min(values, default=0)
    if top == low:  # a flat line: draw it from zero
        low = 0.0
    span = (top - low) or 1.0
    n = max(1, len(days) - 1)

    def y(v: float) -> float:
        return 20 + h - (v - low) / span * h

    points = " ".join(f"{left + i / n * (w - left - 10):.1f},{y(v):.1f}" for i, v in enumerate(values))
    out = [f'<svg class="chart" viewBox="0 0 {w} {h + 40}" width="{w}" height="{h + 40}" '
           f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
           f'<text x="{left}" y="12" font-size="12">{_e(title)} (EUR {low:,.2f} to '
           f'{top:,.2f})</text>',
           f'<polyline fill="none" stroke="#3867d6" stroke-width="2" points="{points}"/>']
    for i, v in enumerate(values):
        out.append(f'<circle cx="{left + i / n * (w - left - 10):.1f}" cy="{y(v):.1f}" '
                   f'r="2.5" fill="#3867d6"><title>{_e(days[i])}: EUR {v:,.2f}</title></circle>')
    step = max(1, len(days) // 8)
    for i in range(0, len(days), step):
        out.append(f'<text x="{left + i / n * (w - left - 10):.1f}" y="{h + 36}" '
                   f'font-size="10">{_e(days[i])}</text>')
    out.append("</svg>")
    return "".join(out)


def render_html(data: dict[str, Any], source: str, first_mismatch: str | None = None) -> str:
    """``data``: ``streams.audit.to_json(result)``; ``source``: what was audited."""
    ok = data["ok"]
    c = data["counters"]
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>antirelou audit: {_e(source)}</title><style>",
        "body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left}.ok{color:#1e7d32}.bad{color:#b00020}.legend span{margin-right:1em}"
        ".legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}"
        "</style></head><body>",
        "<h1>antirelou audit</h1>",
        f"<p>Journal: {_e(source)}. <strong class=\"{'ok' if ok else 'bad'}\" id=\"verdict\">"
        + ("Every decision reproduced." if ok else f"{c['mismatches']} mismatch(es).")
        + "</strong></p>",
        f"<p>{c['events']:,} events: {c['texts']:,} texts, {c['screenings']:,} screenings "
        f"({c['restated']:,} restated), {c['campaign_events']:,} campaign events decided again, "
        f"{c['redelivered']:,} redelivered, {c['replies_sent']:,} replies sent, "
        f"{c['replies_failed']:,} failed, {c['pending']:,} pending.</p>",
    ]
    if first_mismatch:
        parts.append(f'<p class="bad" id="first-mismatch">First mismatch: {_e(first_mismatch)}</p>')
    for cid, camp in data["campaigns"].items():
        days = [r["day"] for r in camp["days"]]
        totals = camp["totals"]
        reasons = list(totals["suppressed"])
        parts.append(f'<section id="campaign-{_e(cid)}"><h2>Campaign {_e(cid)}</h2>')
        parts.append(f"<p>Budget EUR {_e(camp['budget_eur'])}, reply EUR "
                     f"{_e(_fmt(camp['reply_cost_micros']))} ({_e(camp['reply_segments'])} "
                     f"segment(s)); spent EUR {_e(totals['spent_eur'])}, balance at the end EUR "
                     f"{_e(totals['balance_end_eur'])}"
                     + (f"; the budget ran out on {_e(camp['budget_ran_out'])}"
                        if camp["budget_ran_out"] else "") + ".</p>")
        if days:
            parts.append(_bars("EUR spent per day", days,
                               {"spent": [_num(r["spent_eur"]) for r in camp["days"]]}, "EUR"))
            series = {"replied": [float(r["replies_approved"]) for r in camp["days"]]}
            for reason in reasons:
                series[reason] = [float(r["suppressed"].get(reason, 0)) for r in camp["days"]]
            series["queued"] = [float(r.get("queued", 0)) for r in camp["days"]]
            parts.append(_bars("Texts per day: replied, and why the others were not", days,
                               series, "texts"))
            parts.append(_line("Balance at the end of each day", days,
                               [_num(r["balance_end_eur"]) for r in camp["days"]]))
        head = ["day", "texts", "replies", *reasons, "queued", "spent EUR", "credited EUR", "balance EUR",
                "sent", "failed"]
        parts.append("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
        for r in [*camp["days"], {**totals, "day": "total"}]:
            cells = [r["day"], r["texts_in"], r["replies_approved"],
                     *[r["suppressed"].get(reason, 0) for reason in reasons],
                     r.get("queued", 0), r["spent_eur"], _fmt(r["credited_micros"]), r["balance_end_eur"],
                     r["replies_sent"], r["replies_failed"]]
            parts.append("<tr>" + "".join(f"<td>{_e(x)}</td>" for x in cells) + "</tr>")
        parts.append("</table></section>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _amount(value: float, unit: str) -> str:
    """A bar's value: EUR with cents, texts as whole numbers."""
    return f"EUR {value:,.2f}" if unit == "EUR" else f"{value:,.0f} {unit}"


def _fmt(micros: int | None) -> str:
    if micros is None:
        return "-"
    return f"{Decimal(micros) / 1_000_000:.2f}"


def field_diff(expected: dict[str, Any] | None, recorded: dict[str, Any] | None) -> str:
    """Which fields differ, said in one line: ``balance_after_micros: expected 5, recorded 7``."""
    if expected is None:
        return f"the journal holds a {(recorded or {}).get('type', 'event')} the replay does not decide"
    if recorded is None:
        return f"the replay decides a {expected.get('type', 'event')} the journal does not hold"
    keys = [k for k in {**expected, **recorded} if expected.get(k) != recorded.get(k)]
    if not keys:
        return "the same fields, in another order or count"
    return "; ".join(f"{k}: expected {expected.get(k)!r}, recorded {recorded.get(k)!r}"
                     for k in keys)
