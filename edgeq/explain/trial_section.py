"""The report section of the search trials' per-layer error (:mod:`edgeq.explain.trials`): one line per trial of
the SQNR to float layer by layer, and a table naming each trial's lowest and noisiest layers, so a reader sees
which layers each move improved and which it left as they were."""

from __future__ import annotations

from collections.abc import Sequence

from edgeq.explain.svg import db_grid, svg_open
from edgeq.jsontypes import JSONObject, get_float, get_int, get_object_or_none, get_objects, get_str
from edgeq.report.sections import esc, register_section

_FIRST, _PASSED, _OTHER = "#0969da", "#1a7f37", "#afb8c1"


def worst_text(rec: JSONObject, html: bool = False) -> str:
    """``features.3.conv (conv2d) 18.2 dB, …``: the layers adding the most noise, as SQNR of what each adds."""
    parts = []
    for w in get_objects(rec, "worst"):
        name = f"<code>{esc(w['layer'])}</code>" if html else get_str(w, "layer")
        parts.append(f"{name} ({esc(w['op']) if html else w['op']}) {get_float(w, 'added_db'):.1f} dB")
    return ", ".join(parts) or "–"


def lowest_text(rec: JSONObject, html: bool = False) -> str:
    low = get_object_or_none(rec, "lowest")
    if low is None:
        return "–"
    name = f"<code>{esc(low['layer'])}</code>" if html else get_str(low, "layer")
    return f"{name} {get_float(low, 'sqnr_db'):.1f} dB"


def trials_plot(recs: Sequence[JSONObject], title: str, width: int = 760, height: int = 260) -> str:
    """SQNR to float per layer, one polyline per trial, in the first trial's layer order (layers a trial does not
    compute are skipped): blue the first trial, green a trial inside the budget, grey the rest."""
    order = [get_str(ly, "layer") for ly in get_objects(recs[0], "layers")] if recs else []
    if not order:
        return ""
    pos = {name: i for i, name in enumerate(order)}
    lines = [[(pos[get_str(ly, "layer")], min(get_float(ly, "sqnr_db"), 99.0)) for ly in get_objects(r, "layers")
              if get_str(ly, "layer") in pos] for r in recs]
    hi = max((v for line in lines for _, v in line), default=1.0) + 5
    lo = min(0.0, *(v for line in lines for _, v in line))
    ml, mt, mb, pw = 52, 24, 34, width - 68
    ph = height - mt - mb

    def sy(v: float) -> float:
        return mt + ph - (v - lo) / (hi - lo) * ph

    def pt(i: int, v: float) -> str:
        return f"{ml + (i + 0.5) / len(order) * pw:.1f},{sy(v):.1f}"

    out = [svg_open(title, width, height), *db_grid(ml, pw, hi, sy)]
    # grey first, so the first trial and the passing ones are drawn on top
    ranked = sorted(zip(recs, lines, strict=True), key=lambda rl: _colour(rl[0], recs[0]) != _OTHER)
    for rec, line in ranked:
        colour = _colour(rec, recs[0])
        out.append(f"<polyline class='trial-line' points='{' '.join(pt(i, v) for i, v in line)}' fill='none' "
                   f"stroke='{colour}' stroke-width='{1 if colour == _OTHER else 1.8}'><title>trial "
                   f"{get_int(rec, 'trial')}: {esc(rec['label'])}</title></polyline>")
    out.append(f"<text x='{ml + pw / 2:.1f}' y='{height - 8}' text-anchor='middle' fill='#57606a'>layers in graph "
               f"order (1 … {len(order)}); SQNR to float so far (dB), one line per trial: blue the first, green inside the budget, grey the rest</text></svg>")
    return "".join(out)


def _colour(rec: JSONObject, first: JSONObject) -> str:
    if rec.get("passed") is True:
        return _PASSED
    return _FIRST if rec is first else _OTHER


def _format_block(fmt: str, recs: list[JSONObject]) -> str:
    rows = "".join(f"<tr><td>{r['trial']}</td><td>{esc(r['label'])}</td><td>{'yes' if r.get('passed') else 'no'}"
                   f"</td><td>{lowest_text(r, html=True)}</td><td>{worst_text(r, html=True)}</td></tr>" for r in recs)
    return (f"<h3>{esc(fmt)} search</h3><figure class='trial-plot'>"
            f"{trials_plot(recs, f'{fmt}: per-layer SQNR to float of each search trial')}</figure>"
            "<table class='trial-layers'><tr><th>trial</th><th>move</th><th>meets budget</th>"
            "<th>lowest SQNR (layer)</th><th>layers adding the most noise (as SQNR)</th></tr>" + rows + "</table>")


@register_section("trial_layer_error")
def trial_layer_error_section(manifest: JSONObject) -> str | None:
    recs = get_objects(get_object_or_none(manifest, "explain") or {}, "trial_layer_error")
    if not recs:
        return None
    by_format: dict[str, list[JSONObject]] = {}
    for r in recs:
        by_format.setdefault(get_str(r, "format"), []).append(r)
    return ("<h2>Where the error comes from in each search trial (per layer)</h2><p class='muted'>Every search trial "
            "that built a model, rebuilt from the recipe its record holds and compared with the float model layer "
            "by layer on the same evaluation samples as the shipped model. A move that helps raises the line from "
            "the layers it changed onwards; one that leaves the lowest layers where they were did not reach the "
            "error that matters.</p>" + "".join(_format_block(f, rs) for f, rs in by_format.items()))
