"""Dependency-free inline SVG charts that stay readable: points are numbered (names go in an HTML legend, never
truncated), labels of points that land on the same spot are merged instead of overprinted, the budget is drawn
as a line with the failing side shaded, and every chart scales down to its container (viewBox, max-width)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeq.report.sections import esc

Box = tuple[float, float, float, float]  # left, top, right, bottom in SVG px
CHAR_W = 6.4  # px per character at the 11 px font used below (a generous estimate: no clipped labels)


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
            f"aria-label='{esc(title)}'><title>{esc(title)}</title>"
            f"<text x='4' y='14' font-weight='600'>{esc(title)}</text>")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _general(v: float) -> str:
    return f"{v:.3g}"


@dataclass(frozen=True)
class Axes:
    """A chart's title, axis labels and x scale."""

    x_label: str
    y_label: str
    title: str
    log_x: bool = False
    x_fmt: Callable[[float], str] = _general  # tick labels of the x axis (in data units)


@dataclass(frozen=True)
class _Frame:
    """The plot area and the data ranges it maps (x already on the log scale when the axes are)."""

    ml: float
    mt: float
    pw: float
    ph: float
    x0: float
    x1: float
    y0: float
    y1: float

    def sx(self, v: float) -> float:
        return self.ml + (v - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, v: float) -> float:
        return self.mt + self.ph - (v - self.y0) / (self.y1 - self.y0) * self.ph


def scatter(points: Sequence[Point], axes: Axes, budget: BudgetLine | None = None, width: int = 600,
            height: int = 360) -> str:
    """Numbered points; ``budget`` draws a dashed line and shades the side that fails it."""
    if not points:
        return ""
    ml, mr, mt, mb = 64, 24, 30, 46

    def fx(v: float) -> float:
        return math.log10(max(v, 1e-12)) if axes.log_x else v

    xs = [fx(p.x) for p in points]
    ys = [p.y for p in points] + ([budget.y] if budget else [])
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - (abs(x0) * 0.1 or 1), x1 + (abs(x1) * 0.1 or 1)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - (abs(y0) * 0.01 or 0.01), y1 + (abs(y1) * 0.01 or 0.01)
    xp, yp = (x1 - x0) * 0.08, (y1 - y0) * 0.12
    f = _Frame(ml, mt, width - ml - mr, height - mt - mb, x0 - xp, x1 + xp, y0 - yp, y1 + yp)
    out = [_svg_open(width, height, axes.title)]
    obstacles: list[Box] = []
    if budget is not None:
        out += _budget_marks(f, budget, obstacles)
    out += _axis_marks(f, axes, height)
    pos = []
    for i, p in enumerate(points):
        px, py = f.sx(fx(p.x)), f.sy(p.y)
        pos.append((px, py))
        out.append(f"<circle class='pt' cx='{px:.1f}' cy='{py:.1f}' r='{3.5 if p.kind == 'trial' else 5}' "
                   f"fill='{_COLOURS.get(p.kind, '#1a7f37')}' opacity='.85'><title>{i + 1}: {esc(p.name)} "
                   f"({p.x:.4g}, {p.y:.5g})</title></circle>")
    for bx, by_, text in place_labels(pos, (ml, mt - 12, ml + f.pw + mr - 2, mt + f.ph), obstacles):
        out.append(f"<text class='pt-label' x='{bx + 1:.1f}' y='{by_ + 12:.1f}' fill='#24292f'>{esc(text)}</text>")
    out.append("</svg>")
    return "".join(out)


