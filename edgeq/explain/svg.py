"""Inline SVG for the explain sections, in the style of edgeq.report.plots (viewBox, scales to its container,
full labels, no external assets): bars that start at zero, since a time share is read against the whole run."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgeq.report.plots import CHAR_W
from edgeq.report.sections import esc

_COLOURS = {"XNNPACK": "#1a7f37", "portable": "#cf222e", "runtime overhead": "#8c959f"}


def time_bars(labels: Sequence[str], values: Sequence[float], kinds: Sequence[str], title: str,
              width: int = 760) -> str:
    """One bar per operator (ms per run), labelled above the bar; the colour says where it ran."""
    if not labels:
        return ""
    row, left = 34, 8
    width = max(width, int(CHAR_W * max(len(s) for s in labels)) + 2 * left)
    vmax = max(values) or 1.0
    span = width - left - 90
    h = row * len(labels) + 30
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {h}' width='{width}' height='{h}' "
           f"style='max-width:100%;height:auto;font:11px system-ui,sans-serif' role='img' aria-label='{esc(title)}'>"
           f"<title>{esc(title)}</title><text x='4' y='14' font-weight='600'>{esc(title)}</text>"]
    for i, (lab, v, kind) in enumerate(zip(labels, values, kinds, strict=True)):
        y = 22 + i * row
        w = max(1.0, v / vmax * span)
        out.append(f"<text x='{left}' y='{y + 10}'>{esc(lab)}</text>"
                   f"<rect class='op-bar' x='{left}' y='{y + 14}' width='{w:.1f}' height='13' "
                   f"fill='{_COLOURS.get(kind, '#0969da')}' opacity='.8'><title>{esc(kind)}</title></rect>"
                   f"<text x='{left + w + 4:.1f}' y='{y + 25}'>{v:.3f} ms</text>")
    out.append("</svg>")
    return "".join(out)


def svg_open(title: str, width: int, height: int) -> str:
    """An inline chart's opening tag with its accessible name and its title line."""
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='{width}' "
            f"height='{height}' style='max-width:100%;height:auto;font:11px system-ui,sans-serif' role='img' "
            f"aria-label='{esc(title)}'><title>{esc(title)}</title>"
            f"<text x='4' y='14' font-weight='600'>{esc(title)}</text>")


def db_grid(ml: float, pw: float, hi: float, sy: Callable[[float], float]) -> list[str]:
    """The dB axis: a label and a light grid line every 10 dB (every 5 below 30 dB), from 0 to HI."""
    return [f"<text x='{ml - 6}' y='{sy(t) + 4:.1f}' text-anchor='end' fill='#57606a'>{t}</text>"
            f"<line x1='{ml}' y1='{sy(t):.1f}' x2='{ml + pw}' y2='{sy(t):.1f}' stroke='#eaeef2'/>"
            for t in range(0, int(hi) + 1, 10 if hi > 30 else 5)]


def layer_plot(sqnr: Sequence[float], added: Sequence[float], marked: dict[int, str], title: str,
               width: int = 760, height: int = 300) -> str:
    """Accumulated SQNR per layer in graph order (line) and the noise each layer adds, as an SQNR (dots); lower is
    worse for both. The worst layers are marked with their rank (their names are in the table below the chart)."""
    if not sqnr:
        return ""
    ml, mr, mt, mb = 52, 16, 28, 40
    # 999 dB is the manifest's "exact" (no error / adds no noise): drawn just above the rest, without a dot
    top = max([v for v in (*sqnr, *added) if v < 99.0] or [1.0]) + 5
    cap, cap_added = [min(v, top) for v in sqnr], [min(v, top) for v in added]
    hi = top * 1.05
    lo = min(0.0, *cap, *cap_added)
    pw, ph = width - ml - mr, height - mt - mb
    n = len(sqnr)

    def sx(i: int) -> float:
        return ml + (i + 0.5) / n * pw

    def sy(v: float) -> float:
        return mt + ph - (v - lo) / (hi - lo) * ph

    out = [svg_open(title, width, height)
           + f"<line x1='{ml}' y1='{mt + ph}' x2='{ml + pw}' y2='{mt + ph}' stroke='#8c959f'/>"]
    out += db_grid(ml, pw, hi, sy)
    for i, v in enumerate(cap_added):
        if added[i] >= 99.0 and i not in marked:
            continue
        colour, r = ("#cf222e", 4) if i in marked else ("#d4a72c", 2.5)
        out.append(f"<circle class='layer-dot' cx='{sx(i):.1f}' cy='{sy(v):.1f}' r='{r}' fill='{colour}'/>")
    pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in enumerate(cap))
    out.append(f"<polyline points='{pts}' fill='none' stroke='#0969da' stroke-width='1.5'/>")
    for i, lab in marked.items():
        out.append(f"<text class='pt-label' x='{sx(i):.1f}' y='{min(mt + ph - 2.0, sy(cap_added[i]) + 15):.1f}' "
                   f"text-anchor='middle' fill='#cf222e' font-weight='600'>{esc(lab)}</text>")
    out.append(f"<text x='{ml + pw / 2:.1f}' y='{height - 8}' text-anchor='middle' fill='#57606a'>layers in graph "
               f"order (1 … {n}); line: SQNR to float so far; dots: noise each layer adds, as SQNR (dB)</text>"
               "</svg>")
    return "".join(out)
