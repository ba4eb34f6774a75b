"""Markdown report and the terminal summary table."""

from __future__ import annotations

import textwrap

from edgeq.jsontypes import JSONObject, get_object, get_object_or_none, get_objects, get_str, get_strs
from edgeq.report.boards import markdown_lines, terminal_lines
from edgeq.report.rows import fmt_bytes, fmt_latency, fmt_num, rows
from edgeq.report.terminal import all_warnings, fitted_table, operator_warnings, verdict_line
from edgeq.timing import timing_line, timing_rows

TABLE_HEAD = ("artifact", "bytes", "× float", "runner", "accuracy", "drop (pt)", "top-1 agree", "cos mean", "cos min",
         "SQNR dB", "max |Δ|", "latency", "budget")


def table(manifest: JSONObject) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in rows(manifest):
        out.append((r.artifact, fmt_bytes(r.bytes), fmt_num(r.size_ratio, ".3f"), r.runner,
                    fmt_num(r.accuracy), fmt_num(r.accuracy_drop_pts, ".2f"), fmt_num(r.top1),
                    fmt_num(r.cosine_mean, ".5f"), fmt_num(r.cosine_min, ".5f"), fmt_num(r.sqnr_db, ".2f"),
                    fmt_num(r.max_abs_diff, ".4g"), fmt_latency(r),
                    "–" if r.passed is None else ("pass" if r.passed else "FAIL")))
    return out


def terminal_summary(manifest: JSONObject, outdir: str) -> str:
    """Fits 100 columns (lower-priority metric columns are dropped; report.md has them all)."""
    lines = fitted_table(manifest)
    v = get_object(manifest, "verdict")
    lines.append("")
    for p in get_objects(manifest, "passes"):
        lines.append(_clip(f"pass {p['name']:<22} [{p['format']}] {p['summary']}"))
    for extra in extra_sections(manifest):
        lines.append(extra)
    for f in get_strs(v, "host_passes_arm_fails"):
        lines.append(_clip(f"WARNING host passes but ARM fails: {f}"))
    for w in all_warnings(manifest) + operator_warnings(manifest):
        lines.append(_clip(f"WARNING {w}"))
    lines += terminal_lines(manifest)
    time_line = timing_line(manifest)
    if time_line:
        lines.append(_clip(time_line))
    lines += [f"  - {f}" for f in [*get_strs(v, "failures"), *get_strs(v, "infra_failures")]]
    lines.append(f"report: {outdir}/report.html")
    lines.append(verdict_line(manifest))
    return "\n".join(lines)


def _clip(line: str, width: int = 100) -> str:
    """Pass summaries can be long prose: wrap them under their name instead of running past the width."""
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=" " * 5, break_on_hyphens=False)) or line


def extra_sections(manifest: JSONObject) -> list[str]:
    out = []
    for a in get_objects(manifest, "artifacts"):
        d = get_object_or_none(a, "details") or {}
        deleg = get_object_or_none(d, "delegation")
        if deleg:
            out.append(f"{a['name']}: {deleg.get('delegated_ops', 0)}/{deleg.get('total_ops', 0)} ops delegated to "
                       f"{deleg.get('backend', 'XNNPACK')}" + (f"; left to portable kernels: "
                       f"{', '.join(get_strs(deleg, 'non_delegated'))}" if deleg.get("non_delegated") else ""))
    return out


def render_markdown(manifest: JSONObject) -> str:
    v = get_object(manifest, "verdict")
    t = get_object(manifest, "target")
    src = get_object(manifest, "source")
    vd = get_object(manifest, "validation_data")
    b = get_object(manifest, "budget")
    out = [f"# edgeq report — {'PASS' if v['passed'] else 'FAIL'}", ""]
    out.append(f"- model: `{src['ref']}` ({src['kind']}, sha256 `{get_str(src, 'sha256')[:12]}`)")
    out.append(f"- target: **{t['name']}** ({t['cpu']}, {t['isa']}, {t['abi']})")
    out.append(f"- evaluation: {vd['samples']} samples from {vd['source']}; reference: {get_object(vd, 'reference')['kind']}")
    out.append("- budget: " + ", ".join(f"{k}={val}" for k, val in b.items() if val is not None))
    out.append(f"- edgeq {manifest['edgeq_version']}; " + ", ".join(f"{k} {val}" for k, val in get_object(manifest, "dependencies").items()
                                                              if val))
    out += ["", "## Artifacts", "", "| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD)]
    out += ["| " + " | ".join(row) + " |" for row in table(manifest)]
    out += ["", "Latency is the median of single-sample runs after warm-up. Emulated latency counts qemu's "
            "instruction-level execution on the x86 host and is **not** device speed.", ""]
    passes = get_objects(manifest, "passes")
    if passes:
        out += ["## Passes (in order)", "", "| stage | pass | format | changed | what it did |", "|---|---|---|---|---|"]
        out += [f"| {p['stage']} | {p['name']} | {p['format']} | {'yes' if p['changed'] else 'no'} | {p['summary']} |"
                for p in passes]
        out.append("")
    extra = extra_sections(manifest)
    if extra:
        out += ["## Delegation", ""] + [f"- {e}" for e in extra] + [""]
    if v.get("host_passes_arm_fails"):
        out += ["## ⚠ Host passes, ARM fails", ""] + [f"- {f}" for f in get_strs(v, "host_passes_arm_fails")] + [""]
    if v.get("int8_regressions"):
        out += ["## ⚠ INT8 larger or slower than float", ""] + [f"- {f}" for f in get_strs(v, "int8_regressions")] + [""]
    out += markdown_lines(manifest)
    timing = timing_rows(manifest)
    if timing:
        out += ["## Where the time went", "", "| phase | seconds | share | what it bought |", "|---|---|---|---|"]
        out += [f"| {' | '.join(row)} |" for row in timing] + [""]
    out += ["## Verdict", "", f"**{'PASS' if v['passed'] else 'FAIL'}**", ""]
    out += [f"- {f}" for f in [*get_strs(v, "failures"), *get_strs(v, "infra_failures")]]
    return "\n".join(out) + "\n"
