"""The compression sweep's self-contained HTML: two inline SVG scatter plots (metric vs bytes, metric vs latency)
with the Pareto front joined, the budget drawn, the pick ringed, and the table of every trial."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from edgeq.jsontypes import (
    JSONObject,
    as_object,
    get_float,
    get_object,
    get_str,
    get_str_or_none,
    get_strs,
    number_or_none,
)

W, H, PAD = 460, 300, 48
COLORS = {"int8": "#444", "prune": "#1f77b4", "sparse": "#9467bd", "lowrank": "#2ca02c", "cluster": "#ff7f0e",
          "qat": "#d62728"}


class SweepSummary(TypedDict):
    """``sweep.json``: the compression sweep's trials (one JSON row per variant), its pick and Pareto front."""

    metric: str
    pick: str | None
    pareto: list[str]
    variants: list[JSONObject]
    executor: str
    ladders: dict[str, list[float]]
    budget: JSONObject
    formats: list[str]
    compress_train: JSONObject


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def budget_floor(summary: SweepSummary) -> float | None:
    """The lowest metric value inside the budget, when the budget is on that metric."""
    b = summary["budget"]
    rows = summary["variants"]
    if summary["metric"] == "accuracy" and b.get("max_accuracy_drop") is not None:
        ref = next((get_float(r, "reference_accuracy") for r in rows if r.get("reference_accuracy") is not None),
                   None)
        return None if ref is None else ref - get_float(b, "max_accuracy_drop") / 100.0
    floor = number_or_none(b.get("min_top1_agreement"))
    if summary["metric"] == "top1_agreement" and floor is not None:
        return floor
    return None


def scatter(summary: SweepSummary, x_key: str, x_label: str) -> str:
    metric = summary["metric"]
    pts = [r for r in summary["variants"] if r.get(x_key) is not None and r.get(metric) is not None]
    if not pts:
        return f"<p>no measured {html.escape(x_label)}</p>"
    floor = budget_floor(summary)
    xs = [float(get_float(r, x_key)) for r in pts]
    ys = [float(get_float(r, metric)) for r in pts] + ([floor] if floor is not None else [])
    sx = _scale(min(xs) * 0.95, max(xs) * 1.05, PAD, W - 10)
    sy = _scale(min(ys) - 0.01, max(ys) + 0.01, H - PAD, 10)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#000"/>',
             f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#000"/>',
             f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle" font-size="12">{html.escape(x_label)}</text>',
             f'<text x="12" y="{H / 2}" font-size="12" transform="rotate(-90 12 {H / 2})" '
             f'text-anchor="middle">{html.escape(metric)}</text>',
             f'<text x="{PAD}" y="{H - PAD + 14}" font-size="10">{min(xs):,.4g}</text>',
             f'<text x="{W - 10}" y="{H - PAD + 14}" font-size="10" text-anchor="end">{max(xs):,.4g}</text>']
    if floor is not None:
        y = sy(floor)
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - 10}" y2="{y:.1f}" stroke="#c00" stroke-dasharray="5,4"/>'
                     f'<text x="{W - 12}" y="{y - 4:.1f}" font-size="10" fill="#c00" text-anchor="end">budget</text>')
    front = sorted((r for r in pts if get_str(r, "name") in summary["pareto"]), key=lambda r: float(get_float(r, x_key)))
    if len(front) > 1:
        path = " ".join(f"{sx(float(get_float(r, x_key))):.1f},{sy(float(get_float(r, metric))):.1f}" for r in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#888" stroke-width="1.5"/>')
    for r in pts:
        cx, cy = sx(float(get_float(r, x_key))), sy(float(get_float(r, metric)))
        color = COLORS.get(get_str_or_none(r, "method") or "int8", "#000")
        fill = color if r["passed"] else "white"
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{fill}" stroke="{color}" stroke-width="2">'
                     f'<title>{html.escape(get_str(r, "name"))}</title></circle>')
        if r["name"] == summary["pick"]:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="10" fill="none" stroke="#000" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _format_cells(formats: JSONObject) -> str:
    cells = []
    for f, value in formats.items():
        d = as_object(value, f)
        cells.append(f"{f}: {d['bytes']:,} B, {d['latency_ms']:.3f} ms" if d.get("latency_ms") is not None
                     else f"{f}: {d['bytes']:,} B")
    return "; ".join(cells)


def write_sweep_report(summary: SweepSummary, path: Path) -> None:
    metric = summary["metric"]
    rows = []
    for r in summary["variants"]:
        fmts = _format_cells(get_object(r, "formats"))
        val = r.get(metric)
        name = get_str(r, "name")
        rows.append(f"<tr><td>{html.escape(name)}{' ★' if name == summary['pick'] else ''}</td>"
                    f"<td>{'' if val is None else f'{val:.4f}'}</td><td>{html.escape(fmts)}</td>"
                    f"<td>{'pass' if r['passed'] else 'FAIL'}</td>"
                    f"<td>{html.escape('; '.join(get_strs(r, 'failures'))[:300])}</td></tr>")
    pick = summary["pick"] or "none — no variant meets the budget"
    body = (f"<h1>edgeq compression sweep</h1><p>pick: <b>{html.escape(pick)}</b> (smallest, then fastest, inside "
            f"the budget). Ladders: {html.escape(str(summary['ladders']))}; each ladder stops at the first level "
            "that leaves the budget. Filled = inside the budget, hollow = outside, ring = pick, grey line = Pareto "
            "front, dashed red = budget. Bytes and latency are those of the first format's INT8 artifact on the "
            "first runner; the table lists every format.</p>"
            + scatter(summary, "bytes", "bytes") + scatter(summary, "latency_ms", "latency ms")
            + f"<table border=1 cellspacing=0 cellpadding=3><tr><th>variant</th><th>{html.escape(metric)}</th>"
            "<th>per format</th><th>budget</th><th>failures</th></tr>" + "".join(rows) + "</table>")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>edgeq compression sweep</title>"
                    f"<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}</style></head>"
                    f"<body>{body}</body></html>")
