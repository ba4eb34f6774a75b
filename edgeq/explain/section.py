"""The report section of ``edgeq.explain``: the operators that take the time in each artifact, and the warnings
that name operators outside the XNNPACK delegate or running in float around unfused Q/DQ pairs."""

from __future__ import annotations

from edgeq.explain.profile import TOP
from edgeq.explain.svg import layer_plot, time_bars
from edgeq.jsontypes import (
    JSONObject,
    get_float,
    get_int,
    get_number_or_none,
    get_object_or_none,
    get_objects,
    get_str,
    get_strs,
)
from edgeq.report.sections import esc, register_section


def top_rows(prof: JSONObject, top: int = TOP) -> list[JSONObject]:
    """The ``top`` slowest operators plus one row summing the rest, so the rows still add up to the run."""
    ops = get_objects(prof, "ops")
    rows = ops[:top]
    rest = ops[top:]
    if rest:
        rows.append({"name": f"{len(rest)} other operator(s)", "op": "…", "where": "…",
                     "ms": sum(get_float(o, "ms") for o in rest), "calls": sum(get_int(o, "calls") for o in rest)})
    return rows


def _table(prof: JSONObject) -> str:
    run = get_number_or_none(prof, "runtime_ms") or get_number_or_none(prof, "total_ms") or 1.0
    rows = "".join(f"<tr><td><code>{esc(o['name'])}</code></td><td>{esc(o['op'])}</td><td>{esc(o['where'])}</td>"
                   f"<td class='num'>{o['ms']:.4f}</td><td class='num'>{get_float(o, 'ms') / run:.1%}</td></tr>"
                   for o in top_rows(prof))
    cov = prof.get("coverage")
    return ("<table class='op-profile'><tr><th>operator</th><th>kind</th><th>ran on</th><th>ms / run</th>"
            "<th>share</th></tr>" + rows
            + f"<tr><td><b>total</b></td><td></td><td></td><td class='num'><b>{prof['total_ms']:.4f}</b></td>"
              f"<td class='num'>{'' if cov is None else f'{cov:.0%} of wall'}</td></tr></table>")


def _profile_block(prof: JSONObject) -> str:
    rows = top_rows(prof)
    chart = time_bars([f"{r['name']} · {r['op']}" if r["op"] not in ("…", "runtime") else get_str(r, "name")
                       for r in rows], [get_float(r, "ms") for r in rows], [get_str(r, "where") for r in rows],
                      f"{prof['artifact']}: time per operator, ms per run")
    notes = "".join(f"<p class='muted'>{esc(n)}</p>" for n in get_strs(prof, "notes"))
    return (f"<h3>{esc(prof['artifact'])}</h3><p class='muted'>{esc(prof['source'])}; {prof['runs']} runs after "
            f"{prof['warmup']} warm-up, first evaluation sample. Wall time of the same runs: {prof['wall_ms']:.4f} ms "
            f"per run; the runtime's own run event: {prof['runtime_ms']:.4f} ms.</p>{notes}"
            f"<figure>{chart}</figure>{_table(prof)}")


def _alone_cell(w: JSONObject) -> str:
    alone = w.get("alone_db")
    return f"<td class='num'>{alone:.1f}</td>" if isinstance(alone, float | int) else "<td class='num'>–</td>"


def _ranking_note(le: JSONObject) -> str:
    if le.get("ranking") == "alone":
        return ("Ranked by the output SQNR with the layer quantized alone (every other layer float): what its own "
                "quantization costs at the output.")
    return ("Ranked by the noise each layer adds beyond its inputs (a model that misses its budget is ranked by "
            "its output with each layer quantized alone instead).")


