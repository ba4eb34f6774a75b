"""``edgeq explain OUTDIR``: what an export folder says about where its error and its time come from.

Reads only ``OUTDIR/edgeq.json`` (plain JSON, never a pickle), and refuses a manifest that is a symlink or
resolves outside OUTDIR, so pointing it at a folder from elsewhere cannot make it read other files.
"""

from __future__ import annotations

from pathlib import Path

from edgeq.errors import ManifestError
from edgeq.explain.section import best_moves, move_text, top_rows
from edgeq.explain.trial_section import lowest_text, worst_text
from edgeq.jsontypes import (
    JSONObject,
    as_list,
    get_float,
    get_number_or_none,
    get_objects,
    get_str,
)
from edgeq.manifest import MANIFEST_NAME, Manifest, read_manifest


def _confined_manifest(outdir: Path) -> Path:
    if not outdir.is_dir():
        raise ManifestError(f"{outdir} is not a folder", "point at a folder written by `edgeq export`")
    p = outdir / MANIFEST_NAME
    if p.is_symlink() or not p.resolve().is_relative_to(outdir.resolve()):
        raise ManifestError(f"{p} is a symlink or points outside {outdir}",
                            "explain reads only the folder's own edgeq.json; copy the real file in")
    return p


def explain(outdir: Path) -> JSONObject:
    """The ``--json`` document: per-layer error (when recorded), warnings, and the top operators per artifact."""
    m = read_manifest(_confined_manifest(Path(outdir)))
    try:
        doc = _document(m, outdir)
        render_text(doc)  # every field the text needs is there and typed
        return doc
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ManifestError(f"{outdir}/{MANIFEST_NAME}: malformed 'explain' record ({type(e).__name__}: {e})",
                            "the manifest was edited or written by another edgeq; re-run edgeq export") from e


def _document(m: Manifest, outdir: Path) -> JSONObject:
    ex = m.explain or {}
    profiles = [{"artifact": p["artifact"], "format": p["format"], "source": p["source"], "runs": p["runs"],
                 "wall_ms": p["wall_ms"], "runtime_ms": p["runtime_ms"], "total_ms": p["total_ms"],
                 "coverage": p.get("coverage"), "top": top_rows(p)} for p in get_objects(ex, "profiles")]
    return {"output": str(outdir), "passed": m.passed, "failures": m.failures,
            "layer_error": get_objects(ex, "layer_error"),
            "trial_layer_error": get_objects(ex, "trial_layer_error"),
            "warnings": [w["message"] for w in get_objects(ex, "warnings")],
            "notes": list(as_list(ex.get("notes") or [])), "profiles": profiles,
            "skipped": str(ex["skipped"]) if ex.get("skipped") else None}


def render_text(doc: JSONObject) -> str:
    lines = [f"{doc['output']}: {'PASS' if doc['passed'] else 'FAIL'}"]
    lines += [f"  - {f}" for f in as_list(doc["failures"])]
    for le in get_objects(doc, "layer_error"):
        lines += layer_lines(le)
    trials = get_objects(doc, "trial_layer_error")
    if trials:
        lines.append("search trials, per layer (lowest SQNR; the layers adding the most noise):")
    for t in trials:
        lines.append(f"  {t['format']} trial {t['trial']} ({t['label']}){' meets the budget' if t['passed'] else ''}: "
                     f"lowest {lowest_text(t)}; noisiest {worst_text(t)}")
    for w in as_list(doc["warnings"]):
        lines.append(f"WARNING {w}")
    for n in as_list(doc["notes"]):
        lines.append(f"note: {n}")
    for p in get_objects(doc, "profiles"):
        cov = "" if p["coverage"] is None else f", {p['coverage']:.0%} of the wall time of the same runs"
        lines.append("")
        lines.append(f"{p['artifact']}: {p['total_ms']:.4f} ms per run over {p['runs']} runs ({p['source']}{cov})")
        top = get_objects(p, "top")
        w = max(len(get_str(r, "name")) for r in top) if top else 8
        for r in top:
            share = get_float(r, "ms") / (get_number_or_none(p, "runtime_ms") or get_number_or_none(p, "total_ms") or 1.0)
            lines.append(f"  {r['name']:<{min(w, 48)}}  {get_str(r, 'op')[:34]:<34}  {get_str(r, 'where')[:16]:<16}  "
                         f"{r['ms']:>9.4f} ms  {share:>6.1%}")
    if doc.get("skipped"):
        lines.append(f"no per-layer error or operator profile: the export was run with {doc['skipped']} "
                     "(re-export without it to get them)")
    elif not doc["profiles"] and not doc["layer_error"]:
        lines.append("no per-layer error or operator profile recorded (exported by an older edgeq?)")
    return "\n".join(lines)


def layer_lines(le: JSONObject) -> list[str]:
    """The per-layer error of one artifact: the worst layers and the measured moves."""
    out = [f"{le['artifact']}: per-layer error against float ({le['samples']} samples, {le['method']})"]
    for r in get_objects(le, "worst"):
        cos = "–" if r["cosine"] is None else f"{r['cosine']:.4f}"
        alone = r.get("alone_db")
        out.append(f"  worst #{r['rank']}: {r['layer']} ({r['op']}): SQNR {r['sqnr_db']:.1f} dB, cosine {cos}, "
                   f"its own noise {r['added_db']:.1f} dB"
                   + (f", output {alone:.1f} dB with it quantized alone" if isinstance(alone, float | int) else ""))
    for mv in get_objects(le, "moves"):
        out.append(f"  {mv['layer']}: {move_text(mv)}")
    if le.get("moves"):
        best = best_moves(le)
        out.append("  best measured move: " + (f"{best[0]['move']} on {best[0]['layer']} ({best[0]['gain_db']:+.2f} dB)"
                                               if best else "none of the rebuilt layers improved the output"))
    return out
