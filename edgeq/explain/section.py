"""The report section of ``edgeq.explain``: the operators that take the time in each artifact, and the warnings
that name operators outside the XNNPACK delegate or running in float around unfused Q/DQ pairs."""

from __future__ import annotations

from typing import Any

from edgeq.explain.profile import TOP
from edgeq.explain.svg import time_bars
from edgeq.report.html import esc, register_section


def top_rows(prof: dict[str, Any], top: int = TOP) -> list[dict[str, Any]]:
    """The ``top`` slowest operators plus one row summing the rest, so the rows still add up to the run."""
    ops = list(prof["ops"])
    rows = ops[:top]
    rest = ops[top:]
    if rest:
        rows.append({"name": f"{len(rest)} other operator(s)", "op": "…", "where": "…",
                     "ms": sum(o["ms"] for o in rest), "calls": sum(o["calls"] for o in rest)})
    return rows


def _table(prof: dict[str, Any]) -> str:
    run = prof["runtime_ms"] or prof["total_ms"] or 1.0
    rows = "".join(f"<tr><td><code>{esc(o['name'])}</code></td><td>{esc(o['op'])}</td><td>{esc(o['where'])}</td>"
                   f"<td class='num'>{o['ms']:.4f}</td><td class='num'>{o['ms'] / run:.1%}</td></tr>"
                   for o in top_rows(prof))
    cov = prof.get("coverage")
    return ("<table class='op-profile'><tr><th>operator</th><th>kind</th><th>ran on</th><th>ms / run</th>"
            "<th>share</th></tr>" + rows
            + f"<tr><td><b>total</b></td><td></td><td></td><td class='num'><b>{prof['total_ms']:.4f}</b></td>"
              f"<td class='num'>{'' if cov is None else f'{cov:.0%} of wall'}</td></tr></table>")


def _profile_block(prof: dict[str, Any]) -> str:
    rows = top_rows(prof)
    chart = time_bars([f"{r['name']} · {r['op']}" if r["op"] not in ("…", "runtime") else r["name"] for r in rows],
                      [r["ms"] for r in rows], [r["where"] for r in rows],
                      f"{prof['artifact']}: time per operator, ms per run")
    notes = "".join(f"<p class='muted'>{esc(n)}</p>" for n in prof.get("notes") or [])
    return (f"<h3>{esc(prof['artifact'])}</h3><p class='muted'>{esc(prof['source'])}; {prof['runs']} runs after "
            f"{prof['warmup']} warm-up, first evaluation sample. Wall time of the same runs: {prof['wall_ms']:.4f} ms "
            f"per run; the runtime's own run event: {prof['runtime_ms']:.4f} ms.</p>{notes}"
            f"<figure>{chart}</figure>{_table(prof)}")


@register_section("op_profile")
def op_profile_section(manifest: dict[str, Any]) -> str | None:
    ex = manifest.get("explain") or {}
    profiles = ex.get("profiles") or []
    if not profiles and not ex.get("warnings"):
        return None
    parts = ["<h2>Where the time goes (per operator, host)</h2>",
             "<p class='muted'>Host CPU profile of each artifact: it ranks operators and shows what falls out of "
             "the fast path; the device's absolute times differ. Green: XNNPACK; red: ExecuTorch portable kernels; "
             "grey: runtime time outside every operator; blue: onnxruntime kernels.</p>"]
    for w in ex.get("warnings") or []:
        parts.append(f"<div class='warn op-warning'>{esc(w['message'])}</div>")
    for n in ex.get("notes") or []:
        parts.append(f"<p class='muted'>{esc(n)}</p>")
    # quantized artifacts first: they are what ships
    for prof in sorted(profiles, key=lambda p: _is_baseline(manifest, p["artifact"])):
        parts.append(_profile_block(prof))
    return "".join(parts)


def _is_baseline(manifest: dict[str, Any], name: str) -> bool:
    return any(a["name"] == name and a.get("role") == "baseline" for a in manifest["artifacts"])
