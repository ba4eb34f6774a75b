"""What a human reads at the end of a run: a table that fits 100 columns, a verdict line naming metric, value,
budget and margin, and warnings the numbers alone hide (an eval set too small to resolve the budget; an INT8
artifact larger or slower than float). The same findings feed the HTML report and ``--json``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgeq.jsontypes import (
    JSONObject,
    as_list,
    get_number_or_none,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
    get_strs,
)
from edgeq.report.rows import Row, fmt_bytes, fmt_num, rows

WIDTH = 100

# (header, priority): columns are dropped from the highest priority number down until the table fits.
_COLS: tuple[tuple[str, int], ...] = (
    ("artifact", 0), ("size", 0), ("×float", 1), ("runner", 0), ("acc drop", 1), ("top-1", 3),
    ("cos mean", 2), ("cos min", 5), ("SQNR dB", 4), ("max |Δ|", 6), ("latency", 3), ("budget", 0))


@dataclass(frozen=True)
class Margin:
    """One budget limit checked against one (artifact, runner): ``margin`` > 0 is inside the budget."""

    artifact: str
    runner: str
    metric: str
    value: float
    limit: float
    op: str  # "<=" or ">="
    margin: float
    unit: str


_LIMITS = (  # budget key, metric key, label, op, unit
    ("max_accuracy_drop", "accuracy_drop_pts", "accuracy drop", "<=", " pt"),
    ("min_cosine", "cosine_mean", "mean cosine", ">=", ""),
    ("min_sqnr", "sqnr_db", "SQNR", ">=", " dB"),
    ("min_top1_agreement", "top1_agreement", "top-1 agreement", ">=", ""),
    ("min_nn_agreement", "nn_agreement", "nearest-neighbour agreement", ">=", ""),
)


def margins(manifest: JSONObject) -> list[Margin]:
    budget = get_object_or_none(manifest, "budget") or {}
    out: list[Margin] = []
    for a in get_objects(manifest, "artifacts"):
        if a.get("role") == "baseline":
            continue
        for v in get_objects(a, "validations"):
            runner = get_str(v, "runner") + (f" {v['cpu_model']}" if v.get("emulated") else "")
            metrics = get_object(v, "metrics")
            for bkey, mkey, label, op, unit in _LIMITS:
                limit = get_number_or_none(budget, bkey)
                value = metrics.get(mkey)
                if limit is None or not isinstance(value, int | float) or math.isnan(value):
                    continue
                m = limit - value if op == "<=" else value - limit
                out.append(Margin(get_str(a, "name"), runner, label, float(value), float(limit), op, m, unit))
    return out


def _fmt(x: float, unit: str) -> str:
    return f"{x:.2f}" if unit else f"{x:.4f}"


def verdict_line(manifest: JSONObject) -> str:
    """``verdict: PASS · accuracy drop 0.44 pt <= 1 pt (margin 0.56 pt; worst of 2 artifact×runner) · ...``"""
    v = get_object(manifest, "verdict")
    notes = "; ".join(get_strs(v, "notes"))  # e.g. how a budget was checked without labels
    head = "verdict: " + ("PASS" if v["passed"] else "FAIL") + (f" [{notes}]" if notes else "")
    ms = margins(manifest)
    if not ms:
        return head + " · no budget limit could be checked on a quantized artifact"
    parts = []
    worst_of = set()
    for label in dict.fromkeys(m.metric for m in ms):
        worst = min((m for m in ms if m.metric == label), key=lambda m: m.margin)
        worst_of.add(f"{worst.artifact} on {worst.runner}")
        digits = 2 if worst.unit else 4
        parts.append(f"{label} {_fmt(worst.value, worst.unit)}{worst.unit} {worst.op} {worst.limit:g}{worst.unit} "
                     f"(margin {worst.margin:+.{digits}f}{worst.unit})")
    pairs = len({(m.artifact, m.runner) for m in ms})
    return (head + " · " + " · ".join(parts) + f"\n  worst case of {pairs} quantized artifact×runner pair(s): "
            + ", ".join(sorted(worst_of)))


def resolution_warnings(manifest: JSONObject) -> list[str]:
    """When one sample moves the metric by more than half the budget, the verdict is decided by noise."""
    budget = get_object_or_none(manifest, "budget") or {}
    validation_data = get_object_or_none(manifest, "validation_data") or {}
    n = int(get_number_or_none(validation_data, "samples") or 0)
    if n <= 0:
        return []
    out = []
    per_sample = 100.0 / n
    drop_budget = get_number_or_none(budget, "max_accuracy_drop")
    # a 0 pt budget is exact at any size (one lost sample fails it), like a top-1 agreement of 1 below
    if drop_budget and validation_data.get("has_labels") and per_sample > drop_budget / 2:
        for m in (x for x in margins(manifest) if x.metric == "accuracy drop"):
            acc = _accuracy_of(manifest, m.artifact, m.runner)
            p = min(max(acc if acc is not None else 0.5, 1.0 / n), 1 - 1.0 / n)
            # Two accuracies on the same n samples, treated as independent: a conservative 95 % interval.
            half = 1.96 * math.sqrt(2 * p * (1 - p) / n) * 100
            out.append(f"eval set too small to resolve the budget: {n} samples, one sample = {per_sample:.2f} pt "
                       f"> half the {drop_budget:g} pt budget; {m.artifact} on {m.runner}: drop {m.value:.2f} pt, "
                       f"95% CI [{m.value - half:.2f}, {m.value + half:.2f}] pt (use --eval with "
                       f"≥ {math.ceil(200 / drop_budget)} samples)")
            break
    top1 = get_number_or_none(budget, "min_top1_agreement")
    if top1 is not None and top1 < 1 and 1.0 / n > (1 - top1) / 2:
        out.append(f"eval set too small to resolve the budget: {n} samples, one disagreement = {1 / n:.4f} "
                   f"> half the allowed {1 - top1:.4f} of top-1 disagreement")
    return out


def _accuracy_of(manifest: JSONObject, artifact: str, runner: str) -> float | None:
    for a in get_objects(manifest, "artifacts"):
        if a["name"] == artifact:
            for v in get_objects(a, "validations"):
                acc = get_object(v, "metrics").get("reference_accuracy")
                if isinstance(acc, int | float):
                    return float(acc)
    return None


def size_speed_warnings(manifest: JSONObject) -> list[str]:
    out = []
    seen_size = set()
    for r in rows(manifest):
        if not r.precision.startswith("int"):
            continue
        if r.size_ratio is not None and r.size_ratio > 1.0 and r.artifact not in seen_size:
            seen_size.add(r.artifact)
            out.append(f"{r.artifact} is {r.size_ratio:.2f}× the float {r.format} artifact's size "
                       f"({fmt_bytes(r.bytes)}): quantization does not pay off on this model/target "
                       "(e.g. fixed segment alignment or quantize/dequantize overhead on a tiny model)")
        if r.latency_ratio is not None and r.latency_ratio > 1.1 and r.latency_kind != "emulated":
            out.append(f"{r.artifact} ran {r.latency_ratio:.2f}× the float latency on {r.runner} "
                       f"({r.latency_ms:.3f} ms, {r.latency_how}; re-check with `make bench`)")
    return out


def all_warnings(manifest: JSONObject) -> list[str]:
    return resolution_warnings(manifest) + size_speed_warnings(manifest)


def operator_warnings(manifest: JSONObject) -> list[str]:
    """edgeq.explain's findings: operators outside the XNNPACK delegate, float nodes around unfused Q/DQ (the
    report shows them in its per-operator section, next to the profile)."""
    return [str(w.get("message")) for w in get_objects(get_object_or_none(manifest, "explain") or {}, "warnings")]


def _cells(r: Row) -> tuple[str, ...]:
    lat = "–" if r.latency_ms is None else f"{r.latency_ms:.3f} ms" + (
        f" {r.latency_ratio:.2f}×" if r.latency_ratio is not None else "") + (
        " emu" if r.latency_kind == "emulated" else "")
    return (r.artifact, fmt_bytes(r.bytes), fmt_num(r.size_ratio, ".2f"), r.runner,
            fmt_num(r.accuracy_drop_pts, ".2f"), fmt_num(r.top1, ".4f"), fmt_num(r.cosine_mean, ".5f"),
            fmt_num(r.cosine_min, ".5f"), fmt_num(r.sqnr_db, ".1f"), fmt_num(r.max_abs_diff, ".3g"), lat,
            "–" if r.passed is None else ("pass" if r.passed else "FAIL"))


def fitted_table(manifest: JSONObject, width: int = WIDTH) -> list[str]:
    body = [_cells(r) for r in rows(manifest)]
    keep = list(range(len(_COLS)))

    def widths() -> list[int]:
        return [max(len(_COLS[i][0]), *(len(row[i]) for row in body)) if body else len(_COLS[i][0]) for i in keep]

    # Emulated runner names are long: say "emulated" once in the column, not per row.
    while sum(widths()) + 2 * (len(keep) - 1) > width:
        droppable = [i for i in keep if _COLS[i][1] > 0]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (_COLS[i][1], i)))
    w = widths()
    lines = ["  ".join(_COLS[i][0].ljust(wi) for i, wi in zip(keep, w, strict=True)).rstrip()]
    lines.append("-" * min(width, len(lines[0])))
    lines += ["  ".join(row[i].ljust(wi) for i, wi in zip(keep, w, strict=True)).rstrip() for row in body]
    return lines


def _json_validation(x: JSONObject) -> JSONObject:
    check = get_object(x, "budget_check")
    return {"runner": x["runner"], "board": x.get("board"), "cpu_model": x.get("cpu_model"),
            "emulated": x.get("emulated"), "metrics": x["metrics"], "latency_ms": x.get("latency_ms"),
            "latency_kind": x.get("latency_kind"), "passed": check["passed"], "failures": check["failures"]}


def json_result(manifest: JSONObject, outdir: str) -> JSONObject:
    """The ``--json`` document of export / check / validate: verdict, margins, warnings, artifacts."""
    v = get_object(manifest, "verdict")
    arts: list[JSONObject] = []
    for a in get_objects(manifest, "artifacts"):
        arts.append({"name": a["name"], "path": a["path"], "format": a["format"], "precision": a["precision"],
                     "role": a.get("role"), "bytes": a["bytes"], "sha256": a.get("sha256"),
                     "validations": [_json_validation(x) for x in get_objects(a, "validations")]})
    validation_data = get_object_or_none(manifest, "validation_data") or {}
    return {"passed": bool(v["passed"]), "failures": list(as_list(v["failures"])),
            "host_passes_arm_fails": list(as_list(v.get("host_passes_arm_fails", []))),
            "target": get_object(manifest, "target")["name"], "model": get_object(manifest, "source")["ref"],
            "budget": manifest.get("budget"), "margins": [asdict(m) for m in margins(manifest)],
            "warnings": all_warnings(manifest) + operator_warnings(manifest),
            "eval_samples": validation_data.get("samples"),
            "artifacts": arts, "fleet": v.get("fleet"), "infra_failures": list(as_list(v.get("infra_failures", []))),
            "boards": (get_object_or_none(manifest, "fleet") or {}).get("boards"), "output": outdir,
            "manifest": f"{outdir}/edgeq.json", "report": f"{outdir}/report.html"}
