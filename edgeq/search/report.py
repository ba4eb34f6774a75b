"""HTML report sections for the optional manifest keys ``sensitivity``, ``search`` and ``sweep``."""

from __future__ import annotations

import html
import math

from edgeq.jsontypes import (
    JSONObject,
    JSONValue,
    as_list,
    get_float,
    get_int,
    get_number_or_none,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
    get_strs,
)
from edgeq.report.plots import Axes
from edgeq.report.sections import register_section
from edgeq.search.svg import hbar_chart, scatter


def _e(x: object) -> str:
    return html.escape(str(x))


def _num(v: JSONValue, fmt: str) -> str:
    if v is None:
        return "–"
    if v == "inf" or (isinstance(v, float) and math.isinf(v)):
        return "∞"
    return format(v, fmt)


@register_section("sensitivity")
def sensitivity_section(m: JSONObject) -> str | None:
    return _sensitivity(get_objects(m, "sensitivity"), "ONNX",
                        "The plain static INT8 model (the search's first trial) against the float graph, matched "
                        "tensor by tensor with ONNX Runtime's <code>qdq_loss_debug</code>.")


@register_section("sensitivity-pte")
def sensitivity_pte_section(m: JSONObject) -> str | None:
    return _sensitivity(get_objects(m, "sensitivity_pte"), ".pte / PT2E",
                        "torchao's PT2E graph quantized with the XNNPACK quantizer against the float "
                        "ExportedProgram, node by node (torchao numeric debugger handles). Q/DQ and weight columns "
                        "do not apply here.")


