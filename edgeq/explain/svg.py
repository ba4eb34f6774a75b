"""Inline SVG for the explain sections, in the style of edgeq.report.plots (viewBox, scales to its container,
full labels, no external assets): bars that start at zero, since a time share is read against the whole run."""

from __future__ import annotations

from collections.abc import Sequence

from edgeq.report.html import esc
from edgeq.report.plots import CHAR_W

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
