"""The report's ExecuTorch section: what stayed out of INT8 and why, and the bundled golden I/O (.bpte)."""

from __future__ import annotations

from typing import Any

from edgeq.report.html import _e, register_section


@register_section("executorch")
def executorch_section(manifest: dict[str, Any]) -> str | None:
    arts = [a for a in manifest["artifacts"] if a["format"] in ("pte", "bpte")]
    if not arts:
        return None
    items = []
    for a in arts:
        q = a.get("quantization") or {}
        if q.get("integer_nodes_not_quantized") or q.get("mask_derived_kept_float"):
            items.append(f"<li><b>{_e(a['name'])}</b>: integer nodes never quantized: "
                         f"{_e(', '.join(q.get('integer_nodes_not_quantized') or []) or 'none')}; float nodes computed "
                         f"from integer inputs (attention-mask bias), kept float: "
                         f"{_e(', '.join(q.get('mask_derived_kept_float') or []) or 'none')}</li>")
        if q.get("ignored_options"):
            items.append(f"<li><b>{_e(a['name'])}</b>: options XNNPACK cannot honour, ignored: "
                         f"{_e('; '.join(q['ignored_options']))}</li>")
        b = (a.get("details") or {}).get("bundled")
        if b:
            atol, measured = f"{b['atol']:.4g}", f"{b['measured_max_abs_diff']:.4g}"
            items.append(f"<li><b>{_e(a['path'])}</b> (ExecuTorch BundledProgram of {_e(a['details'].get('program'))}): "
                         f"{_e(b['test_cases'])} evaluation inputs with the float model's outputs; a device verifies "
                         f"itself with rtol={_e(b['rtol'])}, atol={_e(atol)} (measured INT8 max |Δ| "
                         f"{_e(measured)})</li>")
    return "<h2>ExecuTorch</h2><ul>" + "".join(items) + "</ul>" if items else None