def _layer_block(le: JSONObject) -> str:
    layers = get_objects(le, "layers")
    worst = get_objects(le, "worst")
    moves = get_objects(le, "moves")
    marked = {get_int(w, "index"): f"#{w['rank']}" for w in worst}
    chart = layer_plot([get_float(ly, "sqnr_db") for ly in layers], [get_float(ly, "added_db") for ly in layers],
                       marked, f"{le['artifact']}: per-layer error against float")
    rows = []
    for w in worst:
        fix = "<br>".join(move_text(mv, html=True) for mv in moves if mv["layer"] == w["layer"]) or "–"
        rows.append(f"<tr><td>#{w['rank']}</td><td><code>{esc(w['layer'])}</code></td><td>{esc(w['op'])}</td>"
                    f"<td class='num'>{w['sqnr_db']:.1f}</td><td class='num'>"
                    f"{'–' if w['cosine'] is None else format(w['cosine'], '.4f')}</td>"
                    f"<td class='num'>{w['added_db']:.1f}</td>{_alone_cell(w)}<td>{fix}</td></tr>")
    best = best_moves(le)
    why = ("<p class='muted'>The budget was met, so no layer was rebuilt wider.</p>" if not moves else
           "<p><b>Best measured move:</b> " + (f"{esc(best[0]['move'])} on <code>{esc(best[0]['layer'])}</code>, "
                                               f"{best[0]['gain_db']:+.2f} dB" if best else
                                               "none of the rebuilt layers improved the output") + "</p>")
    return (f"<h3>{esc(le['artifact'])}</h3><p class='muted'>{esc(le['method'])}; {le['samples']} evaluation "
            f"samples. {_ranking_note(le)}</p><figure class='layer-plot'>{chart}</figure>"
            "<table class='worst-layers'><tr><th></th><th>layer</th><th>op</th><th>SQNR dB</th><th>cosine</th>"
            "<th>added noise, dB</th><th>output alone, dB</th><th>measured move (rebuilt)</th></tr>"
            + "".join(rows) + f"</table>{why}")


def best_moves(le: JSONObject) -> list[JSONObject]:
    """The measured moves that improved the output, best first (a layer's local error does not always reach the
    output: later layers can average it away, so the ranking of the fixes is the measured one)."""
    return sorted((m for m in get_objects(le, "moves") if (get_number_or_none(m, "gain_db") or 0) > 0),
                  key=lambda m: -get_float(m, "gain_db"))


def move_text(mv: JSONObject, html: bool = False) -> str:
    """``16-bit activations on `features.14`: output SQNR 31.2 → 35.3 dB (+4.10 dB measured, closer to float on
    30 of 32 samples)``."""
    if mv["gain_db"] is None:
        return f"{mv['move']}: not measurable"
    gain = f"{mv['gain_db']:+.2f} dB measured"
    paired = (f", closer to float on {mv['samples_better']} of {mv['samples']} samples"
              if isinstance(mv.get("samples_better"), int) and isinstance(mv.get("samples"), int) else "")
    return (f"{esc(mv['move'])}: output SQNR {mv['base_db']:.1f} → {mv['after_db']:.1f} dB ("
            + (f"<b>{gain}</b>" if html else gain) + paired + ")")


@register_section("layer_error")
def layer_error_section(manifest: JSONObject) -> str | None:
    recs = get_objects(get_object_or_none(manifest, "explain") or {}, "layer_error")
    if not recs:
        return None
    return ("<h2>Where the error comes from (per layer)</h2><p class='muted'>Each quantized layer's output against "
            "the float model's on the same inputs, in dB of SQNR (lower = worse): the line is the error accumulated "
            "so far, a dot the noise the layer itself adds beyond its inputs'. The worst layers are numbered; the move beside each one was "
            "measured: the recipe rebuilt with only that layer wider, its output SQNR compared with the recipe's "
            "own.</p>" + "".join(_layer_block(le) for le in recs))


@register_section("op_profile")
def op_profile_section(manifest: JSONObject) -> str | None:
    ex = get_object_or_none(manifest, "explain") or {}
    profiles = get_objects(ex, "profiles")
    if not profiles and not ex.get("warnings"):
        return None
    parts = ["<h2>Where the time goes (per operator, host)</h2>",
             "<p class='muted'>Host CPU profile of each artifact: it ranks operators and shows what falls out of "
             "the fast path; the device's absolute times differ. Green: XNNPACK; red: ExecuTorch portable kernels; "
             "grey: runtime time outside every operator; blue: onnxruntime kernels.</p>"]
    for w in get_objects(ex, "warnings"):
        parts.append(f"<div class='warn op-warning'>{esc(w['message'])}</div>")
    for n in get_strs(ex, "notes"):
        parts.append(f"<p class='muted'>{esc(n)}</p>")
    # quantized artifacts first: they are what ships
    for prof in sorted(profiles, key=lambda p: _is_baseline(manifest, get_str(p, "artifact"))):
        parts.append(_profile_block(prof))
    return "".join(parts)


def _is_baseline(manifest: JSONObject, name: str) -> bool:
    return any(a["name"] == name and a.get("role") == "baseline" for a in get_objects(manifest, "artifacts"))
