"""Self-contained HTML report (no external assets): verdict banner, artifact table, passes, extra sections.

Other features contribute sections through :func:`edgeq.report.sections.register_section` (e.g. sensitivity charts,
sweeps, mobile usability) and never import this module, which stays the single page layout.
"""

from __future__ import annotations

import importlib

from edgeq.jsontypes import JSONObject, get_object, get_objects, get_strs
from edgeq.report.markdown import TABLE_HEAD, extra_sections, table
from edgeq.report.sections import esc, registered_sections

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24;max-width:1400px}
h1{margin-bottom:.2rem} .pass{background:#1a7f37;color:#fff} .fail{background:#cf222e;color:#fff}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:.4rem;font-weight:600}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem} th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums} tr.bad td{background:#ffebe9}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.6rem;border-radius:.4rem}
.muted{color:#57606a;font-size:.85rem} code{background:#f6f8fa;padding:0 .2rem}
.tw{overflow-x:auto;max-width:100%} td{overflow-wrap:break-word} .plots{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;flex:1 1 560px;max-width:640px;min-width:0} .legend{font-size:.8rem;color:#57606a;margin:.2rem 0 0 .5rem;padding:0;list-style:none}
.legend li{margin:.1rem 0} svg{display:block}
"""


# Features whose sections render from optional manifest keys, imported on first render (after this module).
_SECTION_MODULES = ("edgeq.report.plot_sections", "edgeq.report.core_sections", "edgeq.search.report",
                    "edgeq.executorch.report", "edgeq.compress.report", "edgeq.explain.section",
                    "edgeq.explain.trial_section", "edgeq.report.boards_html")


def _load_section_modules() -> None:
    for mod in _SECTION_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def render_html(manifest: JSONObject) -> str:
    v = get_object(manifest, "verdict")
    t = get_object(manifest, "target")
    src = get_object(manifest, "source")
    vd = get_object(manifest, "validation_data")
    ok = v["passed"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgeq report — {esc(src['ref'])}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>edgeq report <span class='badge {'pass' if ok else 'fail'}'>{'PASS' if ok else 'FAIL'}</span></h1>",
             f"<p>Model <code>{esc(src['ref'])}</code> ({esc(src['kind'])}) → target <b>{esc(t['name'])}</b> "
             f"({esc(t['cpu'])}, {esc(t['isa'])}, {esc(t['abi'])}).<br>Evaluated on {vd['samples']} samples from "
             f"{esc(vd['source'])}; reference: {esc(get_object(vd, 'reference')['kind'])}.<br>Budget: "
             + ", ".join(f"{esc(k)} = {esc(val)}" for k, val in get_object(manifest, "budget").items() if val is not None)
             + "</p>"]
    if v.get("host_passes_arm_fails"):
        parts.append("<div class='warn'><b>Host passes, ARM fails.</b> The x86 host verdict would have shipped a model "
                     "that fails on the device's kernels:<ul>"
                     + "".join(f"<li>{esc(f)}</li>" for f in get_strs(v, "host_passes_arm_fails")) + "</ul></div>")
    if v.get("int8_regressions"):
        parts.append("<div class='warn'><b>INT8 larger or slower than float.</b><ul>"
                     + "".join(f"<li>{esc(f)}</li>" for f in get_strs(v, "int8_regressions")) + "</ul></div>")
    parts.append("<h2>Artifacts</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in TABLE_HEAD) + "</tr>")
    for row in table(manifest):
        bad = row[-1] == "FAIL"
        parts.append(f"<tr class='{'bad' if bad else ''}'>" + "".join(
            f"<td class='{'num' if i not in (0, 3, 12) else ''}'>{esc(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    parts.append("</table><p class='muted'>Size and latency ratios are against the float artifact of the same format "
                 "on the same runner. Latency: median single-sample run after warm-up. <b>Emulated</b> latency is qemu "
                 "executing ARM instructions on an x86 host — it proves the kernels and numerics, never device speed.</p>")
    passes = get_objects(manifest, "passes")
    if passes:
        parts.append("<h2>Passes (in order)</h2><table><tr><th>stage</th><th>pass</th><th>format</th><th>changed</th>"
                     "<th>what it did</th></tr>")
        for p in passes:
            parts.append(f"<tr><td>{esc(p['stage'])}</td><td>{esc(p['name'])}</td><td>{esc(p['format'])}</td>"
                         f"<td>{'yes' if p['changed'] else 'no'}</td><td>{esc(p['summary'])}</td></tr>")
        parts.append("</table>")
    extra = extra_sections(manifest)
    if extra:
        parts.append("<h2>Delegation</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in extra) + "</ul>")
    _load_section_modules()
    for _name, fn in registered_sections():
        frag = fn(manifest)
        if frag:
            parts.append(frag)
    parts.append("<h2>Verdict</h2>" + ("<p class='badge pass'>PASS</p>" if ok else "<p class='badge fail'>FAIL</p><ul>"
                 + "".join(f"<li>{esc(f)}</li>" for f in [*get_strs(v, "failures"), *get_strs(v, "infra_failures")]) + "</ul>"))
    deps = ", ".join(f"{esc(k)} {esc(val)}" for k, val in get_object(manifest, "dependencies").items() if val)
    parts.append(f"<p class='muted'>edgeq {esc(manifest['edgeq_version'])} · {deps} · {esc(manifest['created'])}</p>")
    parts.append("</body></html>")
    # Wide tables scroll inside their own box instead of widening the page.
    return "\n".join(parts).replace("<table", "<div class='tw'><table").replace("</table>", "</table></div>")
