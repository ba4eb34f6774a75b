"""Dependency-free inline SVG charts that stay readable: points are numbered (names go in an HTML legend, never
truncated), labels of points that land on the same spot are merged instead of overprinted, the budget is drawn
as a line with the failing side shaded, and every chart scales down to its container (viewBox, max-width)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

CHAR_W = 6.4  # px per character at the 11 px font used below (a generous estimate: no clipped labels)


def _e(x: object) -> str:
    return html.escape(str(x))


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    name: str
    kind: str = "artifact"  # "float" | "artifact" | "trial": colour and size


@dataclass(frozen=True)
class BudgetLine:
    y: float
    label: str
    higher_is_better: bool = True


_COLOURS = {"float": "#0969da", "artifact": "#1a7f37", "trial": "#8c959f"}


def _svg_open(width: int, height: int, title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='{width}' "
            f"height='{height}' style='max-width:100%;height:auto;font:11px system-ui,sans-serif' role='img' "
            f"aria-label='{_e(title)}'><title>{_e(title)}</title>"
            f"<text x='4' y='14' font-weight='600'>{_e(title)}</text>")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def scatter(points: Sequence[Point], x_label: str, y_label: str, title: str, budget: BudgetLine | None = None,
            log_x: bool = False, width: int = 600, height: int = 360) -> str:
    """Numbered points; ``budget`` draws a dashed line and shades the side that fails it."""
    if not points:
        return ""
    ml, mr, mt, mb = 64, 24, 30, 46

    def fx(v: float) -> float:
        return math.log10(max(v, 1e-12)) if log_x else v

    xs = [fx(p.x) for p in points]
    ys = [p.y for p in points] + ([budget.y] if budget else [])
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - (abs(x0) * 0.1 or 1), x1 + (abs(x1) * 0.1 or 1)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - (abs(y0) * 0.01 or 0.01), y1 + (abs(y1) * 0.01 or 0.01)
    xp, yp = (x1 - x0) * 0.08, (y1 - y0) * 0.12
    x0, x1, y0, y1 = x0 - xp, x1 + xp, y0 - yp, y1 + yp
    pw, ph = width - ml - mr, height - mt - mb

    def sx(v: float) -> float:
        return ml + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return mt + ph - (v - y0) / (y1 - y0) * ph

    out = [_svg_open(width, height, title)]
    if budget is not None:
        by = sy(budget.y)
        top, bottom = (by, mt + ph) if budget.higher_is_better else (mt, by)
        out.append(f"<rect class='fail-zone' x='{ml}' y='{top:.1f}' width='{pw}' height='{max(0.0, bottom - top):.1f}' "
                   "fill='#cf222e' opacity='.07'/>")
        out.append(f"<line class='budget-line' x1='{ml}' y1='{by:.1f}' x2='{ml + pw}' y2='{by:.1f}' stroke='#cf222e' "
                   f"stroke-width='1.5' stroke-dasharray='6 4'><title>{_e(budget.label)}</title></line>")
        ty = by - 5 if budget.higher_is_better else by + 13
        out.append(f"<text x='{ml + pw - 4}' y='{ty:.1f}' text-anchor='end' fill='#cf222e'>{_e(budget.label)}</text>")
    out.append(f"<line x1='{ml}' y1='{mt + ph}' x2='{ml + pw}' y2='{mt + ph}' stroke='#57606a'/>"
               f"<line x1='{ml}' y1='{mt}' x2='{ml}' y2='{mt + ph}' stroke='#57606a'/>")
    for t in _nice_ticks(x0, x1):
        label = f"{10 ** t:.3g}" if log_x else f"{t:.3g}"
        out.append(f"<line x1='{sx(t):.1f}' y1='{mt + ph}' x2='{sx(t):.1f}' y2='{mt + ph + 4}' stroke='#57606a'/>"
                   f"<text x='{sx(t):.1f}' y='{mt + ph + 16}' text-anchor='middle'>{label}</text>")
    for t in _nice_ticks(y0, y1):
        out.append(f"<line x1='{ml - 4}' y1='{sy(t):.1f}' x2='{ml}' y2='{sy(t):.1f}' stroke='#57606a'/>"
                   f"<text x='{ml - 6}' y='{sy(t) + 4:.1f}' text-anchor='end'>{t:.4g}</text>")
    out.append(f"<text x='{ml + pw / 2}' y='{height - 8}' text-anchor='middle'>{_e(x_label)}</text>"
               f"<text x='14' y='{mt + ph / 2}' text-anchor='middle' "
               f"transform='rotate(-90 14 {mt + ph / 2})'>{_e(y_label)}</text>")
    # Points within 10 px of each other share one label ("1,3") instead of printing over each other.
    groups: list[tuple[float, float, list[int]]] = []
    for i, p in enumerate(points):
        px, py = sx(fx(p.x)), sy(p.y)
        out.append(f"<circle class='pt' cx='{px:.1f}' cy='{py:.1f}' r='{3.5 if p.kind == 'trial' else 5}' "
                   f"fill='{_COLOURS.get(p.kind, '#1a7f37')}' opacity='.85'><title>{i + 1}: {_e(p.name)} "
                   f"({p.x:.4g}, {p.y:.5g})</title></circle>")
        for gx, gy, members in groups:
            if abs(gx - px) < 10 and abs(gy - py) < 10:
                members.append(i)
                break
        else:
            groups.append((px, py, [i]))
    placed: list[tuple[float, float, float, float]] = []
    for gx, gy, members in groups:
        text = ",".join(str(i + 1) for i in members)
        w, h = CHAR_W * len(text), 12.0
        for dx, dy in ((7, -6), (7, 12), (-7 - w, -6), (-7 - w, 12), (-w / 2, -10), (-w / 2, 20)):
            bx, by_ = gx + dx, gy + dy - 10
            box = (bx, by_, bx + w, by_ + h)
            inside = ml <= box[0] and box[2] <= ml + pw + mr - 2 and mt - 12 <= box[1] and box[3] <= mt + ph
            if inside and not any(_overlap(box, o) for o in placed):
                break
        placed.append(box)
        out.append(f"<text class='pt-label' x='{box[0]:.1f}' y='{box[3] - 2:.1f}' fill='#24292f'>{text}</text>")
    out.append("</svg>")
    return "".join(out)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def legend(points: Sequence[Point]) -> str:
    """The names behind the numbers, as HTML (wraps with the page; never truncated)."""
    items = "".join(f"<li><b>{i + 1}</b> {_e(p.name)}</li>" for i, p in enumerate(points))
    return f"<ol class='legend'>{items}</ol>"


def hbars(labels: Sequence[str], values: Sequence[float], title: str, fmt: str = ".4f",
          limit: float | None = None, limit_label: str = "", width: int = 760) -> str:
    """Horizontal bars; the label column is as wide as the longest label (the SVG scales down, never clips)."""
    if not labels:
        return ""
    row = 20
    left = int(min(max(CHAR_W * max(len(s) for s in labels) + 12, 80), width * 0.6))
    # Zoomed to the data and the budget: 0.9990 vs 0.9998 must be visible, so the axis need not start at 0.
    lo = min([*values, *([limit] if limit is not None else [])])
    vmax = max([*values, *([limit] if limit is not None else [])])
    vmin = max(0.0, lo - ((vmax - lo) * 0.25 or abs(lo) * 0.01 or 0.01)) if lo >= 0 else lo
    span = width - left - 70
    h = row * len(labels) + 44

    def sx(v: float) -> float:
        return left + (v - vmin) / (vmax - vmin or 1) * span

    out = [_svg_open(width, h, title),
           f"<text x='{left}' y='{h - 2}' text-anchor='start' fill='#57606a'>axis from {vmin:.4g}</text>"]
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 26 + i * row
        out.append(f"<text x='{left - 6}' y='{y + 13}' text-anchor='end'>{_e(lab)}</text>"
                   f"<rect x='{left}' y='{y + 3}' width='{max(1.0, sx(v) - left):.1f}' height='{row - 6}' "
                   f"fill='#0969da' opacity='.75'/>"
                   f"<text x='{sx(v) + 4:.1f}' y='{y + 13}'>{format(v, fmt)}</text>")
    if limit is not None:
        lx = sx(limit)
        out.append(f"<line class='budget-line' x1='{lx:.1f}' y1='22' x2='{lx:.1f}' y2='{h - 14}' stroke='#cf222e' "
                   f"stroke-dasharray='6 4' stroke-width='1.5'><title>{_e(limit_label)}</title></line>"
                   f"<text x='{lx:.1f}' y='{h - 2}' text-anchor='middle' fill='#cf222e'>{_e(limit_label)}</text>")
    out.append("</svg>")
    return "".join(out)
