"""Report section for ``manifest["compression"]``: what each method did and what it measurably changed."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject, get_object, get_object_or_none, get_objects
from edgeq.report.sections import esc, register_section


def _fmt(v: object, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


@register_section("compression")
def compression_section(manifest: JSONObject) -> str | None:
    c = get_object_or_none(manifest, "compression")
    if not c:
        return None
    rows = []
    for s in get_objects(c, "steps"):
        sizes = ", ".join(f"{k.replace('_', ' ')} {s[k]:,}" for k in ("sparse_int8_bytes", "palettised_bytes")
                          if k in s)
        rows.append(f"<tr><td>{esc(s['method'])}</td><td>{esc(_fmt(s['level'], 3))}</td><td>{s['params']:,}</td>"
                    f"<td>{esc(_fmt(s.get('teacher_agreement')))}</td><td>{esc(sizes or '–')}</td>"
                    f"<td>{esc(s.get('note', ''))}</td></tr>")
    fe = get_object(c, "float_eval") if "float_eval" in c else {}
    float_line = ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in fe.items())
    art_rows = []
    for a in get_objects(c, "artifacts"):
        for r in get_objects(a, "runners") or [{}]:
            art_rows.append(f"<tr><td>{esc(a['artifact'])}</td><td>{a['bytes']:,}</td><td>{esc(_fmt(a['gzip_bytes']))}</td>"
                            f"<td>{esc(r.get('runner', '–'))}</td><td>{esc(_fmt(r.get('latency_ms'), 3))}</td>"
                            f"<td>{esc(_fmt(r.get('accuracy')))}</td><td>{esc(_fmt(r.get('cosine')))}</td></tr>")
    return (f"<h2>Compression</h2><p>spec <code>{esc(c['spec'])}</code>; fine-tune: {get_object(c, 'train')['steps']} step(s) per "
            f"method on {esc(c['train_data'])} ({c['train_samples']} samples, "
            f"{'labels + distillation' if c['has_labels'] else 'distillation only'}); parameters "
            f"{c['params_float']:,} → {c['params_compressed']:,}. The uncompressed float model is the validation "
            f"reference, so every metric below includes the compression loss.</p>"
            f"<p>Compressed float model vs original on the evaluation data: {esc(float_line)}</p>"
            "<table><tr><th>method</th><th>level</th><th>params after</th><th>agreement with float</th>"
            "<th>compressed size (bytes)</th><th>note</th></tr>" + "".join(rows) + "</table>"
            "<table><tr><th>artifact</th><th>bytes</th><th>gzip bytes</th><th>runner</th><th>latency ms</th>"
            "<th>accuracy</th><th>cosine</th></tr>" + "".join(art_rows) + "</table>")