def _budget_marks(f: _Frame, budget: BudgetLine, obstacles: list[Box]) -> list[str]:
    """The dashed budget line, its label (added to ``obstacles`` for the point labels), the failing side shaded."""
    ml, mt, pw, ph = f.ml, f.mt, f.pw, f.ph
    by = f.sy(budget.y)
    top, bottom = (by, mt + ph) if budget.higher_is_better else (mt, by)
    ty = by - 5 if budget.higher_is_better else by + 13
    obstacles.append((ml + pw - 4 - CHAR_W * len(budget.label), ty - 12, ml + pw - 4, ty + 4))
    return [f"<rect class='fail-zone' x='{ml}' y='{top:.1f}' width='{pw}' height='{max(0.0, bottom - top):.1f}' "
            "fill='#cf222e' opacity='.07'/>",
            f"<line class='budget-line' x1='{ml}' y1='{by:.1f}' x2='{ml + pw}' y2='{by:.1f}' stroke='#cf222e' "
            f"stroke-width='1.5' stroke-dasharray='6 4'><title>{esc(budget.label)}</title></line>",
            f"<text x='{ml + pw - 4}' y='{ty:.1f}' text-anchor='end' fill='#cf222e'>{esc(budget.label)}</text>"]


def _axis_marks(f: _Frame, axes: Axes, height: int) -> list[str]:
    """Both axes with their ticks and labels."""
    ml, mt, pw, ph, x0, x1 = f.ml, f.mt, f.pw, f.ph, f.x0, f.x1
    out = [f"<line x1='{ml}' y1='{mt + ph}' x2='{ml + pw}' y2='{mt + ph}' stroke='#57606a'/>"
           f"<line x1='{ml}' y1='{mt}' x2='{ml}' y2='{mt + ph}' stroke='#57606a'/>"]
    if axes.log_x and x1 - x0 > 1.5:  # several decades: one tick per power of ten
        xticks = [float(k) for k in range(math.ceil(x0), math.floor(x1) + 1)]
    elif axes.log_x:  # ticks at round values of the data itself (8 KB, 16 KB ...), placed on the log scale
        xticks = [math.log10(v) for v in _nice_ticks(10 ** x0, 10 ** x1) if v > 0]
    else:
        xticks = _nice_ticks(x0, x1)
    for t in xticks:
        label = axes.x_fmt(10 ** t if axes.log_x else t)
        out.append(f"<line x1='{f.sx(t):.1f}' y1='{mt + ph}' x2='{f.sx(t):.1f}' y2='{mt + ph + 4}' stroke='#57606a'/>"
                   f"<text x='{f.sx(t):.1f}' y='{mt + ph + 16}' text-anchor='middle'>{label}</text>")
    for t in _nice_ticks(f.y0, f.y1):
        out.append(f"<line x1='{ml - 4}' y1='{f.sy(t):.1f}' x2='{ml}' y2='{f.sy(t):.1f}' stroke='#57606a'/>"
                   f"<text x='{ml - 6}' y='{f.sy(t) + 4:.1f}' text-anchor='end'>{t:.4g}</text>")
    out.append(f"<text x='{ml + pw / 2}' y='{height - 8}' text-anchor='middle'>{esc(axes.x_label)}</text>"
               f"<text x='14' y='{mt + ph / 2}' text-anchor='middle' "
               f"transform='rotate(-90 14 {mt + ph / 2})'>{esc(axes.y_label)}</text>")
    return out


def _ranges(members: list[int]) -> str:
    """[0, 1, 2, 5] -> "1–3,6" (1-based, as in the legend)."""
    out, run = [], [members[0]]
    for m in members[1:]:
        if m == run[-1] + 1:
            run.append(m)
        else:
            out.append(run)
            run = [m]
    out.append(run)
    return ",".join(f"{r[0] + 1}" if len(r) == 1 else f"{r[0] + 1}–{r[-1] + 1}" for r in out)


