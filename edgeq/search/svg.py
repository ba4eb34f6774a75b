"""Tiny dependency-free SVG charts for the HTML report (horizontal bars, trade-off scatter with a Pareto front)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from edgeq.report.plots import Axes
from edgeq.select.rule import pareto_front


def _e(x: object) -> str:
    return html.escape(str(x))


def hbar_chart(labels: Sequence[str], values: Sequence[float], title: str, unit: str, width: int = 640) -> str:
    """One bar per label, longest = largest value."""
    if not labels:
        return ""
    row, left, pad = 18, 230, 40
    h = row * len(labels) + 40
    vmax = max(max(values), 1e-9)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h}' role='img' "
           f"aria-label='{_e(title)}' style='font:11px system-ui,sans-serif'>",
           f"<text x='4' y='14' font-weight='600'>{_e(title)}</text>"]
    span = width - left - pad
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        w = max(1.0, span * v / vmax)
        out.append(f"<text x='{left - 6}' y='{y + 12}' text-anchor='end'>{_e(lab[:38])}</text>"
                   f"<rect x='{left}' y='{y + 2}' width='{w:.1f}' height='{row - 5}' fill='#cf222e' opacity='.75'/>"
                   f"<text x='{left + w + 4:.1f}' y='{y + 12}'>{v:.1f}{_e(unit)}</text>")
    out.append("</svg>")
    return "".join(out)


def scatter(points: Sequence[tuple[float, float]], labels: Sequence[str], axes: Axes, pick: int | None = None,
            width: int = 560, height: int = 340) -> str:
    """Trade-off scatter: Pareto front joined by a line, the budget's pick ringed (``axes.x_fmt`` is not used: the
    ticks are ``.3g``)."""
    if not points:
        return ""
    x_label, y_label, title, log_x = axes.x_label, axes.y_label, axes.title, axes.log_x
    ml, mr, mt, mb = 60, 20, 28, 44
    xs = [math.log10(max(p[0], 1e-12)) if log_x else p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 1, x1 + 1
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.01, y1 + 0.01
    xpad, ypad = (x1 - x0) * 0.06, (y1 - y0) * 0.08
    x0, x1, y0, y1 = x0 - xpad, x1 + xpad, y0 - ypad, y1 + ypad

    def sx(v: float) -> float:
        return ml + (v - x0) / (x1 - x0) * (width - ml - mr)

    def sy(v: float) -> float:
        return height - mb - (v - y0) / (y1 - y0) * (height - mt - mb)

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
           f"aria-label='{_e(title)}' style='font:11px system-ui,sans-serif'>",
           f"<text x='4' y='14' font-weight='600'>{_e(title)}</text>",
           f"<line x1='{ml}' y1='{height - mb}' x2='{width - mr}' y2='{height - mb}' stroke='#57606a'/>",
           f"<line x1='{ml}' y1='{mt}' x2='{ml}' y2='{height - mb}' stroke='#57606a'/>",
           f"<text x='{(ml + width - mr) / 2}' y='{height - 8}' text-anchor='middle'>{_e(x_label)}</text>",
           f"<text x='12' y='{(mt + height - mb) / 2}' text-anchor='middle' "
           f"transform='rotate(-90 12 {(mt + height - mb) / 2})'>{_e(y_label)}</text>"]
    for k in range(5):  # axis ticks
        xv, yv = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        xt = 10 ** xv if log_x else xv
        out.append(f"<text x='{sx(xv):.1f}' y='{height - mb + 14}' text-anchor='middle'>{xt:.3g}</text>"
                   f"<text x='{ml - 4}' y='{sy(yv) + 4:.1f}' text-anchor='end'>{yv:.4g}</text>")
    front = pareto_front(list(zip(xs, ys, strict=True)))
    if len(front) > 1:
        path = " ".join(f"{sx(xs[i]):.1f},{sy(ys[i]):.1f}" for i in front)
        out.append(f"<polyline points='{path}' fill='none' stroke='#1a7f37' stroke-width='1.5' stroke-dasharray='4 3'/>")
    for i, lab in enumerate(labels):
        on = i in front
        out.append(f"<circle cx='{sx(xs[i]):.1f}' cy='{sy(ys[i]):.1f}' r='{5 if on else 4}' "
                   f"fill='{'#1a7f37' if on else '#8c959f'}'><title>{_e(lab)}</title></circle>"
                   f"<text x='{sx(xs[i]) + 7:.1f}' y='{sy(ys[i]) - 5:.1f}' fill='#57606a'>{_e(lab[:22])}</text>")
    if pick is not None and 0 <= pick < len(points):
        out.append(f"<circle cx='{sx(xs[pick]):.1f}' cy='{sy(ys[pick]):.1f}' r='10' fill='none' stroke='#0969da' "
                   f"stroke-width='2.5'><title>budget pick: {_e(labels[pick])}</title></circle>")
    out.append(f"<text x='{width - mr}' y='{mt - 10}' text-anchor='end' fill='#57606a'>green: Pareto front · "
               f"blue ring: the budget's pick</text></svg>")
    return "".join(out)
