"""The report's ExecuTorch section: what stayed out of INT8 and why, and the bundled golden I/O (.bpte)."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject, get_float, get_object_or_none, get_objects, get_str, get_strs
from edgeq.report.sections import esc, register_section


def _quantization_items(name: str, q: JSONObject) -> list[str]:
    items = []
    kept_int, kept_float = get_strs(q, "integer_nodes_not_quantized"), get_strs(q, "mask_derived_kept_float")
    if kept_int or kept_float:
        items.append(f"<li><b>{esc(name)}</b>: integer nodes never quantized: "
                     f"{esc(', '.join(kept_int) or 'none')}; float nodes computed "
                     f"from integer inputs (attention-mask bias), kept float: "
                     f"{esc(', '.join(kept_float) or 'none')}</li>")
    ignored = get_strs(q, "ignored_options")
    if ignored:
        items.append(f"<li><b>{esc(name)}</b>: options XNNPACK cannot honour, ignored: "
                     f"{esc('; '.join(ignored))}</li>")
    return items


@register_section("executorch")
def executorch_section(manifest: JSONObject) -> str | None:
    arts = [a for a in get_objects(manifest, "artifacts") if get_str(a, "format") in ("pte", "bpte")]
    if not arts:
        return None
    items = []
    for a in arts:
        items += _quantization_items(get_str(a, "name"), get_object_or_none(a, "quantization") or {})
        details = get_object_or_none(a, "details") or {}
        b = get_object_or_none(details, "bundled")
        if b:
            atol, measured = f"{get_float(b, 'atol'):.4g}", f"{get_float(b, 'measured_max_abs_diff'):.4g}"
            items.append(f"<li><b>{esc(get_str(a, 'path'))}</b> (ExecuTorch BundledProgram of "
                         f"{esc(details.get('program'))}): "
                         f"{esc(b['test_cases'])} evaluation inputs with the float model's outputs; a device verifies "
                         f"itself with rtol={esc(b['rtol'])}, atol={esc(atol)} (measured INT8 max |Δ| "
                         f"{esc(measured)})</li>")
    return "<h2>ExecuTorch</h2><ul>" + "".join(items) + "</ul>" if items else None
