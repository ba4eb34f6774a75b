"""Report sections every export has: how each artifact was quantized, the I/O signature apps must feed, and where
the export's time went."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject, get_object, get_object_or_none, get_objects
from edgeq.report.sections import esc, register_section
from edgeq.timing import timing_rows

_QUANT_KEYS = ("method", "format", "scheme", "calibration", "calibration_samples", "per_channel", "activation_type",
               "weight_type", "reduce_range", "nodes_excluded", "op_types_excluded", "preprocessing", "tool")


@register_section("quantization")
def quantization_section(manifest: JSONObject) -> str | None:
    quantized = [(a, get_object(a, "quantization")) for a in get_objects(manifest, "artifacts") if a.get("quantization")]
    if not quantized:
        return None
    keys = [k for k in _QUANT_KEYS if any(k in q for _, q in quantized)]
    head = "".join(f"<th>{esc(k.replace('_', ' '))}</th>" for k in keys)
    rows = []
    for a, q in quantized:
        cells = []
        for k in keys:
            v = q.get(k)
            if k == "tool" and isinstance(v, str):
                v = v.rsplit(".", 1)[-1]
            if isinstance(v, list):
                v = ", ".join(map(str, v)) if v else "none"
            cells.append(f"<td>{esc('–' if v is None else v)}</td>")
        rows.append(f"<tr><td>{esc(a['name'])}</td>{''.join(cells)}</tr>")
    return ("<h2>Quantization</h2><table><tr><th>artifact</th>" + head + "</tr>" + "".join(rows) + "</table>")


@register_section("signature")
def signature_section(manifest: JSONObject) -> str | None:
    sig = get_object_or_none(manifest, "signature")
    if not sig:
        return None
    rows = []
    for kind in ("inputs", "outputs"):
        for s in get_objects(sig, kind):
            rows.append(f"<tr><td>{kind[:-1]}</td><td><code>{esc(s['name'])}</code></td><td>{esc(s['dtype'])}</td>"
                        f"<td>{esc(s['shape'])}</td></tr>")
    return ("<h2>I/O signature</h2><p class='muted'>What an app feeds and reads (also in edgeq.json → signature).</p>"
            "<table><tr><th></th><th>name</th><th>dtype</th><th>shape</th></tr>" + "".join(rows) + "</table>")


@register_section("timing")
def timing_section(manifest: JSONObject) -> str | None:
    rows = timing_rows(manifest)
    if not rows:
        return None
    body = "".join(f"<tr><td>{esc(p)}</td><td class='num'>{esc(s)}</td><td class='num'>{esc(share)}</td>"
                   f"<td>{esc(bought)}</td></tr>" for p, s, share, bought in rows)
    return ("<h2>Where the time went</h2><p class='muted'>Wall seconds of this export on this machine (edgeq.json → "
            "timing). They never decide what ships: the search's budget is counted in trials.</p>"
            "<table><tr><th>phase</th><th>seconds</th><th>share</th><th>what it bought</th></tr>" + body + "</table>")