def _sensitivity(rows: list[JSONObject], fmt: str, what: str) -> str | None:
    if not rows:
        return None
    # bar length: the noise each node adds, as dB below 60 dB (so worse nodes get longer bars)
    vals = [max(0.0, 60.0 - (added if isinstance(added := r["added_db"], float) else 60.0)) for r in rows]
    parts = [f"<h2>Per-node sensitivity ({_e(fmt)})</h2>",
             f"<p class='muted'>{what} <b>added</b>: the error the node adds beyond its inputs' (as an SQNR; lower = "
             "worse); <b>Q/DQ</b>: the SQNR of quantizing its output alone; <b>vs float</b>: accumulated SQNR of its "
             "output.</p>",
             hbar_chart([f"{r['node']} ({r['op_type']})" for r in rows], vals,
                        "noise added per node (60 dB − added SQNR)", " dB"),
             "<table><tr><th>#</th><th>node</th><th>op</th><th>tensor</th><th>added dB</th><th>Q/DQ dB</th>"
             "<th>vs float dB</th><th>inputs dB</th><th>weight dB</th></tr>"]
    for r in rows:
        parts.append(f"<tr><td class='num'>{r['rank']}</td><td>{_e(r['node'])}</td><td>{_e(r['op_type'])}</td>"
                     f"<td>{_e(r['tensor'])}</td><td class='num'>{_num(r['added_db'], '.1f')}</td>"
                     f"<td class='num'>{_num(r['qdq_sqnr_db'], '.1f')}</td>"
                     f"<td class='num'>{_num(r['xmodel_sqnr_db'], '.1f')}</td>"
                     f"<td class='num'>{_num(r['input_sqnr_db'], '.1f')}</td>"
                     f"<td class='num'>{_num(r['weight_sqnr_db'], '.1f')}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


@register_section("search")
def search_section(m: JSONObject) -> str | None:
    s = get_object_or_none(m, "search")
    if not s:
        return None
    trials = get_objects(s, "trials")
    options = get_object(s, "options")
    fb = get_int(get_object(s, "float"), "bytes") or 1
    head = ("<p class='badge pass'>budget met</p>" if s["met"] else
            "<p class='badge fail'>budget not met — no trial shipped, the first INT8 model stays; closest trials: "
            + ", ".join(f"#{i}" for i in as_list(s["closest"])) + "</p>")
    parts = ["<h2>Accuracy-aware search (ONNX INT8)</h2>", head,
             f"<p>{len(trials)} trial(s) in {s['seconds']:.1f} s; stopped: {_e(s['stopped'])}. "
             + (f"Pick: trial #{_e(s['best'])}. " if s["met"] else "") + f"Limits: {options['max_trials']} trials, "
             f"{options['max_seconds']:g} s.</p>"]
    pred = get_object_or_none(s, "scheme_prediction")
    if pred:  # why the first candidate of each format was static or dynamic (edgeq.outliers.linear_sim.predict_scheme)
        picks = ", ".join(f"{_e(f)}: {_e(p)}" for f, p in get_object(pred, "pick").items())
        parts.append(f"<p>First scheme per format (predicted in torch before any build) — {picks}. "
                     f"{_e(pred['reason'])}.</p>")
    done = [t for t in trials if t["metrics"]]
    if done:
        pts = [(get_int(t, "bytes") / fb, get_float(get_object(t, "metrics"), "cosine_mean")) for t in done]
        pick = next((i for i, t in enumerate(done) if t["index"] == s["best"]), None) if s["met"] else None
        parts.append(scatter(pts, [f"#{t['index']}" for t in done],
                             Axes("bytes × float", "mean cosine", "trials: cosine vs size"), pick))
    parts.append("<table><tr><th>#</th><th>stage</th><th>configuration</th><th>float nodes</th><th>int16 nodes</th>"
                 "<th>× float bytes</th><th>latency ms</th><th>cos mean</th><th>SQNR dB</th><th>drop pt</th>"
                 "<th>result</th></tr>")
    for t in trials:
        mt = get_object_or_none(t, "metrics") or {}
        res = "pass" if t["passed"] else ("; ".join(get_strs(t, "failures")) or t["error"] or "")
        cls = "" if t["passed"] else "bad"
        star = " ★" if t["index"] == s["best"] else ""
        parts.append(f"<tr class='{cls}'><td class='num'>{t['index']}{star}</td><td>{_e(t['stage'])}</td>"
                     f"<td>{_e(t['label'])}</td><td class='num'>{len(as_list(t['nodes_excluded']))}</td>"
                     f"<td class='num'>{len(as_list(t['int16_activation_nodes']))}</td>"
                     f"<td class='num'>{_num(get_int(t, 'bytes') / fb if t['bytes'] else None, '.3f')}</td>"
                     f"<td class='num'>{_num(t['latency_ms'], '.3f')}</td>"
                     f"<td class='num'>{_num(mt.get('cosine_mean'), '.5f')}</td>"
                     f"<td class='num'>{_num(mt.get('sqnr_db'), '.2f')}</td>"
                     f"<td class='num'>{_num(mt.get('accuracy_drop_pts'), '.2f')}</td><td>{_e(res)}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


@register_section("sweep")
def sweep_section(m: JSONObject) -> str | None:
    s = get_object_or_none(m, "sweep")
    if not s:
        return None
    variants = get_objects(s, "variants")
    rows = [r for r in variants if r.get("metrics")]
    metric = get_str(s, "metric")
    pick = next((i for i, r in enumerate(rows) if r["name"] == s.get("pick")), None)
    labels = [get_str(r, "name") for r in rows]
    ys = [get_float(get_object(r, "metrics"), metric) for r in rows]
    parts = ["<h2>Sweep: accuracy vs size and latency</h2>",
             f"<p>{len(rows)} variant(s) on the host; y = {_e(metric)} against the float model. "
             + (f"Budget pick: <b>{_e(s['pick'])}</b> (smallest, then fastest, inside the budget)."
                if s.get("pick") else "<b>No variant meets the budget.</b>") + "</p>",
             scatter([(get_float(r, "bytes"), y) for r, y in zip(rows, ys, strict=True)], labels,
                     Axes("bytes (log)", metric, f"{metric} vs bytes", log_x=True), pick),
             scatter([(get_number_or_none(r, "latency_ms") or 0.0, y) for r, y in zip(rows, ys, strict=True)], labels,
                     Axes("host latency ms", metric, f"{metric} vs host latency"), pick),
             "<table><tr><th>variant</th><th>precision</th><th>bytes</th><th>× float</th><th>latency ms</th>"
             "<th>cos mean</th><th>SQNR dB</th><th>drop pt</th><th>Pareto (bytes)</th><th>Pareto (latency)</th>"
             "<th>budget</th></tr>"]
    for r in variants:
        mt = get_object_or_none(r, "metrics") or {}
        parts.append(f"<tr class='{'' if r.get('passed') else 'bad'}'><td>{_e(r['name'])}"
                     f"{' ★' if r['name'] == s.get('pick') else ''}</td><td>{_e(r['precision'])}</td>"
                     f"<td class='num'>{r['bytes']}</td><td class='num'>{_num(r.get('size_ratio'), '.3f')}</td>"
                     f"<td class='num'>{_num(r.get('latency_ms'), '.3f')}</td>"
                     f"<td class='num'>{_num(mt.get('cosine_mean'), '.5f')}</td>"
                     f"<td class='num'>{_num(mt.get('sqnr_db'), '.2f')}</td>"
                     f"<td class='num'>{_num(mt.get('accuracy_drop_pts'), '.2f')}</td>"
                     f"<td>{'yes' if r.get('pareto_bytes') else ''}</td><td>{'yes' if r.get('pareto_latency') else ''}"
                     f"</td><td>{'pass' if r.get('passed') else _e('; '.join(get_strs(r, 'failures') or [str(r.get('error') or '')]))}"
                     f"</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)
