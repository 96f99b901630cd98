"""The side-by-side report of outcomes, and their charts (one HTML file, inline SVG, no JS)."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from streams.simulate.generation import DAY_MS, HOUR_MS, KINDS, MICROS_PER_EUR, MINUTE_MS
from streams.simulate.outcomes import Outcome


def format_eur(micros: int) -> str:
    return f"{micros / MICROS_PER_EUR:,.2f}"


def format_day_time(at_ms: int | None, start_ms: int) -> str:
    """``"day 3 22:41"`` (day 1 starts at ``start_ms``), or ``"never"`` for None."""
    if at_ms is None:
        return "never"
    day, within = divmod(at_ms - start_ms, DAY_MS)
    return f"day {day + 1} {within // HOUR_MS:02d}:{within % HOUR_MS // MINUTE_MS:02d}"


REPORT_ROWS = ("budget EUR", "EUR spent", "texts answered", "genuine senders answered",
               "testers answered", "troll spend EUR", "budget ran out")


def render_report(outcomes: Sequence[Outcome], truth: Mapping[str, Mapping[str, int]]) -> str:
    """The outcomes side by side as an aligned text table, under a ground-truth summary."""

    def share(n: int, total: int) -> str:
        return f"{n:,} ({100 * n / total:.1f}%)" if total else f"{n:,}"

    genuine_total = truth["genuine"]["senders"]
    tester_total = truth["tester"]["senders"]
    columns = [[
        format_eur(o.budget_micros),
        format_eur(o.eur_spent),
        f"{o.texts_answered:,}",
        share(o.genuine_senders_answered, genuine_total),
        share(o.testers_answered, tester_total),
        format_eur(o.troll_spend_micros),
        format_day_time(o.budget_ran_out_at_ms, o.start_ms),
    ] for o in outcomes]
    label_w = max(len(r) for r in REPORT_ROWS)
    widths = [max(len(o.name), *(len(c) for c in col)) for o, col in zip(outcomes, columns, strict=True)]

    def line(label: str, cells: Sequence[str]) -> str:
        return "  ".join([label.ljust(label_w), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))])

    summary = ", ".join(f"{kind} {truth[kind]['texts']:,} texts / {truth[kind]['senders']:,} senders"
                        for kind in KINDS)
    lines = [f"texts: {truth['total']['texts']:,} from {truth['total']['senders']:,} senders ({summary})",
             "", line("", [o.name for o in outcomes]),
             line("-" * label_w, ["-" * w for w in widths])]
    lines += [line(label, [col[i] for col in columns]) for i, label in enumerate(REPORT_ROWS)]
    return "\n".join(line.rstrip() for line in lines) + "\n"


# --------------------------------------------------------------------------- plot

_COLORS = ("#c0392b", "#2471a3", "#1e8449", "#8e44ad", "#d68910", "#17202a")


def _nice_max(value: float) -> tuple[float, float]:
    """(axis max, tick step) with about 5 ticks at 1/2/5 x 10^k."""
    if value <= 0:
        return 1.0, 0.2
    raw = value / 5
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    top = step * -(-value // step)
    return top, step


def _fmt_tick(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:g}"


def _chart(outcomes: Sequence[Outcome], title: str, pick: Callable[[tuple[int, int, int]], float],
           flood: tuple[int, int] | None, hline: tuple[float, str] | None) -> str:
    w, h, left, right, top, bottom = 900, 340, 80, 20, 30, 40
    pw, ph = w - left - right, h - top - bottom
    x0 = min(o.start_ms for o in outcomes)
    x1 = max([o.series[-1][0] for o in outcomes if o.series] + [x0 + DAY_MS])
    x1 = x0 + -(-(x1 - x0) // DAY_MS) * DAY_MS  # whole days
    ymax = max([pick(p) for o in outcomes for p in o.series] + [hline[0] if hline else 0])
    ytop, ystep = _nice_max(ymax)

    def sx(ms: int) -> float:
        return left + pw * (ms - x0) / (x1 - x0)

    def sy(v: float) -> float:
        return top + ph - ph * v / ytop

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>']
    if flood:
        fx0, fx1 = sx(max(flood[0], x0)), sx(min(flood[1], x1))
        parts.append(f'<rect class="flood" x="{fx0:.1f}" y="{top}" width="{max(fx1 - fx0, 2):.1f}" '
                     f'height="{ph}" fill="#f5b7b1" fill-opacity="0.45"/>')
        parts.append(f'<text x="{fx0 + 3:.1f}" y="{top + ph - 6}" font-size="11" fill="#922b21">flood</text>')
    v = 0.0
    while v <= ytop + ystep / 1000:
        y = sy(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{_fmt_tick(v)}</text>')
        v += ystep
    for d in range(int((x1 - x0) // DAY_MS) + 1):
        x = sx(x0 + d * DAY_MS)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        if d < (x1 - x0) // DAY_MS:
            parts.append(f'<text x="{sx(x0 + d * DAY_MS + DAY_MS // 2):.1f}" y="{top + ph + 16}" '
                         f'font-size="11" text-anchor="middle">day {d + 1}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    if hline:
        y = sy(hline[0])
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" '
                     f'stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{left + pw - 4}" y="{y - 4:.1f}" font-size="11" text-anchor="end">'
                     f'{html.escape(hline[1])}</text>')
    colors = [_COLORS[i % len(_COLORS)] for i in range(len(outcomes))]
    for o, color in zip(outcomes, colors, strict=True):
        points = " ".join(f"{sx(p[0]):.1f},{sy(pick(p)):.1f}" for p in o.series)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
    legend_w = 40 + 7 * max(len(o.name) for o in outcomes)
    parts.append(f'<rect x="{left + 6}" y="{top + 4}" width="{legend_w}" height="{18 * len(outcomes) + 4}" '
                 f'fill="#fff" fill-opacity="0.85" stroke="#ccc"/>')
    for i, (o, color) in enumerate(zip(outcomes, colors, strict=True)):
        ly = top + 16 + 18 * i
        parts.append(f'<rect x="{left + 12}" y="{ly - 5}" width="14" height="4" fill="{color}"/>')
        parts.append(f'<text x="{left + 32}" y="{ly}" font-size="12">{html.escape(o.name)}</text>')
    parts.append(f'<text x="{left}" y="{top - 10}" font-size="13" font-weight="bold">'
                 f'{html.escape(title)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_plot_html(outcomes: Sequence[Outcome], path: str | os.PathLike[str], *,
                    title: str = "antirelou flood simulation",
                    flood_window_ms: tuple[int, int] | None = None,
                    report: str | None = None) -> Path:
    """One self-contained HTML file: cumulative EUR spent and cumulative genuine senders
    answered over time, one line per outcome, the flood shaded (default: the outcomes' own
    flood window). Optionally embeds a text report. Returns the path written."""
    if not outcomes:
        raise ValueError("nothing to plot")
    flood = flood_window_ms or next((o.flood_window_ms for o in outcomes if o.flood_window_ms), None)
    budgets = {o.budget_micros for o in outcomes}
    budget_line = ((budgets.pop() / MICROS_PER_EUR, "budget") if len(budgets) == 1
                   and 0 < next(iter(budgets)) else None)
    spend = _chart(outcomes, "Cumulative EUR spent", lambda p: p[1] / MICROS_PER_EUR, flood, budget_line)
    people = _chart(outcomes, "Cumulative genuine senders answered", lambda p: p[2], flood, None)
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:24px;color:#17202a}"
        "svg{display:block;margin:12px 0}pre{background:#f8f9f9;padding:12px}</style>",
        "</head>", "<body>", f"<h1>{html.escape(title)}</h1>", spend, people,
        f"<pre>{html.escape(report)}</pre>" if report else "", "</body>", "</html>", "",
    ])
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