def place_labels(pos: Sequence[tuple[float, float]], area: Box,
                 obstacles: Sequence[Box] = ()) -> list[tuple[float, float, str]]:
    """Label every point with its number without overprinting: points within 10 px share a label; a label
    that finds no free slot around its point is merged with the nearest group and placement restarts."""
    groups: list[list[int]] = []
    for i, (px, py) in enumerate(pos):
        g = next((g for g in groups if abs(pos[g[0]][0] - px) < 10 and abs(pos[g[0]][1] - py) < 10), None)
        if g is None:
            groups.append([i])
        else:
            g.append(i)
    while True:
        placed: list[Box] = list(obstacles)
        result: list[tuple[float, float, str]] = []
        failed = None
        for gi, members in enumerate(groups):
            gx = sum(pos[m][0] for m in members) / len(members)
            gy = sum(pos[m][1] for m in members) / len(members)
            text = _ranges(sorted(members))
            # The box is the text's full em box (ascent + descent at 11 px, rounded up), not just its baseline.
            w, h = CHAR_W * len(text) + 2, 16.0
            for dx, dy in ((7, -17), (7, 1), (-9 - w, -17), (-9 - w, 1), (-w / 2, -24), (-w / 2, 7)):
                box = (gx + dx, gy + dy, gx + dx + w, gy + dy + h)
                inside = area[0] <= box[0] and box[2] <= area[2] and area[1] <= box[1] and box[3] <= area[3]
                if inside and not any(_overlap(box, o) for o in placed):
                    break
            else:
                failed = gi
                break
            placed.append(box)
            result.append((box[0], box[1], text))
        if failed is None or len(groups) == 1:
            return result
        g = groups.pop(failed)
        cx, cy = pos[g[0]]
        nearest = min(groups, key=lambda o: (pos[o[0]][0] - cx) ** 2 + (pos[o[0]][1] - cy) ** 2)
        nearest.extend(g)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def legend(points: Sequence[Point]) -> str:
    """The names behind the numbers, as HTML (wraps with the page; never truncated)."""
    items = "".join(f"<li><b>{i + 1}</b>&nbsp; {esc(p.name)}</li>" for i, p in enumerate(points))
    return f"<ul class='legend'>{items}</ul>"


def fmt_bytes_axis(v: float) -> str:
    for unit, n in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if v >= n:
            return f"{v / n:.3g} {unit}"
    return f"{v:.3g} B"


def hbars(labels: Sequence[str], values: Sequence[float], title: str, fmt: str = ".4f",
          limit: float | None = None, limit_label: str = "", width: int = 760) -> str:
    """Horizontal bars, each under its full label (long runner names never clip: the chart widens and its
    viewBox scales it down to the page)."""
    if not labels:
        return ""
    row, left = 36, 8
    width = max(width, int(CHAR_W * max(len(s) for s in labels)) + 2 * left)
    # Zoomed to the data and the budget: 0.9990 vs 0.9998 must be visible, so the axis need not start at 0.
    lo = min([*values, *([limit] if limit is not None else [])])
    vmax = max([*values, *([limit] if limit is not None else [])])
    vmin = max(0.0, lo - ((vmax - lo) * 0.25 or abs(lo) * 0.01 or 0.01)) if lo >= 0 else lo
    span = width - left - 70
    h = row * len(labels) + 50

    def sx(v: float) -> float:
        return left + (v - vmin) / (vmax - vmin or 1) * span

    out = [_svg_open(width, h, title),
           f"<text x='{left}' y='{h - 2}' text-anchor='start' fill='#57606a'>axis from {vmin:.4g}</text>"]
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        out.append(f"<text x='{left}' y='{y + 12}'>{esc(lab)}</text>"
                   f"<rect x='{left}' y='{y + 16}' width='{max(1.0, sx(v) - left):.1f}' height='14' "
                   f"fill='#0969da' opacity='.75'/>"
                   f"<text x='{sx(v) + 4:.1f}' y='{y + 27}'>{format(v, fmt)}</text>")
    if limit is not None:
        lx = sx(limit)
        anchor = "end" if lx > width - 120 else "middle"
        out.append(f"<line class='budget-line' x1='{lx:.1f}' y1='22' x2='{lx:.1f}' y2='{h - 16}' stroke='#cf222e' "
                   f"stroke-dasharray='6 4' stroke-width='1.5'><title>{esc(limit_label)}</title></line>"
                   f"<text x='{lx:.1f}' y='{h - 2}' text-anchor='{anchor}' fill='#cf222e'>{esc(limit_label)}</text>")
    out.append("</svg>")
    return "".join(out)
