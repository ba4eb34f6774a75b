"""The report's ExecuTorch section: what stayed out of INT8 and why, and the bundled golden I/O (.bpte)."""

from __future__ import annotations

from typing import Any

from edgeq.report.html import esc, register_section


@register_section("executorch")
def executorch_section(manifest: dict[str, Any]) -> str | None:
    arts = [a for a in manifest["artifacts"] if a["format"] in ("pte", "bpte")]
    if not arts:
        return None
    items = []
    for a in arts:
        q = a.get("quantization") or {}
        if q.get("integer_nodes_not_quantized") or q.get("mask_derived_kept_float"):
            items.append(f"<li><b>{esc(a['name'])}</b>: integer nodes never quantized: "
                         f"{esc(', '.join(q.get('integer_nodes_not_quantized') or []) or 'none')}; float nodes computed "
                         f"from integer inputs (attention-mask bias), kept float: "
                         f"{esc(', '.join(q.get('mask_derived_kept_float') or []) or 'none')}</li>")
        if q.get("ignored_options"):
            items.append(f"<li><b>{esc(a['name'])}</b>: options XNNPACK cannot honour, ignored: "
                         f"{esc('; '.join(q['ignored_options']))}</li>")
        b = (a.get("details") or {}).get("bundled")
        if b:
            atol, measured = f"{b['atol']:.4g}", f"{b['measured_max_abs_diff']:.4g}"
            items.append(f"<li><b>{esc(a['path'])}</b> (ExecuTorch BundledProgram of {esc(a['details'].get('program'))}): "
                         f"{esc(b['test_cases'])} evaluation inputs with the float model's outputs; a device verifies "
                         f"itself with rtol={esc(b['rtol'])}, atol={esc(atol)} (measured INT8 max |Δ| "
                         f"{esc(measured)})</li>")
    return "<h2>ExecuTorch</h2><ul>" + "".join(items) + "</ul>" if items else None
