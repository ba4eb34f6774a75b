"""The HTML report in a real browser: headless Chromium at 1280 px must show the plots with the budget line, with no
console error, no horizontal page overflow, no clipped SVG text and no overprinted point labels."""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgeq.report.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")

# Measures the page after load and writes the findings into the DOM, which --dump-dom prints.
PROBE = """<script>
window.__errs = [];
window.addEventListener('error', e => window.__errs.push(String(e.message)));
const _ce = console.error; console.error = (...a) => { window.__errs.push(a.join(' ')); _ce(...a); };
window.addEventListener('load', () => {
  const d = document.documentElement, out = {overflow: d.scrollWidth - d.clientWidth, errors: window.__errs,
    budget_lines: document.querySelectorAll('svg .budget-line').length, svgs: []};
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  for (const svg of document.querySelectorAll('svg')) {
    const r = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll('text')].map(t => t.getBoundingClientRect());
    const clipped = texts.filter(t => t.left < r.left - 1 || t.right > r.right + 1 || t.top < r.top - 1
                                      || t.bottom > r.bottom + 1).length;
    const labels = [...svg.querySelectorAll('.pt-label')].map(t => t.getBoundingClientRect());
    let overlaps = 0;
    for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++)
      if (hit(labels[i], labels[j])) overlaps++;
    out.svgs.push({title: svg.getAttribute('aria-label'), clipped, overlaps, width: r.width,
                   points: svg.querySelectorAll('.pt').length});
  }
  const pre = document.createElement('pre'); pre.id = 'edgeq-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        if os.geteuid() == 0:
            pytest.fail("chromium is missing: run scripts/system-deps.sh (apt-get install chromium)")
        pytest.skip("chromium is not installed and installing it needs root (scripts/system-deps.sh)")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400", *args],
                          capture_output=True, text=True, timeout=120)


def probe(page: str, tmp: Path) -> dict[str, Any]:
    f = tmp / "probe.html"
    f.write_text(page.replace("</head>", PROBE + "</head>", 1))
    r = _chromium(tmp, "--virtual-time-budget=5000", "--dump-dom", f.as_uri())
    m = re.search(r"<pre id=\"edgeq-probe\">(.*?)</pre>", r.stdout, re.S)
    assert m, f"no probe output from chromium (rc {r.returncode}): {r.stderr[-2000:]}"
    return dict(json.loads(html.unescape(m.group(1))))


def _stress(manifest: dict[str, Any]) -> dict[str, Any]:
    """The same export as if validated on three runners with long names, plus a 14-trial search."""
    m = copy.deepcopy(manifest)
    for a in m["artifacts"]:
        a["name"] = a["name"] + "-with-a-deliberately-long-artifact-name"
        base = a["validations"][0]
        for cpu in ("cortex-a72", "cortex-a76"):
            v = copy.deepcopy(base)
            v.update(runner="emulator", cpu_model=cpu, emulated=True, latency_kind="emulated")
            v["latency_ms"] = (base["latency_ms"] or 0.01) * 40
            a["validations"].append(v)
    fb = next(a["bytes"] for a in m["artifacts"] if a["role"] == "baseline")
    trials = []
    for i in range(14):
        trials.append({"index": i, "stage": "calibration", "label": f"trial {i}: percentile, per-channel, "
                       "Softmax/LayerNorm kept in float", "bytes": int(fb * (0.3 + 0.01 * (i % 3))),
                       "latency_ms": 0.02 + 0.0001 * (i % 2), "passed": i % 4 != 0, "failures": [],
                       "error": None, "nodes_excluded": [], "int16_activation_nodes": [],
                       "metrics": {"cosine_mean": 0.999 - 0.0001 * (i % 3), "accuracy": 0.9, "sqnr_db": 30.0,
                                   "accuracy_drop_pts": 0.1}})
    m["search"] = {"trials": trials, "best": 1, "met": True, "closest": [], "seconds": 3.0, "stopped": "budget met",
                   "float": {"bytes": fb}, "options": {"max_trials": 16, "max_seconds": 300}}
    return m


@pytest.fixture(scope="module")
def manifest(digits_export) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return dict(json.loads((Path(digits_export.output) / "edgeq.json").read_text()))


def _assert_readable(found: dict[str, Any]) -> None:
    assert found["errors"] == []
    assert found["overflow"] <= 0, f"page is {found['overflow']} px wider than the 1280 px window"
    for s in found["svgs"]:
        assert s["clipped"] == 0, f"{s['title']}: {s['clipped']} text(s) outside the chart"
        assert s["overlaps"] == 0, f"{s['title']}: {s['overlaps']} overprinted point label(s)"
        assert s["width"] <= 1280


def test_export_report_in_headless_chromium(manifest: dict[str, Any], tmp_path: Path) -> None:
    page = render_html(manifest)
    assert "http" not in page.replace("xmlns='http://www.w3.org/2000/svg'", "")  # self-contained: no network
    found = probe(page, tmp_path)
    _assert_readable(found)
    titles = [s["title"] for s in found["svgs"]]
    assert any("vs size" in t for t in titles) and any("vs latency" in t for t in titles)
    assert found["budget_lines"] >= 2  # the budget is drawn on both trade-off plots
    shot = tmp_path / "report.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", (tmp_path / "probe.html").as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-1000:]


def test_crowded_report_stays_readable(manifest: dict[str, Any], tmp_path: Path) -> None:
    m = _stress(manifest)
    found = probe(render_html(m), tmp_path)
    _assert_readable(found)
    size_plot = next(s for s in found["svgs"] if "vs size" in s["title"])
    assert size_plot["points"] == 6 + 14  # 2 artifacts × 3 runners + the trials, none dropped


def _explained(manifest: dict[str, Any]) -> dict[str, Any]:
    """The export's own explain sections, plus what a missed budget adds: measured moves and operator warnings."""
    m = copy.deepcopy(manifest)
    ex = m["explain"]
    for le in ex["layer_error"]:
        le["moves"] = [{"layer": w["layer"], "op": w["op"], "nodes": [w["layer"]], "move": mv, "base_db": 31.2,
                        "after_db": 35.3, "gain_db": 4.1} for w in le["worst"] for mv in ("16-bit activations",
                                                                                         "kept in float")]
    ex["warnings"] = [{"artifact": "pte-int8-static", "kind": "not_delegated", "operators": ["aten.cumsum"],
                       "message": "pte-int8-static: 1 operator(s) outside the XNNPACK delegate, run by ExecuTorch's "
                                  "portable kernels: aten.cumsum ×1 (12% of the profiled run)"}]
    prof = copy.deepcopy(ex["profiles"][0])
    prof["artifact"] = "pte-int8-static-with-a-deliberately-long-artifact-name"
    prof["ops"] = [{"name": f"Fully Connected (NC, QS8, QC8W) GEMM #{i}", "op": "Fully Connected (NC, QS8, QC8W) GEMM",
                    "where": "XNNPACK", "ms": 0.5 / (i + 1), "calls": 1} for i in range(20)]
    prof["ops"].append({"name": "native_call_cumsum.out", "op": "cumsum.out", "where": "portable", "ms": 0.2,
                        "calls": 1})
    ex["profiles"].append(prof)
    # three search trials per format, one with a long move label and one inside the budget
    ex["trial_layer_error"] = [
        {"format": le["format"], "trial": i, "passed": i == 3,
         "label": "minmax, per-channel" + ", float top-16 (convolutions with their inputs and outputs)" * (i == 2),
         "layers": [{**{k: ly[k] for k in ("layer", "op", "cosine")}, "sqnr_db": ly["sqnr_db"] + 2 * i,
                     "added_db": ly["added_db"]} for ly in le["layers"]],
         "lowest": {"layer": le["layers"][0]["layer"], "op": le["layers"][0]["op"], "sqnr_db": 10.0 + i},
         "worst": [{"rank": 1, "layer": le["layers"][0]["layer"], "op": le["layers"][0]["op"], "sqnr_db": 10.0,
                    "cosine": 0.99, "added_db": 12.5}]}
        for le in ex["layer_error"] for i in (1, 2, 3)]
    return m


def test_explain_sections_in_headless_chromium(manifest: dict[str, Any], tmp_path: Path) -> None:
    m = _explained(manifest)
    assert m["explain"]["layer_error"] and m["explain"]["profiles"]  # every export records both
    page = render_html(m)
    found = probe(page, tmp_path)
    _assert_readable(found)
    titles = [s["title"] for s in found["svgs"]]
    assert any("per-layer error" in t for t in titles)
    assert sum("time per operator" in t for t in titles) == len(m["explain"]["profiles"])
    worst = m["explain"]["layer_error"][0]["worst"][0]["layer"]
    assert worst in page and "+4.10 dB measured" in page and "aten.cumsum" in page
    # the search trials' per-layer error: one chart per format with a line per trial, readable at 1280 px
    formats = {r["format"] for r in m["explain"]["trial_layer_error"]}
    assert sum("each search trial" in t for t in titles) == len(formats)
    assert page.count("class='trial-line'") == len(m["explain"]["trial_layer_error"])
