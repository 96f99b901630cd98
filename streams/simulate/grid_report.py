"""The grid's page and its frontier: one self-contained HTML file (inline SVG, no script).

``write_grid_html(rows, path, frontier)``: every cell as a point (troll spend in % of what
answering each troll number once costs, against the genuine pests answered), the cells
that miss a target marked, a table of every cell; with ``frontier`` (``frontier_points``:
the same raid cells run under several ``surge_spend_percent``), the trade-off the spend
bound sets between the genuine pests answered inside raids and what the raids cost, as lines.
``frontier_text`` draws the frontier in text, for the README.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SPEND_PERCENTS = (10, 25, 50, 75, 100)


def troll_share(run: Mapping[str, Any]) -> float | None:
    once = run["answer_once_troll_spend_eur"]
    return None if not once else run["troll_spend_eur"] / once


def frontier_points(cells: Sequence[Any], run_cell: Any,
                    percents: Sequence[int] = SPEND_PERCENTS) -> dict[str, list[tuple[int, float, float]]]:
    """``{"mimic" | "not mimic": [(percent, genuine inside raids, troll share), ...]}``: the
    means over the raid cells of ``cells`` run with ``surge_spend_percent`` at each percent."""
    out: dict[str, list[tuple[int, float, float]]] = {"mimic": [], "not mimic": []}
    raid_cells = [c for c in cells if c.raid != "none"]
    for percent in percents:
        for mimic in (True, False):
            inside, trolls = [], []
            for cell in (c for c in raid_cells if c.mimic == mimic):
                d = run_cell(cell, {"surge_spend_percent": percent})["default"]
                if d["genuine_answered_inside_raid"] is not None:
                    inside.append(d["genuine_answered_inside_raid"])
                share = troll_share(d)
                if share is not None:
                    trolls.append(share)
            if inside and trolls:
                out["mimic" if mimic else "not mimic"].append(
                    (percent, sum(inside) / len(inside), sum(trolls) / len(trolls)))
    return out


def frontier_text(points: Mapping[str, list[tuple[int, float, float]]]) -> str:
    lines = ["surge_spend_percent  raids       genuine inside   troll spend (x answer-once)"]
    for kind, rows in points.items():
        for percent, inside, troll in rows:
            lines.append(f"{percent:>19}  {kind:<10}  {inside:>14.1%}   {troll:>10.1%}")
    return "\n".join(lines)


def _svg(rows: Sequence[Mapping[str, Any]],
         frontier: Mapping[str, list[tuple[int, float, float]]] | None) -> str:
    w, h, pad = 640, 360, 48

    def x(v: float) -> float:
        return pad + min(1.1, max(0.0, v)) / 1.1 * (w - 2 * pad)

    def y(v: float) -> float:
        return h - pad - max(0.0, min(1.0, v)) * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
             f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle" font-size="12">troll spend, '
             f'x what answering each troll number once costs</text>',
             f'<text x="14" y="{h / 2}" font-size="12" transform="rotate(-90 14 {h / 2})" '
             f'text-anchor="middle">genuine pests answered</text>']
    for t in (0, 0.15, 0.5, 1.0):
        parts.append(f'<text x="{x(t)}" y="{h - pad + 16}" font-size="10" text-anchor="middle">'
                     f'{t:.0%}</text>')
        parts.append(f'<line x1="{x(t)}" y1="{pad}" x2="{x(t)}" y2="{h - pad}" stroke="#ddd"/>')
    for t in (0.3, 0.95):
        parts.append(f'<text x="{pad - 6}" y="{y(t) + 4}" font-size="10" text-anchor="end">'
                     f'{t:.0%}</text>')
        parts.append(f'<line x1="{pad}" y1="{y(t)}" x2="{w - pad}" y2="{y(t)}" stroke="#ddd"/>')
    for row in rows:
        d = row["default"]
        share = troll_share(d)
        genuine = d["genuine_answered_inside_raid"] if share is not None else None
        if share is None or genuine is None:
            continue
        colour = "#c0392b" if row["missed"] else "#2e86c1"
        shape = "rect" if row["cell"]["mimic"] else "circle"
        cx, cy = x(share), y(genuine)
        title = html.escape(f"{row['cell']['name']} seed {row['cell']['seed']}: genuine inside "
                            f"{genuine:.0%}, troll {share:.0%}" + (f"; missed {row['missed']}"
                                                                   if row["missed"] else ""))
        if shape == "circle":
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}">'
                         f'<title>{title}</title></circle>')
        else:
            parts.append(f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" '
                         f'fill="{colour}"><title>{title}</title></rect>')
    for kind, colour in (("mimic", "#7d3c98"), ("not mimic", "#117a65")):
        points = (frontier or {}).get(kind, [])
        if len(points) > 1:
            path = " ".join(f"{x(t):.1f},{y(g):.1f}" for _, g, t in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"><title>frontier, {kind}</title></polyline>')
            for percent, g, t in points:
                parts.append(f'<text x="{x(t) + 5:.1f}" y="{y(g) - 5:.1f}" font-size="9" '
                             f'fill="{colour}">{percent}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_grid_html(rows: Sequence[Mapping[str, Any]], path: Path,
                    frontier: Mapping[str, list[tuple[int, float, float]]] | None = None) -> None:
    """The page: the chart, then every cell with what it missed."""
    met = sum(1 for r in rows if not r["missed"])
    cells = []
    for r in rows:
        d = r["default"]
        share = troll_share(d)
        cells.append("<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                     "<td>{}</td></tr>".format(
                         ' class="missed"' if r["missed"] else "",
                         html.escape(r["cell"]["name"]), r["cell"]["seed"],
                         _pct(d["genuine_answered_outside_raid"]),
                         _pct(d["genuine_answered_inside_raid_words_differ"]),
                         "-" if share is None else f"{share:.0%}",
                         _minutes(d["genuine_wait_p95_minutes"]),
                         html.escape("; ".join(r["missed"]) or "-")))
    legend = ("Circles: raids that do not mimic pests; squares: raids that do. Red: a target "
              "missed. Lines: the frontier (each point a surge_spend_percent).")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>antirelou simulate --grid</title><style>
body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}tr.missed td{{background:#fdecea}}
</style></head><body><h1>The grid: {met} of {len(rows)} cells meet every target</h1>
<p>{legend}</p>{_svg(rows, frontier)}
<table><tr><th>cell</th><th>seed</th><th>genuine outside raids</th>
<th>inside (words differ)</th><th>troll spend / answer-once</th><th>p95 wait (min)</th>
<th>missed</th></tr>{"".join(cells)}</table></body></html>
"""
    path.write_text(page)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _minutes(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"
