"""Report sections every export gets, even a passing one without a search: the budget margins and warnings,
accuracy vs size and vs latency with the budget drawn, and agreement with the float model per runner."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.jsontypes import (
    JSONObject,
    get_float,
    get_number_or_none,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
)
from edgeq.report.plots import Axes, BudgetLine, Point, fmt_bytes_axis, hbars, legend, scatter
from edgeq.report.sections import esc, register_section
from edgeq.report.terminal import all_warnings, margins


@dataclass(frozen=True)
class Axis:
    key: str  # metrics key
    label: str
    scale: float  # display = value × scale
    budget: BudgetLine | None


def primary_axis(m: JSONObject) -> Axis:
    """The metric the budget constrains (task accuracy when labels and a drop budget exist), else cosine."""
    b = get_object_or_none(m, "budget") or {}
    labels = bool((get_object_or_none(m, "validation_data") or {}).get("has_labels"))
    drop = get_number_or_none(b, "max_accuracy_drop")
    if drop is not None and labels:
        ref = _reference_accuracy(m)
        line = None
        if ref is not None:
            y = ref * 100 - drop
            line = BudgetLine(y, f"budget: accuracy ≥ {y:.2f} % (float {ref * 100:.2f} % − {drop:g} pt)")
        return Axis("accuracy", "task accuracy (%)", 100.0, line)
    for key, bkey, label in (("cosine_mean", "min_cosine", "mean cosine to float"),
                             ("top1_agreement", "min_top1_agreement", "top-1 agreement with float"),
                             ("sqnr_db", "min_sqnr", "SQNR (dB)")):
        limit = get_number_or_none(b, bkey)
        if limit is not None:
            return Axis(key, label, 1.0, BudgetLine(float(limit), f"budget: {label} ≥ {limit:g}"))
    return Axis("cosine_mean", "mean cosine to float", 1.0, None)


def _reference_accuracy(m: JSONObject) -> float | None:
    for a in get_objects(m, "artifacts"):
        for v in get_objects(a, "validations"):
            ref = get_object(v, "metrics").get("reference_accuracy")
            if isinstance(ref, int | float):
                return float(ref)
    return None


def _runner(v: JSONObject) -> str:
    return get_str(v, "runner") + (f" {v['cpu_model']} (emulated)" if v.get("emulated") else "")


def _points(m: JSONObject, axis: Axis, x_key: str) -> list[Point]:
    pts = []
    for a in get_objects(m, "artifacts"):
        for v in get_objects(a, "validations"):
            y = get_object(v, "metrics").get(axis.key)
            x = a["bytes"] if x_key == "bytes" else v.get("latency_ms")
            if isinstance(y, int | float) and isinstance(x, int | float) and x > 0:
                kind = "float" if a.get("role") == "baseline" else "artifact"
                pts.append(Point(float(x), float(y) * axis.scale, f"{a['name']} on {_runner(v)}", kind))
    search = get_object_or_none(m, "search") or {}
    for t in get_objects(search, "trials"):
        y = (get_object_or_none(t, "metrics") or {}).get(axis.key)
        x = t.get("bytes") if x_key == "bytes" else t.get("latency_ms")
        if isinstance(y, int | float) and isinstance(x, int | float) and x > 0:
            pts.append(Point(float(x), float(y) * axis.scale, f"search trial #{t['index']}: {t['label']}", "trial"))
    return pts


@register_section("tradeoff")
def tradeoff_section(m: JSONObject) -> str | None:
    axis = primary_axis(m)
    by_size = _points(m, axis, "bytes")
    by_latency = _points(m, axis, "latency")
    if not by_size:
        return None
    size_axes = Axes("artifact size (log scale)", axis.label, f"{axis.label} vs size", log_x=True,
                     x_fmt=fmt_bytes_axis)
    parts = ["<h2>Accuracy vs size and latency</h2>",
             "<p class='muted'>Blue: float; green: quantized artifacts; grey: search trials. The dashed red line is "
             "the budget, the shaded side fails it. Emulated latency is qemu time (it proves the kernels, not the "
             "device's speed).</p><div class='plots'>",
             f"<figure>{scatter(by_size, size_axes, axis.budget)}"
             f"{legend(by_size)}</figure>"]
    if by_latency:
        latency_axes = Axes("median latency, ms", axis.label, f"{axis.label} vs latency")
        parts.append(f"<figure>{scatter(by_latency, latency_axes, axis.budget)}"
                     f"{legend(by_latency)}</figure>")
    parts.append("</div>")
    return "".join(parts)


@register_section("agreement")
def agreement_section(m: JSONObject) -> str | None:
    b = get_object_or_none(m, "budget") or {}
    labels, values = [], []
    key = "top1_agreement"
    cands = [(a, v) for a in get_objects(m, "artifacts") if a.get("role") != "baseline"
             for v in get_objects(a, "validations")]
    if not cands:
        return None
    # argmax agreement means something for classifiers (labels or a top-1 budget); embeddings compare by cosine
    classifier = (b.get("min_top1_agreement") is not None
                  or bool((get_object_or_none(m, "validation_data") or {}).get("has_labels")))
    if not classifier or not all(isinstance(get_object(v, "metrics").get(key), int | float) for _, v in cands):
        key = "cosine_mean"
    for a, v in cands:
        labels.append(f"{a['name']} · {_runner(v)}")
        values.append(float(get_float(get_object(v, "metrics"), key)))
    limit = get_number_or_none(b, "min_top1_agreement" if key == "top1_agreement" else "min_cosine")
    what = "top-1 agreement (argmax matches)" if key == "top1_agreement" else "mean cosine"
    chart = hbars(labels, values, f"{what} with the float model, per runner", limit=limit,
                  limit_label=f"budget {limit:g}" if limit is not None else "")
    return (f"<h2>Agreement per runner</h2><p class='muted'>The same artifact on every runner it was validated on "
            f"(host, emulated ARM CPUs, devices): ARM kernels can round differently from x86.</p>{chart}")


@register_section("margins")
def margins_section(m: JSONObject) -> str | None:
    ms = margins(m)
    warns = all_warnings(m)
    if not ms and not warns:
        return None
    parts = ["<h2>Budget margins</h2>"]
    for w in warns:
        parts.append(f"<div class='warn'>{esc(w)}</div>")
    if ms:
        parts.append("<table><tr><th>artifact</th><th>runner</th><th>metric</th><th>value</th><th>budget</th>"
                     "<th>margin</th></tr>")
        for x in ms:
            d = 2 if x.unit else 4
            parts.append(f"<tr class='{'bad' if x.margin < 0 else ''}'><td>{esc(x.artifact)}</td><td>{esc(x.runner)}</td>"
                         f"<td>{esc(x.metric)}</td><td class='num'>{x.value:.{d}f}{esc(x.unit)}</td>"
                         f"<td class='num'>{esc(x.op)} {x.limit:g}{esc(x.unit)}</td>"
                         f"<td class='num'>{x.margin:+.{d}f}{esc(x.unit)}</td></tr>")
        parts.append("</table>")
    return "".join(parts)
